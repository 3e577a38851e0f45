"""LND's REST API on the node mock, so wallet software written for LND can be chaos-tested.

The routes (docs/lnd-rest.md) answer as LND's grpc-gateway does (see lnd_json), authenticate
with the `Grpc-Metadata-macaroon` header, and are the only routes the HTTP faults (http_faults)
apply to. Outgoing payments go through the same LightningNode as the target's own payouts: the
same simulated network, payment faults and ground truth. The network admin routes
(`/admin/network/*`, `X-Admin-Token`) let a test pay the node's own invoices from the network and
read what the node really sent and received.

Logic sits in `LndService` (callable without HTTP); handlers parse, call it and encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ..common.errors import (
    ApiError,
    add_route,
    bad_request,
    read_json_object,
    require_int,
    require_str,
)
from ..common.limits import MAX_AMOUNT_MSAT
from .http_faults import (
    FaultKind,
    HttpFault,
    HttpFaults,
    close_connection,
    error_response,
    strike_unary,
)
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
    add_invoice_response,
    channel_balance_json,
    check_fields,
    decode_bool,
    decode_bytes,
    decode_fee_limit,
    decode_int,
    decode_str,
    getinfo_json,
    hash_from_path,
    hop_json,
    htlc_attempt_json,
    i64,
    invalid,
    invoice_json,
    parse_route,
    payment_json,
    payreq_json,
    route_json,
    send_response_json,
)
from .lnd_versions import NEWEST, VERSIONS, LndVersion
from .multipart import MPP_TIMEOUT_S, MultiPart, PartOutcome, PartRefused
from .network import LightningNode, Payment, PaymentStatus, SendRefused, payment_hash_of
from .receiving import SUBSCRIBER_QUEUE_MAX, InvoiceState, OwnInvoice, ReceiveError

log = logging.getLogger("lnchaos.lnd_rest")

MACAROON_HEADER = "Grpc-Metadata-macaroon"
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
    ):
        self.node = node
        self.admin_token = admin_token
        self.macaroons = macaroons or AnyHexMacaroon(macaroon_hex)
        self.version = version
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

    def decode_payreq(self, pay_req: str) -> Invoice:
        try:
            return self.node.decode(pay_req)
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

    def query_routes(self, pub_key: str, amount_msat: int) -> dict[str, Any]:
        """lnrpc.Lightning.QueryRoutes: one route to a payee of the network, through our
        channel's peer, whose fee is the network's nominal fee (--fee-base-msat, --fee-ppm)."""
        if not HEX66.match(pub_key):
            raise invalid("pub_key: must be a 66-hex-character node id")
        if amount_msat <= 0:
            raise invalid("amount must be greater than 0")
        if pub_key.lower() != self.node.merchants.pubkey:
            # LND: code 2 (HTTP 500); a 4xx here, as for every refusal of a request (docs/lnd.md)
            raise LndError(Code.NOT_FOUND, "unable to find a path to destination")
        f = self.node.faults
        fee_msat = f.fee_base_msat + amount_msat * f.fee_ppm // 1_000_000
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
            return await self.node.send(invoice, fee_limit_msat)
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


LND: web.AppKey[LndService] = web.AppKey("lnchaos_lnd", LndService)


# ---- the application glue ---------------------------------------------------------------------


def lnd_ctx(build: Callable[[web.Application], LndService]):  # noqa: ANN201 - cleanup ctx
    """A cleanup context that builds the service once the node exists (append it after the
    context that makes the node)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[LND] = build(app)
        yield
        await _end_streams(app)

    return ctx


async def _end_streams(app: web.Application) -> None:
    service = app.get(LND)
    if service is None:
        return
    service.node.receiver.close()
    service.multipart.close()
    tasks = [t for t in service.streams if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)


def add_lnd_routes(app: web.Application) -> None:
    """LND's REST routes and the network admin routes. Needs `lnd_ctx` in the cleanup contexts."""
    app.on_shutdown.append(_end_streams)
    for method, path, handler in lnd_routes():
        add_route(app, method, path, handler)
    add_route(app, "POST", "/admin/network/pay", network_pay)
    add_route(app, "GET", "/admin/network/truth", network_truth)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
