"""What each LND call does on the node, callable without HTTP or gRPC: `LndService`. Both faces
(lnd_rest for REST, lnd_grpc for gRPC) parse their request into the JSON grpc-gateway would
hand LND, call it, and encode its JSON answer: one payment, whichever face it came through.

Outgoing payments go through the same LightningNode as the target's own payouts: the same
simulated network, payment faults and ground truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..common.errors import ApiError, bad_request
from ..common.limits import MAX_AMOUNT_MSAT
from .http_faults import HttpFaults, acted
from .invoices import Invoice, InvoiceError, private_key_for, pubkey_of
from .lnd_auth import AnyHexMacaroon, MacaroonPolicy, Permission
from .lnd_json import (
    CHANNEL_ID,
    HEX64,
    HEX66,
    HOLD_INVOICE_FIELDS,
    INVOICE_FIELDS,
    SEND_FIELDS,
    SEND_SYNC_FIELDS,
    SEND_TO_ROUTE_FIELDS,
    Code,
    LndError,
    channel_balance_json,
    check_fields,
    decode_bool,
    decode_bytes,
    decode_fee_limit,
    decode_int,
    decode_str,
    getinfo_json,
    hop_json,
    htlc_attempt_json,
    i64,
    invalid,
    invoice_json,
    parse_route,
    payment_json,
    route_json,
    send_response_json,
)
from .lnd_versions import NEWEST, VERSIONS, LndVersion
from .lnrpc import lightning_pb2 as ln
from .multipart import MPP_TIMEOUT_S, MultiPart, PartOutcome, PartRefused
from .network import LightningNode, Payment, PaymentStatus, SendRefused, payment_hash_of
from .receiving import SUBSCRIBER_QUEUE_MAX, InvoiceState, OwnInvoice, ReceiveError

Messages = AsyncIterator[dict[str, Any]]
# lnrpc.QueryRoutesRequest's fields (known ones we do not simulate are accepted, ignored)
QUERY_ROUTES_FIELDS = frozenset(f.name for f in ln.QueryRoutesRequest.DESCRIPTOR.fields)

CHANNEL_SIDE_MSAT = 10 * 100_000_000 * 1000  # each side of the one simulated channel at start
DEFAULT_INVOICE_EXPIRY_S = 86_400  # LND's default
MAX_INVOICE_EXPIRY_S = 365 * 86_400
MEMO_MAX = 1024
LIST_PAYMENTS_MAX = 100_000
LIST_INVOICES_DEFAULT = (
    100  # LND's num_max_invoices default  # LND's 0 means "all"; we bound a page
)
BACKLOG_MAX = 100_000
BLOCK_HEIGHT = 800_000
P2P_PORT = 9735  # what getinfo's `uris` name (the node has no peer-to-peer port of its own)
ALIVE_POLL_S = 1.0  # how often an idle stream checks that its caller is still there


# The permission LND's rpcserver asks of each call's macaroon (lnd_auth).
READ_INFO: Permission = ("info", "read")
READ_OFFCHAIN: Permission = ("offchain", "read")
READ_ONCHAIN: Permission = ("onchain", "read")
WRITE_OFFCHAIN: Permission = ("offchain", "write")
READ_INVOICES: Permission = ("invoices", "read")
WRITE_INVOICES: Permission = ("invoices", "write")


def has_send_payment_sync(version: LndVersion) -> bool:
    return version.send_payment_sync


class LndService:
    """The node's LND face: what each route does, on a LightningNode."""

    def __init__(
        self,
        node: LightningNode,
        *,
        seed: int,
        admin_token: str,
        macaroon_hex: str | None = None,
        macaroons: MacaroonPolicy | None = None,
        version: LndVersion = VERSIONS[NEWEST],
        alias: str = "lnchaos",
        mpp_timeout_s: float = MPP_TIMEOUT_S,
        status_initiated: bool = False,
    ):
        self.node = node
        self.admin_token = admin_token
        self.macaroons = macaroons or AnyHexMacaroon(macaroon_hex)
        self.version = version
        # routerrpc.usestatusinitiated (0.18+): SendPaymentV2 reports INITIATED before an HTLC
        self.status_initiated = status_initiated and version.status_initiated
        self.alias = alias
        self.multipart = MultiPart(node, timeout_s=mpp_timeout_s)
        self.router_pubkey = pubkey_of(private_key_for(seed, "router"))  # our channel's peer
        self.http_faults = HttpFaults(seed)
        self.streams: set[asyncio.Task[Any]] = set()

    # ---- auth ------------------------------------------------------------------------------------

    def authenticate(self, macaroon_hex: str | None, permission: Permission) -> None:
        """The call's macaroon allows `permission`, else LndError (lnd_auth)."""
        self.macaroons.check(macaroon_hex, permission)

    # ---- lightning ---------------------------------------------------------------------------

    def getinfo(self) -> dict[str, Any]:
        return getinfo_json(
            self.node.pubkey,
            alias=self.alias,
            block_height=BLOCK_HEIGHT,
            peers=1,
            version=self.version.release,
            uris=[f"{self.node.pubkey}@127.0.0.1:{P2P_PORT}"],
        )

    def channel_balance(self) -> dict[str, Any]:
        node = self.node
        in_flight_msat = node.in_flight_msat()
        received_msat = node.receiver.received_msat
        local_msat = CHANNEL_SIDE_MSAT + received_msat - node.sent_msat - node.fees_msat
        local_msat -= in_flight_msat
        remote_msat = CHANNEL_SIDE_MSAT + node.sent_msat - received_msat
        return channel_balance_json(local_msat, remote_msat, in_flight_msat)

    async def add_invoice(self, body: dict[str, Any]) -> OwnInvoice:
        """lnrpc.Lightning.AddInvoice. With `r_hash` and no `r_preimage`: a hold invoice."""
        check_fields(body, INVOICE_FIELDS)
        if body.get("value") not in (None, 0, "0") and body.get("value_msat") not in (
            None,
            0,
            "0",
        ):
            raise invalid("value and value_msat are mutually exclusive")
        amount_msat = 0
        if body.get("value_msat") not in (None, 0, "0"):
            amount_msat = decode_int(body["value_msat"], "value_msat", maximum=MAX_AMOUNT_MSAT)
        elif body.get("value") not in (None, 0, "0"):
            amount_msat = 1000 * decode_int(body["value"], "value", maximum=MAX_AMOUNT_MSAT // 1000)
        if amount_msat <= 0:
            raise invalid("the node mock does not issue zero-amount invoices: set value_msat")
        memo = decode_str(body.get("memo", ""), "memo", max_len=MEMO_MAX)
        expiry_s = decode_int(body.get("expiry", 0), "expiry", maximum=MAX_INVOICE_EXPIRY_S)
        expiry_s = expiry_s or DEFAULT_INVOICE_EXPIRY_S
        private = decode_bool(body.get("private", False), "private")
        preimage = payment_hash = description_hash = None
        if body.get("r_preimage"):
            preimage = decode_bytes(body["r_preimage"], "r_preimage")
            if len(preimage) != 32:
                raise invalid("payment preimage must be exactly 32 bytes")
        if body.get("r_hash"):
            r_hash = decode_bytes(body["r_hash"], "r_hash")
            if len(r_hash) != 32:
                raise invalid("payment hash must be exactly 32 bytes")
            payment_hash = r_hash.hex()
        if preimage is not None and payment_hash is not None:
            if payment_hash_of(preimage) != payment_hash:
                raise invalid("r_hash does not match r_preimage")
        if preimage is None and payment_hash is None:
            preimage = self.node.secret()
        if body.get("description_hash"):
            raw = decode_bytes(body["description_hash"], "description_hash")
            if len(raw) != 32:
                raise invalid("description hash must be exactly 32 bytes")
            description_hash = raw.hex()
        try:
            return await self.node.receiver.add(
                amount_msat,
                preimage=preimage,
                payment_hash=payment_hash,
                payment_addr=self.node.secret(),
                memo=memo,
                description_hash=description_hash,
                expiry_s=expiry_s,
                private=private,
            )
        except ReceiveError as err:
            raise LndError(Code.ALREADY_EXISTS, str(err)) from None

    async def add_hold_invoice(self, body: dict[str, Any]) -> OwnInvoice:
        """invoicesrpc.Invoices.AddHoldInvoice: an invoice whose preimage the caller keeps; the
        network's payment stops at ACCEPTED until SettleInvoice (or CancelInvoice)."""
        check_fields(body, HOLD_INVOICE_FIELDS)
        terms = {k: v for k, v in body.items() if k != "hash"}
        if not body.get("hash"):
            raise invalid("hash: the payment hash of a hold invoice is required")
        return await self.add_invoice({**terms, "r_hash": body["hash"]})

    async def settle_invoice(self, body: dict[str, Any]) -> None:
        """invoicesrpc.Invoices.SettleInvoice `{"preimage"}` (a hold invoice that was ACCEPTED)."""
        check_fields(body, frozenset({"preimage"}))
        preimage = decode_bytes(body.get("preimage", ""), "preimage")
        if len(preimage) != 32:
            raise invalid("preimage must be exactly 32 bytes")
        try:
            await self.node.receiver.settle(preimage)
        except ReceiveError as err:
            code = Code.NOT_FOUND if err.kind == "not_found" else Code.FAILED_PRECONDITION
            raise LndError(code, str(err)) from None

    async def cancel_invoice(self, body: dict[str, Any]) -> None:
        """invoicesrpc.Invoices.CancelInvoice `{"payment_hash"}`."""
        check_fields(body, frozenset({"payment_hash"}))
        payment_hash = decode_bytes(body.get("payment_hash", ""), "payment_hash")
        if len(payment_hash) != 32:
            raise invalid("payment_hash must be exactly 32 bytes")
        try:
            await self.node.receiver.cancel(payment_hash.hex())
        except ReceiveError as err:
            code = Code.NOT_FOUND if err.kind == "not_found" else Code.FAILED_PRECONDITION
            raise LndError(code, str(err)) from None

    async def lookup_invoice(self, r_hash_hex: str) -> OwnInvoice:
        if not HEX64.match(r_hash_hex):
            raise invalid("r_hash_str: must be 64 hex characters")
        invoice = await self.node.receiver.lookup(r_hash_hex.lower())
        if invoice is None:
            raise LndError(Code.NOT_FOUND, "unable to locate invoice")
        return invoice

    def decode_payreq(self, pay_req: str, *, amountless_ok: bool = False) -> Invoice:
        """amountless_ok: DecodePayReq's reading (an amountless invoice is num_msat 0, as LND
        answers it); a send's is refused."""
        try:
            return self.node.decode(pay_req, amountless_ok=amountless_ok)
        except InvoiceError as err:
            raise invalid(str(err)) from None

    async def send(self, body: dict[str, Any]) -> tuple[Payment, bool]:
        """routerrpc.Router.SendPaymentV2 up to the payment's hand-over to the network.
        Returns the payment and whether only final updates are wanted."""
        check_fields(body, SEND_FIELDS)
        invoice = self._invoice_to_pay(body)
        if body.get("fee_limit_sat") not in (None, 0, "0") and body.get("fee_limit_msat") not in (
            None,
            0,
            "0",
        ):
            raise invalid("fee_limit_sat and fee_limit_msat are mutually exclusive")
        fee_limit_msat = decode_int(body.get("fee_limit_msat", 0), "fee_limit_msat")
        if body.get("fee_limit_sat") not in (None, 0, "0"):
            fee_limit_msat = 1000 * decode_int(body["fee_limit_sat"], "fee_limit_sat")
        fee_limit_msat = min(fee_limit_msat, MAX_AMOUNT_MSAT)
        decode_int(body.get("timeout_seconds", 0), "timeout_seconds", maximum=2**31 - 1)
        no_inflight = decode_bool(body.get("no_inflight_updates", False), "no_inflight_updates")
        try:
            payment = await self._start(invoice, fee_limit_msat)
        except SendRefused as err:
            # LND: channeldb.ErrAlreadyPaid / ErrPaymentInFlight as codes.AlreadyExists.
            raise LndError(Code.ALREADY_EXISTS, str(err)) from None
        return payment, no_inflight

    def query_routes(self, request: dict[str, Any]) -> dict[str, Any]:
        """lnrpc.Lightning.QueryRoutes (the request as protojson): one route to a payee of the
        network, through our channel's peer, whose fee is the network's nominal fee
        (--fee-base-msat, --fee-ppm), within `fee_limit` (none: the amount, as LND)."""
        check_fields(request, QUERY_ROUTES_FIELDS)
        pub_key = decode_str(request.get("pub_key", ""), "pub_key")
        if not HEX66.match(pub_key):
            raise invalid("pub_key: must be a 66-hex-character node id")
        amt_sat = decode_int(request.get("amt", 0), "amt", maximum=MAX_AMOUNT_MSAT // 1000)
        amt_msat = decode_int(request.get("amt_msat", 0), "amt_msat", maximum=MAX_AMOUNT_MSAT)
        if amt_sat and amt_msat:
            raise invalid("amt and amt_msat are mutually exclusive")
        amount_msat = amt_msat or 1000 * amt_sat
        if amount_msat <= 0:
            raise invalid("amount must be greater than 0")
        f = self.node.faults
        fee_msat = f.fee_base_msat + amount_msat * f.fee_ppm // 1_000_000
        fee_limit_msat = decode_fee_limit(request.get("fee_limit"), amount_msat)
        if pub_key.lower() != self.node.merchants.pubkey or fee_msat > fee_limit_msat:
            # LND: code 2 (HTTP 500); a 4xx here, as for every refusal of a request (docs/lnd.md)
            raise LndError(Code.NOT_FOUND, "unable to find a path to destination")
        hops = [
            hop_json(self.router_pubkey, amount_msat, fee_msat, CHANNEL_ID),
            hop_json(pub_key.lower(), amount_msat, 0, CHANNEL_ID + 1),
        ]
        return {"routes": [route_json(hops, amount_msat, fee_msat)], "success_prob": 1.0}

    async def send_to_route(self, body: dict[str, Any]) -> dict[str, Any]:
        """routerrpc.Router.SendToRouteV2: one part (or the whole) of a payment over the caller's
        route; answers once the part ended (multipart.py: the parts end as a whole)."""
        check_fields(body, SEND_TO_ROUTE_FIELDS)
        payment_hash = decode_bytes(body.get("payment_hash", ""), "payment_hash")
        if len(payment_hash) != 32:
            raise invalid(f"invalid hash length of {len(payment_hash)}, want 32")
        route = body.get("route")
        if not route:
            raise invalid("unable to send, no routes provided")
        terms = parse_route(route)
        invoice = self.node.merchants.by_hash(payment_hash.hex())
        known = invoice is not None and invoice.payee == terms.pub_key
        if (
            invoice is None
            or not known
            or (terms.payment_addr is not None and terms.payment_addr != invoice.payment_addr)
        ):
            outcome = PartOutcome(0, time.time_ns(), None, "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS")
            outcome.resolve_time_ns = time.time_ns()
            return htlc_attempt_json(outcome, route)
        total_msat = terms.total_msat if terms.total_msat else terms.amount_msat
        try:
            outcome = await self.multipart.send_part(
                invoice, terms.amount_msat, terms.fee_msat, total_msat
            )
        except PartRefused as err:
            # LND: code 2; here as SendPaymentV2 refuses a hash paid or in flight (docs/lnd.md)
            code = Code.RESOURCE_EXHAUSTED if err.too_many else Code.ALREADY_EXISTS
            raise LndError(code, str(err)) from None
        return htlc_attempt_json(outcome, route)

    def send_updates(self, payment: Payment, no_inflight: bool) -> Messages:
        """SendPaymentV2's updates of the payment it started."""
        return payment_updates(payment, no_inflight, initiated=self.status_initiated)

    async def send_sync(self, body: dict[str, Any]) -> dict[str, Any]:
        """lnrpc.Lightning.SendPaymentSync: send and wait until the payment is final. A failure,
        and a refusal of a hash already paid or in flight, is an answer (`payment_error`, HTTP
        200), as LND gives it; only a request LND would not take is an error."""
        check_fields(body, SEND_SYNC_FIELDS)
        invoice = self._invoice_to_pay(body)
        fee_limit_msat = decode_fee_limit(body.get("fee_limit"), invoice.amount_msat)
        try:
            payment = await self._start(invoice, min(fee_limit_msat, MAX_AMOUNT_MSAT))
        except SendRefused as err:
            return send_response_json(invoice.payment_hash, str(err))
        await payment.done.wait()  # the node resolves every attempt (its own timer)
        return send_response_json(invoice.payment_hash, payment)

    async def _start(self, invoice: Invoice, fee_limit_msat: int) -> Payment:
        """The node's new attempt of `invoice`. SendRefused for a hash already paid or in flight
        (each RPC answers it its own way); a payment to this node itself is a bad request."""
        try:
            payment = await self.node.send(invoice, fee_limit_msat)
            acted(invoice.payment_hash)
            return payment
        except SendRefused as err:
            if err.code == "self_payment":
                raise invalid("no self-payments allowed") from None
            raise

    def _invoice_to_pay(self, body: dict[str, Any]) -> Invoice:
        """The invoice of a send's `payment_request`; an amount given must be the invoice's."""
        pay_req = body.get("payment_request")
        if not pay_req:
            raise invalid("payment_request is required: the node mock pays invoices only")
        invoice = self.decode_payreq(decode_str(pay_req, "payment_request"))
        for name, unit_msat in (("amt", 1000), ("amt_msat", 1)):
            if body.get(name) not in (None, 0, "0"):
                amount = decode_int(body[name], name) * unit_msat
                if amount != invoice.amount_msat:
                    raise invalid("amount must not be specified when paying a non-zero amount")
        return invoice

    async def track(self, payment_hash_hex: str) -> Payment:
        payment = await self.node.lookup(payment_hash_hex)
        if payment is None:
            raise LndError(Code.NOT_FOUND, "payment isn't initiated")
        return payment

    def wallet_balance(self) -> dict[str, Any]:
        """lnrpc.WalletBalanceResponse: the node keeps no on-chain coins (its channel is all)."""
        zero = "0"
        return {
            "total_balance": zero,
            "confirmed_balance": zero,
            "unconfirmed_balance": zero,
            "locked_balance": zero,
            "reserved_balance_anchor_chan": zero,
            "account_balance": {},
        }

    async def list_invoices(self, query: dict[str, Any]) -> dict[str, Any]:
        """lnrpc.Lightning.ListInvoices."""
        pending_only = decode_bool(query.get("pending_only", False), "pending_only")
        index_offset = decode_int(query.get("index_offset", 0), "index_offset")
        limit = decode_int(query.get("num_max_invoices", 0), "num_max_invoices")
        reversed_ = decode_bool(query.get("reversed", False), "reversed")
        page = await self.node.receiver.page(
            index_offset,
            min(limit or LIST_INVOICES_DEFAULT, BACKLOG_MAX),
            reversed_=reversed_,
            pending_only=pending_only,
        )
        return {
            "invoices": [invoice_json(i) for i in page],
            "first_index_offset": i64(page[0].add_index if page else 0),
            "last_index_offset": i64(page[-1].add_index if page else 0),
        }

    async def subscribe_invoices(
        self, add_index: int, settle_index: int, alive: Callable[[], bool]
    ) -> Messages:
        """lnrpc.Lightning.SubscribeInvoices: invoices added after `add_index` and settled after
        `settle_index` (each only when not 0), then every change as it happens, while `alive`."""
        receiver = self.node.receiver
        sub = self._subscribe()  # before the backlog, so nothing falls between
        backlog = await receiver.since(add_index, settle_index, BACKLOG_MAX)
        return _invoice_updates(receiver, sub, backlog, alive)

    async def subscribe_single_invoice(
        self, payment_hash_hex: str, alive: Callable[[], bool]
    ) -> Messages:
        """invoicesrpc.Invoices.SubscribeSingleInvoice: the invoice's state now, then each
        change, until it is SETTLED or CANCELED."""
        sub = self._subscribe()
        invoice = await self.node.receiver.lookup(payment_hash_hex)
        if invoice is None:
            self.node.receiver.unsubscribe(sub)
            raise LndError(Code.NOT_FOUND, "unable to locate invoice")
        return _invoice_updates(self.node.receiver, sub, [invoice], alive, payment_hash_hex)

    def track_payments(self, no_inflight: bool) -> Messages:
        """routerrpc.Router.TrackPayments: every payment's updates from now on (its final ones
        only, with `no_inflight`). A watcher too far behind is dropped and its stream ends."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_MAX)
        dropped = asyncio.Event()

        def watch(payment: Payment) -> None:
            if no_inflight and payment.status is PaymentStatus.IN_FLIGHT:
                return
            try:
                queue.put_nowait(payment_json(payment))  # a snapshot of this moment
            except asyncio.QueueFull:
                self.node.watchers.discard(watch)
                dropped.set()

        self.node.watchers.add(watch)
        return _watched(queue, dropped, lambda: self.node.watchers.discard(watch))

    def _subscribe(self) -> Any:
        try:
            return self.node.receiver.subscribe()
        except ReceiveError as err:
            raise LndError(Code.RESOURCE_EXHAUSTED, str(err)) from None

    async def list_payments(self, query: dict[str, str]) -> dict[str, Any]:
        """lnrpc.Lightning.ListPayments."""
        include_incomplete = decode_bool(
            query.get("include_incomplete", "false"), "include_incomplete"
        )
        index_offset = decode_int(query.get("index_offset", "0"), "index_offset")
        max_payments = decode_int(query.get("max_payments", "0"), "max_payments")
        max_payments = min(max_payments or LIST_PAYMENTS_MAX, LIST_PAYMENTS_MAX)
        reversed_ = decode_bool(query.get("reversed", "false"), "reversed")
        count_total = decode_bool(
            query.get("count_total_payments", "false"), "count_total_payments"
        )
        start_s = decode_int(query.get("creation_date_start", "0"), "creation_date_start")
        end_s = decode_int(query.get("creation_date_end", "0"), "creation_date_end")
        page = await self.node.list_payments(
            index_offset=index_offset,
            max_payments=max_payments,
            reversed_=reversed_,
            include_incomplete=include_incomplete,
        )
        if start_s or end_s:
            page = [
                p
                for p in page
                if p.created_ms // 1000 >= start_s and (not end_s or p.created_ms // 1000 <= end_s)
            ]
        total = await self.node.count_payments(include_incomplete) if count_total else 0
        return {
            "payments": [payment_json(p) for p in page],
            "first_index_offset": i64(page[0].payment_index if page else 0),
            "last_index_offset": i64(page[-1].payment_index if page else 0),
            "total_num_payments": i64(total),
        }

    # ---- the network (admin) ---------------------------------------------------------------------

    async def network_pay(self, payment_request: str, amount_msat: int | None) -> OwnInvoice:
        """The simulated network pays one of this node's invoices (funds a wallet on it)."""
        try:
            invoice = self.node.decode(payment_request)
        except InvoiceError as err:
            raise bad_request(err.code, str(err)) from None
        if invoice.payee != self.node.pubkey:
            raise ApiError(404, "not_our_invoice", "not an invoice of this node")
        try:
            return await self.node.receiver.pay(
                invoice.payment_hash, amount_msat or invoice.amount_msat
            )
        except ReceiveError as err:
            status = {"not_found": 404, "not_open": 409}.get(err.kind, 400)
            raise ApiError(status, f"invoice_{err.kind}", str(err)) from None

    async def truth(self) -> dict[str, Any]:
        node = self.node
        totals = await node.totals()
        return {
            "sent": {
                "succeeded": totals["succeeded"],
                "failed": totals["failed"],
                "in_flight": totals["in_flight"],
                "amount_msat": node.sent_msat,
                "fees_msat": node.fees_msat,
                "in_flight_msat": node.in_flight_msat(),
            },
            "received": {
                "settled": node.receiver.received_count,
                "amount_msat": node.receiver.received_msat,
            },
            "pubkey": node.pubkey,
        }


async def payment_updates(
    payment: Payment, no_inflight: bool, *, initiated: bool = False
) -> Messages:
    """The current state at once (unless only final updates are wanted), then the final one.
    `initiated`: first the payment as LND reports it before its first HTLC, INITIATED."""
    if payment.status is PaymentStatus.IN_FLIGHT:
        if not no_inflight:
            if initiated:
                yield {**payment_json(payment), "status": "INITIATED", "htlcs": []}
            yield payment_json(payment)
        await payment.done.wait()
    yield payment_json(payment)


FINAL_STATES = (InvoiceState.SETTLED, InvoiceState.CANCELED)


async def _watched(
    queue: asyncio.Queue[dict[str, Any]], dropped: asyncio.Event, stop: Callable[[], None]
) -> Messages:
    try:
        while not (dropped.is_set() and queue.empty()):
            try:
                yield await asyncio.wait_for(queue.get(), timeout=ALIVE_POLL_S)
            except TimeoutError:
                continue
    finally:
        stop()


async def _invoice_updates(
    receiver: Any,
    sub: Any,
    backlog: list[OwnInvoice],
    alive: Callable[[], bool],
    only_hash: str | None = None,
) -> Messages:
    """The backlog, then each change (of `only_hash`'s invoice alone, ending once it is final)."""
    try:
        for invoice in backlog:
            # the state as sent, not the live invoice's after the yield: one settled meanwhile
            # must still go out (from the queue) before the stream ends
            state = invoice.state
            yield invoice_json(invoice)
            if only_hash and state in FINAL_STATES:
                return
        while alive():
            try:
                invoice = await asyncio.wait_for(sub.queue.get(), timeout=ALIVE_POLL_S)
            except TimeoutError:
                continue
            if invoice is None:
                if sub.dropped:
                    return  # dropped (too far behind) or the node is stopping: the stream ends
                continue
            if only_hash and invoice.payment_hash != only_hash:
                continue
            yield invoice_json(invoice)
            if only_hash and invoice.state in FINAL_STATES:
                return
    finally:
        receiver.unsubscribe(sub)


__all__ = ["LndService", "Messages"]
