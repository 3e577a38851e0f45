"""The adapter contract, version 1: what the payers and the checks need of a payout service.

This module is the whole contract: an adapter (built in, or in a package of its own, see
docs/adapters.md) imports only from here. Its types are the suite's own, not those of any wallet
client; the lnchaos client (locustfiles/wallet_client.py) is one adapter that uses them.

An adapter turns one service's API into the calls of `WalletApi`. Each call is one (or a few)
HTTP requests named for Locust's statistics (through `user.client`, or a session of its own with
the user's request event); money is integer msat; a payout's outcome is classified Jepsen's way
(`PayoutResult.kind`):
- ok: the service says the payment succeeded; fail: it says it failed; info: it does not know
  yet (pending, a timeout); refused: a refusal the caller expected (the payout moved nothing);
  error: an answer the adapter does not understand (a failed Locust request; the final audit
  judges the payout).
None of it is believed: the checks take whether a payment was made, and its fee, from the node.

Invoices and the node's truth come from the node (`create_invoice`, `get_node_payment`), never
from the service, whatever the adapter.

Versioning: `CONTRACT_VERSION` grows when a call is added or its meaning changes; an adapter says
which version it was written for (`contract`), and one written for another version is refused
with a clear message (locustfiles/wallets/registry.py) rather than half driven.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

CONTRACT_VERSION = 1

# Who judges the service at the end of a run (`WalletApi.judged_by`):
# - "target": the service is an lnchaos target (the embedded one, or --host with --admin-token);
#   its reconciliation and the final audit through its admin API judge it;
# - "node": the service pays through a `lnchaos node` (--node-url, --node-admin-token), which is
#   the judge: the adapter names the judge's class (`judge`), the TargetAdmin shape
#   (locustfiles/admin_client.py), built as judge(node_url, node_admin_token, host).
JUDGED_BY = ("target", "node")

# What an adapter moves (`WalletApi.accounting`), each judged by the node's truth:
# - "balance": a custodial wallet; every payout lowers its balance by amount + the node's fee, a
#   failed one leaves it (the calls of `WalletApi`);
# - "authorisations": single-use authorisations (LNURL-withdraw links, LUD-03): each pays at most
#   once, at most its amount, whatever errors the node answers (the calls of `LinkApi`).
# - "proofs": a Cashu mint's melts (ecash proofs given for a Lightning payment): the proofs burned
#   only when the node paid, the quote's state as the node says (the calls of `MintApi`,
#   locustfiles/wallets/melts.py).
ACCOUNTING = ("balance", "authorisations", "proofs")

# The calls the payers and the checks make of each model, in the order a payer makes them.
CALLS_BY_ACCOUNTING = {
    "balance": (
        "for_user",
        "create_wallet",
        "create_invoice",
        "pay",
        "get_node_payment",
        "get_payout",
        "get_wallet",
        "paid",
    ),
    "authorisations": (
        "for_user",
        "open_link",
        "create_invoice",
        "withdraw",
        "get_node_payment",
        "get_link",
    ),
    "proofs": (
        "for_user",
        "create_invoice",
        "melt_quote",
        "mint_proofs",
        "melt",
        "get_node_payment",
        "proof_states",
        "get_melt_quote",
    ),
}
CALLS = CALLS_BY_ACCOUNTING["balance"]
# a link's state as `LinkApi.get_link` reads it: it may still pay (open), or not (used)
LINK_STATES = ("open", "used")


@dataclass(frozen=True)
class Wallet:
    """A payer's account at the service: its id, the secret that spends from it, and its
    balance when it was opened (funded and credited)."""

    wallet_id: str
    api_key: str
    balance_msat: int


@dataclass(frozen=True)
class Invoice:
    """An invoice of a payee in the node's network."""

    payment_request: str
    payment_hash: str
    amount_msat: int


@dataclass(frozen=True)
class Link:
    """A single-use authorisation to be paid `amount_msat` at most: an LNURL-withdraw link
    (`url` answers LUD-03's withdrawRequest while the link may still pay)."""

    link_id: str
    url: str
    amount_msat: int


@dataclass
class PayoutResult:
    """One answer to a payout request, classified (module docstring)."""

    kind: str  # "ok" | "fail" | "info" | "refused" | "error"
    outcome: str  # succeeded | failed | timeout | pending | rejected | error
    http_status: int  # 0: no answer at all
    latency_ms: float
    payout_id: str | None = None  # the id get_payout reads (the payment hash, where that is it)
    payout_status: str | None = None  # the service's own word for the payout's state
    amount_msat: int = 0
    fee_msat: int = 0  # the service's claim (the checks take the fee from the node)
    payment_hash: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    # the wallet's balance when this answer was given, None when the service does not say
    balance_now_msat: int | None = None

    def describe(self) -> str:
        return f"HTTP {self.http_status} {self.body.get('error') or self.payout_status or ''}"