READ_INFO: Permission = ("info", "read")
READ_OFFCHAIN: Permission = ("offchain", "read")
READ_ONCHAIN: Permission = ("onchain", "read")
WRITE_OFFCHAIN: Permission = ("offchain", "write")
READ_INVOICES: Permission = ("invoices", "read")
WRITE_INVOICES: Permission = ("invoices", "write")


def lnd_routes() -> list[tuple[str, str, Handler]]:
    """(method, path, handler) of each LND REST route, with the permission LND's rpcserver asks
    of the call's macaroon."""
    return [
        ("GET", "/v1/getinfo", unary(getinfo, READ_INFO)),
        ("GET", "/v1/balance/channels", unary(channel_balance, READ_OFFCHAIN)),
        ("GET", "/v1/balance/blockchain", unary(wallet_balance, READ_ONCHAIN)),
        ("GET", "/v1/invoices", unary(list_invoices, READ_INVOICES)),
        ("POST", "/v1/invoices", unary(add_invoice, WRITE_INVOICES)),
        ("GET", "/v1/invoice/{r_hash_str}", unary(lookup_invoice, READ_INVOICES)),
        ("GET", "/v1/invoices/subscribe", stream(subscribe_invoices, READ_INVOICES)),
        ("GET", "/v1/payreq/{pay_req}", unary(decode_payreq, READ_OFFCHAIN)),
        ("GET", "/v1/payments", unary(list_payments, READ_OFFCHAIN)),
        (
            "POST",
            "/v1/channels/transactions",
            only_while(has_send_payment_sync, unary(send_payment_sync, WRITE_OFFCHAIN)),
        ),
        ("GET", "/v1/graph/routes/{pub_key}/{amt}", unary(query_routes, READ_OFFCHAIN)),
        ("POST", "/v2/router/route/send", unary(send_to_route, WRITE_OFFCHAIN)),
        ("POST", "/v2/invoices/hodl", unary(add_hold_invoice, WRITE_INVOICES)),
        ("GET", "/v2/invoices/lookup", unary(lookup_invoice_v2, READ_INVOICES)),
        ("POST", "/v2/router/send", stream(send_payment, WRITE_OFFCHAIN)),
        ("GET", "/v2/router/track/{payment_hash}", stream(track_payment, READ_OFFCHAIN)),
        ("POST", "/v2/invoices/settle", unary(settle_invoice, WRITE_INVOICES)),
        ("POST", "/v2/invoices/cancel", unary(cancel_invoice, WRITE_INVOICES)),
    ]


def has_send_payment_sync(version: LndVersion) -> bool:
    return version.send_payment_sync


def only_while(present: Callable[[LndVersion], bool], handler: Handler) -> Handler:
    """A route the emulated LND release may lack: then grpc-gateway's answer to a path it does
    not know (HTTP 404, code 5 "Not Found"), before any macaroon check or fault."""

    async def gated(request: web.Request) -> web.StreamResponse:
        if not present(request.app[LND].version):
            return error_response(LndError(Code.NOT_FOUND, "Not Found"))
        return await handler(request)

    return gated


Unary = Callable[[LndService, web.Request], Awaitable[dict[str, Any]]]
Messages = AsyncIterator[dict[str, Any]]
Stream = Callable[[LndService, web.Request], Awaitable[Messages]]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise invalid("request body too large") from None
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise invalid(f"unexpected JSON: {err}") from None
    if not isinstance(value, dict):
        raise invalid("body must be a JSON object")
    return value


async def _act_unary(
    service: LndService, request: web.Request, fn: Unary, permission: Permission
) -> web.Response:
    try:
        service.authenticate(request.headers.get(MACAROON_HEADER), permission)
        return web.json_response(await fn(service, request))
    except LndError as err:
        return error_response(err)
    except Exception:
        log.exception("LND route %s %s", request.method, request.path)
        return error_response(LndError(Code.INTERNAL, "internal error; see the node's log"))


