"""lnchaos target: a wallet payout service (the system under test) and a Lightning node mock."""