@runtime_checkable
class WalletApi(Protocol):
    """What an adapter offers the payers (locustfiles/users.py) and the checks."""

    contract: ClassVar[int]  # the CONTRACT_VERSION the adapter was written for
    name: ClassVar[str]
    # True when the service honours an Idempotency-Key (the same key answers the same payout);
    # False: a retry resends the same invoice and only "never charged twice" is checked.
    idempotent: ClassVar[bool]
    judged_by: ClassVar[str]  # one of JUDGED_BY
    accounting: ClassVar[str]  # one of ACCOUNTING
    # set by the payers: with the crash fault on, no answer at all is the chaos, not a failure
    chaos_connection_errors: bool

    @classmethod
    def for_user(cls, user: Any) -> WalletApi:
        """The adapter of one Locust user: `user.client` is a session to --host,
        `user.environment.parsed_options` the run's options (node_url, node_admin_token),
        `user.environment.events.request` the event every request is reported to."""
        ...

    def create_wallet(self, balance_msat: int) -> Wallet | None:
        """Open a wallet holding `balance_msat` (funded and credited when it returns)."""
        ...

    def create_invoice(self, amount_msat: int) -> Invoice | None:
        """An invoice of a payee in the node's network (the node's, not the service's)."""
        ...

    def pay(
        self,
        wallet: Wallet,
        invoice: Invoice,
        idempotency_key: str,
        phase: str,
        *,
        retry: bool = False,
        label: str = "",
        refusals: tuple[str, ...] = (),
    ) -> PayoutResult:
        """Pay `invoice` from `wallet`; `idempotency_key` is sent where the API has one.
        `refusals`: error codes the caller expects as a refusal (kind "refused")."""
        ...

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        """The node's truth of a payment hash (GET /node/payments/{hash}): {"status":
        in_flight | succeeded | failed | unknown, "fee_msat", ...}."""
        ...

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any] | None:
        """A payout by its id (or payment hash, where that is the id): {"status": pending |
        succeeded | failed, ...}."""
        ...

    def get_wallet(self, wallet: Wallet) -> dict[str, Any] | None:
        """The wallet's view: {"balance_msat", "reserved_msat"} (None: could not be read)."""
        ...

    def paid(self, wallet: Wallet) -> list[dict[str, Any]] | None:
        """What the wallet believes it paid: [{payment_hash, status, amount_msat, fee_msat}],
        or None when its API has no such list."""
        ...


# Optional in contract version 1 (an adapter written before it still works): an adapter may
# also offer `fee_reserve_msat(amount_msat) -> int | None`, the most the service holds for the
# fee of a payout of that amount (its stated fee limit). The wallet-view check
# (lnchaos/checker/word.py) then also requires that no more than amount + that reserve is held
# for a pending payout; without it only "held money is never shown as spendable" is judged.
OPTIONAL_CALLS = ("fee_reserve_msat",)


@runtime_checkable
class LinkApi(Protocol):
    """What an adapter of single-use authorisations offers (accounting "authorisations"): the
    payers open a link, present an invoice of the node to it, and present a new one while an
    error leaves the link open, as a wallet does (locustfiles/wallets/link_user.py)."""

    contract: ClassVar[int]
    name: ClassVar[str]
    idempotent: ClassVar[bool]  # False: a link is its own idempotency
    judged_by: ClassVar[str]  # "node": the class has `judge` (the end-of-run judge)
    accounting: ClassVar[str]  # "authorisations"
    chaos_connection_errors: bool

    @classmethod
    def for_user(cls, user: Any) -> LinkApi:
        """As WalletApi.for_user."""
        ...

    def open_link(self, amount_msat: int) -> Link | None:
        """A new link worth `amount_msat` (the service's own way of handing one out)."""
        ...

    def create_invoice(self, amount_msat: int) -> Invoice | None:
        """An invoice of a payee in the node's network (the node's, not the service's)."""
        ...

    def withdraw(self, link: Link, invoice: Invoice, phase: str) -> PayoutResult:
        """Present `invoice` to the link (LUD-03: its withdrawRequest, then its callback with
        k1 and pr): kind ok (the service said OK), fail (it said ERROR), info (no answer it
        could read as either: a timeout), refused (the link was used already), error."""
        ...

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        """The node's truth of a payment hash (GET /node/payments/{hash})."""
        ...

    def get_link(self, link: Link) -> str | None:
        """The link's state (LINK_STATES): open while it may still pay, used once it may not;
        None: could not be read."""
        ...
