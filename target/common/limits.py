"""Limits that the wallet and the node agree on."""

# The largest amount a wallet holds or pays: 21M BTC in msat; sums of a few still fit SQLite.
MAX_AMOUNT_MSAT = 21_000_000 * 100_000_000 * 1000
