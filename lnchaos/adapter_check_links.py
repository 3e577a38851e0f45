"""adapter-check of a withdraw-link adapter (accounting "authorisations"): the calls LinkUser and
the judges make, each judged by the node's truth (lnchaos/adapter_check.py says how a step is
reported). The money rule is checked on the service through the adapter: a link pays once, a
failed payment leaves it open, a used link refuses another invoice, and an HTTP error after the
node paid never re-opens it (`withdraw (error after paid)`: the bug found as double_payout)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lnchaos.adapter_check import (
    AMOUNT_MSAT,
    CLEAN,
    CLEAN_HTTP,
    FAILING,
    AdapterCheck,
    Misread,
)

# no payment fault, and every request of the node's LND routes answered 503 after the node acted
ERRORS_AFTER = {**CLEAN, "http_error_rate": 1.0, "http_fault_after_rate": 1.0}


class LinkCheck(AdapterCheck):
    NEEDS_NOTHING = ("for_user", "open_link", "create_invoice")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.link: Any = None

    def sequence(self) -> list[tuple[str, Callable[[], str], dict[str, float] | None]]:
        clean = {**CLEAN, **CLEAN_HTTP}
        return [
            ("for_user", self._for_user, clean),
            ("open_link", self._open_link, None),
            ("get_link", self._link_open, None),
            ("create_invoice", self._create_invoice, None),
            ("withdraw", self._withdraw_pays, None),
            ("get_node_payment", self._node_payment, None),
            ("get_link", self._link_used, None),
            ("withdraw (used)", self._withdraw_used, None),
            ("withdraw (failed)", self._withdraw_fails, FAILING),
            ("withdraw (error after paid)", self._withdraw_errs_after_paid, ERRORS_AFTER),
        ]

    def _ready(self, call: str) -> bool:
        if call == "for_user":
            return True
        return self.api is not None and (self.link is not None or call in self.NEEDS_NOTHING)

    # --- the steps ----------------------------------------------------------------------------
    def _open_link(self) -> str:
        self.link = self._new_link()
        return f"{self.link.link_id}: {self.link.amount_msat} msat"

    def _new_link(self) -> Any:
        link = self.api.open_link(AMOUNT_MSAT)
        if link is None or link.amount_msat != AMOUNT_MSAT or not str(link.url).startswith("http"):
            raise Misread(f"no link of {AMOUNT_MSAT} msat with a URL: {link!r}")
        return link

    def _state(self, link: Any, wanted: str, why: str) -> str:
        state = self.api.get_link(link)
        if state != wanted:
            raise Misread(f"link {link.link_id} reads {state!r}; {why}: {wanted}")
        return f"{wanted}, {why}"

    def _link_open(self) -> str:
        return self._state(self.link, "open", "a new link")

    def _withdraw_pays(self) -> str:
        self.invoice = self._invoice()
        result = self.api.withdraw(self.link, self.invoice, "check")
        truth = self._truth(self.invoice.payment_hash)
        if truth.get("status") != "succeeded":
            raise Misread(f"the node did not pay with no fault on: {truth}")
        if result.kind != "ok":
            raise Misread(f"the node paid; read as kind {result.kind!r} ({result.describe()})")
        return f"ok, the node paid {AMOUNT_MSAT} msat"

    def _link_used(self) -> str:
        return self._state(self.link, "used", "the node paid its invoice")

    def _withdraw_used(self) -> str:
        invoice = self._invoice()
        result = self.api.withdraw(self.link, invoice, "check")
        truth = self._truth(invoice.payment_hash)
        if truth.get("status") == "succeeded":
            raise Misread(f"a used link paid another invoice ({result.describe()})")
        if result.kind not in ("refused", "fail"):
            raise Misread(f"a used link's answer read as {result.kind!r} ({result.describe()})")
        return f"{result.kind}, nothing paid"

    def _withdraw_fails(self) -> str:
        link = self._new_link()
        invoice = self._invoice()
        result = self.api.withdraw(link, invoice, "check")
        truth = self._truth(invoice.payment_hash)
        if truth.get("status") == "succeeded":
            raise Misread(f"the node was set to fail every payment: {truth}")
        if result.kind not in ("fail", "info"):
            raise Misread(f"the node failed it; read as {result.kind!r} ({result.describe()})")
        return self._state(link, "open", f"{result.kind}; the node failed the payment")

    def _withdraw_errs_after_paid(self) -> str:
        link = self._new_link()
        invoice = self._invoice()
        result = self.api.withdraw(link, invoice, "check")
        self.node.set_faults(dict(CLEAN_HTTP, http_error_rate=0.0))  # the judge's reads now
        truth = self._truth(invoice.payment_hash)
        if truth.get("status") != "succeeded":
            return f"{result.kind}; the node did not pay (nothing to re-open)"
        return self._state(link, "used", f"{result.kind}; the node paid behind the error")