def unary(fn: Unary, permission: Permission) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        service = request.app[LND]
        fault = service.http_faults.draw(service.node.faults)
        if not fault.after:
            await _delay(fault)
            if fault.kind is not FaultKind.NONE:
                return await strike_unary(request, fault)
        response = await _act_unary(service, request, fn, permission)
        if fault.after:
            await _delay(fault)
            if fault.kind is not FaultKind.NONE:
                return await strike_unary(request, fault)
        return response

    return handler


async def _delay(fault: HttpFault) -> None:
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)


def stream(fn: Stream, permission: Permission) -> Handler:
    """A server-streaming RPC: `fn` acts and returns the updates; each is sent as one line
    `{"result": ...}`. A refusal before the first update is the error status with
    `{"error": <Status>}`, as grpc-gateway does."""

    async def handler(request: web.Request) -> web.StreamResponse:
        service = request.app[LND]
        task = asyncio.current_task()
        assert task is not None
        service.streams.add(task)
        try:
            return await _serve_stream(service, request, fn, permission)
        finally:
            service.streams.discard(task)

    return handler


async def _serve_stream(
    service: LndService, request: web.Request, fn: Stream, permission: Permission
) -> web.StreamResponse:
    fault = service.http_faults.draw(service.node.faults)
    if not fault.after:
        await _delay(fault)
        if fault.kind is FaultKind.STALL:
            return await _stall(request, fault, None)
        if fault.kind is not FaultKind.NONE:
            return await strike_unary(request, fault)
    try:
        service.authenticate(request.headers.get(MACAROON_HEADER), permission)
        messages = await fn(service, request)
    except LndError as err:
        return web.json_response({"error": err.status()}, status=err.http_status)
    except Exception:
        log.exception("LND stream %s %s", request.method, request.path)
        err = LndError(Code.INTERNAL, "internal error; see the node's log")
        return web.json_response({"error": err.status()}, status=err.http_status)
    try:
        if fault.after:
            await _delay(fault)
            if fault.kind is FaultKind.STALL:
                return await _stall(request, fault, messages)
            if fault.kind is not FaultKind.NONE:
                return await strike_unary(request, fault)
        response = _stream_response()
        await response.prepare(request)
        try:
            async for message in messages:
                await response.write(_line({"result": message}))
            await response.write_eof()
        except LndError as err:
            with contextlib.suppress(ConnectionError):
                await response.write(_line({"error": err.status()}))
                await response.write_eof()
        except ConnectionError:
            pass  # the caller went away
        return response
    finally:
        await messages.aclose()  # type: ignore[attr-defined]


async def _stall(request: web.Request, fault: HttpFault, messages: Messages | None) -> web.Response:
    """Send the 200 header (and, after the node acted, its first update), then nothing for
    `stall_ms`, then close the connection without ending the stream."""
    response = _stream_response()
    try:
        await response.prepare(request)
        if messages is not None:
            first = await anext(messages, None)
            if first is not None:
                await response.write(_line({"result": first}))
        await asyncio.sleep(fault.stall_ms / 1000)
    except (ConnectionResetError, ConnectionError):
        pass
    close_connection(request)
    return response  # type: ignore[return-value]


def _stream_response() -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    return response


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _alive(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


# ---- handlers ------------------------------------------------------------------------------------


async def getinfo(service: LndService, request: web.Request) -> dict[str, Any]:
    return service.getinfo()


async def channel_balance(service: LndService, request: web.Request) -> dict[str, Any]:
    return service.channel_balance()


async def add_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    return add_invoice_response(await service.add_invoice(await _body(request)))


async def lookup_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    return invoice_json(await service.lookup_invoice(request.match_info["r_hash_str"]))


async def decode_payreq(service: LndService, request: web.Request) -> dict[str, Any]:
    return payreq_json(service.decode_payreq(request.match_info["pay_req"]))


async def list_payments(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.list_payments(dict(request.query))


async def settle_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    await service.settle_invoice(await _body(request))
    return {}


async def cancel_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    await service.cancel_invoice(await _body(request))
    return {}


async def add_hold_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    invoice = await service.add_hold_invoice(await _body(request))
    answer = add_invoice_response(invoice)
    return {k: answer[k] for k in ("payment_request", "add_index", "payment_addr")}


async def lookup_invoice_v2(service: LndService, request: web.Request) -> dict[str, Any]:
    """invoicesrpc.Invoices.LookupInvoiceV2 `?payment_hash=` (base64 bytes; hex accepted)."""
    payment_hash = hash_from_path(request.query.get("payment_hash", ""))
    return invoice_json(await service.lookup_invoice(payment_hash))


async def query_routes(service: LndService, request: web.Request) -> dict[str, Any]:
    """GET /v1/graph/routes/{pub_key}/{amt} (`amt` in sat, or `?amt_msat=`)."""
    amt_sat = decode_int(request.match_info["amt"], "amt")
    amt_msat = decode_int(request.query.get("amt_msat", "0"), "amt_msat")
    if amt_sat and amt_msat:
        raise invalid("amt and amt_msat are mutually exclusive")
    amount_msat = amt_msat or amt_sat * 1000
    return service.query_routes(request.match_info["pub_key"], amount_msat)


async def send_to_route(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.send_to_route(await _body(request))


async def send_payment(service: LndService, request: web.Request) -> Messages:
    payment, no_inflight = await service.send(await _body(request))
    return _payment_updates(payment, no_inflight)


async def send_payment_sync(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.send_sync(await _body(request))


async def track_payment(service: LndService, request: web.Request) -> Messages:
    payment_hash = hash_from_path(request.match_info["payment_hash"])
    no_inflight = decode_bool(
        request.query.get("no_inflight_updates", "false"), "no_inflight_updates"
    )
    payment = await service.track(payment_hash)
    return _payment_updates(payment, no_inflight)


async def _payment_updates(payment: Payment, no_inflight: bool) -> Messages:
    """The current state at once (unless only final updates are wanted), then the final one."""
    if payment.status is PaymentStatus.IN_FLIGHT:
        if not no_inflight:
            yield payment_json(payment)
        await payment.done.wait()
    yield payment_json(payment)


async def subscribe_invoices(service: LndService, request: web.Request) -> Messages:
    add_index = decode_int(request.query.get("add_index", "0"), "add_index")
    settle_index = decode_int(request.query.get("settle_index", "0"), "settle_index")
    return await service.subscribe_invoices(add_index, settle_index, lambda: _alive(request))


async def wallet_balance(service: LndService, request: web.Request) -> dict[str, Any]:
    return service.wallet_balance()


async def list_invoices(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.list_invoices(dict(request.query))


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
            yield invoice_json(invoice)
            if only_hash and invoice.state in FINAL_STATES:
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


# ---- network admin (project error shape, X-Admin-Token) -----------------------------------------


def _require_admin(request: web.Request) -> LndService:
    service = request.app[LND]
    given = request.headers.get("X-Admin-Token", "")
    expected = service.admin_token
    if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong X-Admin-Token")
    return service


async def network_pay(request: web.Request) -> web.Response:
    """`POST /admin/network/pay {"payment_request", "amount_msat"?}`: the network pays one of
    the node's own invoices (SETTLED; ACCEPTED for a hold invoice)."""
    service = _require_admin(request)
    body = await read_json_object(request)
    payment_request = require_str(body, "payment_request", max_len=4096)
    amount_msat = None
    if "amount_msat" in body:
        amount_msat = require_int(body, "amount_msat", minimum=1, maximum=MAX_AMOUNT_MSAT)
    invoice = await service.network_pay(payment_request, amount_msat)
    answer = {
        "payment_hash": invoice.payment_hash,
        "state": str(invoice.state),
        "amount_msat": invoice.amt_paid_msat,
        "settle_index": invoice.settle_index,
    }
    return web.json_response(answer, status=200 if invoice.state is InvoiceState.SETTLED else 202)


async def network_truth(request: web.Request) -> web.Response:
    """`GET /admin/network/truth`: what the node really sent and received, ever."""
    service = _require_admin(request)
    return web.json_response(await service.truth())


__all__ = [
    "LND",
    "LndService",
    "add_lnd_routes",
    "lnd_ctx",
]
