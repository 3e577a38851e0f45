"""The wallet's node client over LND's REST API (`lnchaos target --node-url URL`), so the same
payout code can talk to the node mock over HTTP, or to a real LND.

Attempts. LND keeps one payment per hash; a retry after it failed re-initialises it under a new
payment_index (only once every earlier attempt failed: LND refuses a send while one is in flight
or after one succeeded). So the payment_index of the first update of SendPaymentV2's stream is the
new attempt's id (`send` returns it), and TrackPaymentV2 and ListPayments show a hash's newest
attempt. A truth asked for an attempt is read from there: when the newest attempt is the one
asked, its truth; when the newest is a later one, the asked one is older and, since a new attempt
starts only after the earlier ones failed, FAILED (reason "superseded": LND keeps no record of an
attempt it re-initialised); when the node knows no attempt that new, UNKNOWN.

It is written to be careful about the faults the node mock injects:
- `send` returns only once the node has the attempt, and raises SendRefused only when the node
  refused it. An ambiguous answer (5xx, reset, stall) is resolved by asking the node
  (TrackPaymentV2) for the hash's newest attempt: one in flight or succeeded that this client had
  not seen before the call is taken as this call's (an error after the node acted is not a
  failure); otherwise the send is retried, a bounded number of times (a failed one is retried
  too: a new attempt of a failed hash is allowed, and it is the one returned). LND takes no
  idempotency key but the hash, so an attempt another caller started meanwhile cannot be told
  from this call's: the caller must not send one hash from two places at once (the wallet
  refuses a payout of a hash another payout is paying).
- a hash's updates are followed from the SendPaymentV2 stream in the background; when that
  stream breaks, from TrackPaymentV2; `wait` reads that, `lookup` asks the node.
- reads are retried on transport errors and 5xx, a bounded number of times; when the node cannot
  be reached, they raise NodeUnavailable rather than guess.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import aiohttp.web

from ..common.errors import add_route
from .client import PaymentTruth, SendRefused
from .invoices import CURRENCY, Invoice, InvoiceError
from .network import PaymentStatus
from .network_http import ADMIN_HEADER, FAULT_ROUTES, NETWORK_ROUTES

log = logging.getLogger("lnchaos.lnd_client")

STATUS = {
    "SUCCEEDED": PaymentStatus.SUCCEEDED,
    "FAILED": PaymentStatus.FAILED,
    "IN_FLIGHT": PaymentStatus.IN_FLIGHT,
    "INITIATED": PaymentStatus.IN_FLIGHT,
}
LIST_PAGE_MAX = 1000
LIST_PAGES_MAX = 10_000
FOLLOWERS_MAX = 10_000
KNOWN_MAX = 100_000
WAIT_ROUNDS_MAX = 8  # followers a `wait` may start (one ends early when a newer attempt began)
SUPERSEDED = "superseded"  # the failure reason of an attempt a later one of its hash replaced


class NodeUnavailable(ConnectionError):
    """The node could not be asked (transport errors or 5xx, retries exhausted)."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""


@dataclass
class _Follower:
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def truth_of_json(payment: dict[str, Any]) -> PaymentTruth:
    """A PaymentTruth from an lnrpc.Payment (grpc-gateway JSON)."""
    status = STATUS.get(str(payment.get("status")), PaymentStatus.UNKNOWN)
    return PaymentTruth(
        payment_hash=str(payment.get("payment_hash", "")),
        status=status,
        amount_msat=int(payment.get("value_msat") or 0),
        fee_msat=int(payment.get("fee_msat") or 0) if status is PaymentStatus.SUCCEEDED else 0,
        failure_reason=str(payment.get("failure_reason") or "FAILURE_REASON_NONE"),
        attempt_id=int(payment.get("payment_index") or 0) or None,
    )


def select(newest: PaymentTruth | None, attempt_id: int | None) -> PaymentTruth | None:
    """The truth of `attempt_id` (of the hash when None) given the hash's newest attempt; None
    when that does not tell (the asked attempt is newer than any seen)."""
    if newest is None or attempt_id is None or newest.attempt_id == attempt_id:
        return newest
    if newest.attempt_id is not None and newest.attempt_id > attempt_id:
        # A later attempt exists, so this one failed (a new one starts only after that).
        return PaymentTruth(
            newest.payment_hash,
            PaymentStatus.FAILED,
            newest.amount_msat,
            0,
            SUPERSEDED,
            attempt_id,
        )
    return None


def hash_in_path(payment_hash_hex: str) -> str:
    """A `bytes` path parameter: URL-safe base64 (as grpc-gateway expects)."""
    return base64.urlsafe_b64encode(bytes.fromhex(payment_hash_hex)).decode()


class LndRestNodeClient:
    """NodeClient over LND's REST API (aiohttp)."""

    def __init__(
        self,
        base_url: str,
        macaroon_hex: str | None = None,
        *,
        request_timeout_s: float = 5.0,
        first_update_timeout_s: float = 1.0,
        attempts: int = 4,
        retry_pause_s: float = 0.05,
        follow_max_s: float = 300.0,
        fee_limit_timeout_seconds: int = 60,
    ):
        assert attempts >= 1
        self.base_url = base_url.rstrip("/")
        self.macaroon_hex = macaroon_hex or "00"  # the mock accepts any hex; LND needs its own
        self.request_timeout_s = request_timeout_s
        self.first_update_timeout_s = first_update_timeout_s
        self.attempts = attempts
        self.retry_pause_s = retry_pause_s
        self.follow_max_s = follow_max_s
        self.timeout_seconds = fee_limit_timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        self._known: OrderedDict[str, PaymentTruth] = OrderedDict()  # last seen, by hash
        self._followers: dict[str, _Follower] = {}
        self._closed = False

    # ---- plumbing ------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Grpc-Metadata-macaroon": self.macaroon_hex},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout_s),
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        tasks = [f.task for f in self._followers.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._followers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _remember(self, truth: PaymentTruth) -> PaymentTruth:
        """Keep the hash's newest truth: a later attempt's, or a later state of the same one
        (an answer that arrives late must not take a final state back). Returns what is kept."""
        old = self._known.get(truth.payment_hash)
        if old is not None:
            older = (truth.attempt_id or 0) < (old.attempt_id or 0)
            same = truth.attempt_id == old.attempt_id
            if older or (same and old.final and not truth.final):
                self._known.move_to_end(truth.payment_hash)
                return old
        self._known[truth.payment_hash] = truth
        self._known.move_to_end(truth.payment_hash)
        while len(self._known) > KNOWN_MAX:
            self._known.popitem(last=False)
        return truth

    def _settled(self, payment_hash: str, attempt_id: int | None) -> PaymentTruth | None:
        """A truth seen that can no longer change: the asked attempt's final one, or the hash's
        success (a failed hash may get a new attempt, from anyone)."""
        truth = select(self._known.get(payment_hash), attempt_id)
        if truth is None or not truth.final:
            return None
        if attempt_id is None and truth.status is not PaymentStatus.SUCCEEDED:
            return None
        return truth

    async def _get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """One unary GET; 2xx → body, 4xx → LookupError(code, message), else _Transient."""
        try:
            async with asyncio.timeout(self.request_timeout_s):
                async with self.session.get(self.base_url + path, params=params) as resp:
                    text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as err:
            raise _Transient(f"GET {path}: {type(err).__name__}: {err}") from None
        body = _loads(text)
        if resp.status < 300:
            return body
        status = body.get("error", body) if isinstance(body, dict) else {}
        code, message = int(status.get("code", 0) or 0), str(status.get("message", text[:200]))
        if 400 <= resp.status < 500 or code == 2:  # LND answers bad input with code 2 (500)
            raise LookupError(code, message)
        raise _Transient(f"GET {path}: HTTP {resp.status}: {message}")

    async def _retrying(self, what: str, attempt_fn: Any) -> Any:
        last = ""
        for attempt in range(self.attempts):
            try:
                return await attempt_fn()
            except _Transient as err:
                last = str(err)
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(self.retry_pause_s * (attempt + 1))
        raise NodeUnavailable(f"{what}: node unavailable after {self.attempts} attempts: {last}")

    # ---- NodeClient ---------------------------------------------------------------------------

    async def decode(self, payment_request: str) -> Invoice:
        if not isinstance(payment_request, str) or not 0 < len(payment_request) <= 4096:
            raise InvoiceError("malformed_invoice", "payment_request must be a BOLT11 string")
        pay_req = payment_request.strip().lower()
        foreign = foreign_currency(pay_req)
        if foreign is not None:  # as the embedded node says it (invoices.decode), not "malformed"
            message = f"invoice is for network '{foreign}', this node is on regtest"
            raise InvoiceError("foreign_invoice", message)
        try:
            body = await self._retrying(
                "decode", lambda: self._get_json("/v1/payreq/" + quote(pay_req, safe=""))
            )
        except LookupError as err:
            message = f"the node cannot decode it: {err.args[1]}"
            raise InvoiceError("malformed_invoice", message) from None
        amount_msat = int(body.get("num_msat") or 0)
        if amount_msat <= 0:
            raise InvoiceError("amountless_invoice", "invoices without an amount are not supported")
        addr = body.get("payment_addr") or ""
        return Invoice(
            payment_request=pay_req,
            payment_hash=str(body["payment_hash"]),
            amount_msat=amount_msat,
            payee=str(body.get("destination", "")),
            created_s=int(body.get("timestamp") or 0),
            expiry_s=int(body.get("expiry") or 3600),
            description=body.get("description") or None,
            description_hash=body.get("description_hash") or None,
            payment_addr=base64.b64decode(addr).hex() if addr else "",
            min_final_cltv_expiry=int(body.get("cltv_expiry") or 0),
        )

    async def send(self, invoice: Invoice, fee_limit_msat: int) -> int:
        """Start a new attempt; returns its id once the node has it. SendRefused when the node
        refused it."""
        payment_hash = invoice.payment_hash
        before = self._known.get(payment_hash)
        seen = (before.attempt_id or 0) if before is not None else 0
        last = ""
        for attempt in range(self.attempts):
            try:
                return await self._send_once(invoice, fee_limit_msat)
            except SendRefused:
                if attempt > 0:
                    # An earlier try of this very call may have reached the node after all.
                    sent = await self._sent_attempt(payment_hash, seen)
                    if sent is not None:
                        return sent
                raise
            except _Transient as err:
                last = str(err)
            # Ambiguous: did the node get it? Ask; an error after the node acted is not a failure.
            sent = await self._sent_attempt(payment_hash, seen)
            if sent is not None:
                return sent
            await asyncio.sleep(self.retry_pause_s * (attempt + 1))
        raise NodeUnavailable(
            f"send {payment_hash}: unresolved after {self.attempts} tries: {last}"
        )

    async def _sent_attempt(self, payment_hash: str, seen: int) -> int | None:
        """The id of the attempt a send that got no clear answer started, if it did: the hash's
        newest attempt when it is in flight or succeeded and newer than any seen before."""
        truth = await self._lookup_remote(payment_hash)
        live = truth.status in (PaymentStatus.IN_FLIGHT, PaymentStatus.SUCCEEDED)
        if not live or truth.attempt_id is None or truth.attempt_id <= seen:
            return None
        self._follow(payment_hash, None)
        return truth.attempt_id

    async def _send_once(self, invoice: Invoice, fee_limit_msat: int) -> int:
        body = {
            "payment_request": invoice.payment_request,
            "fee_limit_msat": str(fee_limit_msat),
            "timeout_seconds": self.timeout_seconds,
            "no_inflight_updates": False,
        }
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self.request_timeout_s):
                resp = await self.session.post(self.base_url + "/v2/router/send", json=body)
            if resp.status != 200:
                text = await asyncio.wait_for(resp.text(), self.request_timeout_s)
                resp.release()
                status = _loads(text).get("error", {}) if text else {}
                code, message = int(status.get("code", 0) or 0), str(status.get("message", ""))
                if code == 6:  # AlreadyExists: "invoice is already paid" / "in transition"
                    kind = "already_paid" if "already paid" in message else "in_transition"
                    raise SendRefused(kind, message)
                if 400 <= resp.status < 500:
                    raise SendRefused("refused", message or f"HTTP {resp.status}")
                raise _Transient(f"send: HTTP {resp.status}: {message}")
            line = await asyncio.wait_for(resp.content.readline(), self.first_update_timeout_s)
            truth = _truth_of_line(line)
            if truth is None:
                raise _Transient("send: the stream ended before its first update")
            if truth.attempt_id is None:
                raise _Transient("send: the first update carries no payment_index")
            self._remember(truth)
        except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as err:
            if resp is not None:
                resp.close()
            raise _Transient(f"send: {type(err).__name__}: {err}") from None
        except BaseException:
            if resp is not None:
                resp.close()
            raise
        self._follow(invoice.payment_hash, resp)
        return truth.attempt_id

    def _follow(self, payment_hash: str, resp: aiohttp.ClientResponse | None) -> None:
        """Follow the hash's newest attempt to its final state in the background: the send
        stream while it lasts (`resp`), then TrackPaymentV2."""
        old = self._followers.get(payment_hash)
        if self._closed or (old is not None and old.task is not None and not old.task.done()):
            if resp is not None:
                resp.close()
            return
        if len(self._followers) >= FOLLOWERS_MAX:
            self._prune_followers()
        follower = _Follower()
        self._followers[payment_hash] = follower
        follower.task = asyncio.get_running_loop().create_task(
            self._run_follower(payment_hash, resp, follower), name=f"follow-{payment_hash[:8]}"
        )

    def _prune_followers(self) -> None:
        for h in [h for h, f in self._followers.items() if f.done.is_set()]:
            del self._followers[h]

    async def _run_follower(
        self, payment_hash: str, resp: aiohttp.ClientResponse | None, follower: _Follower
    ) -> None:
        deadline = time.monotonic() + self.follow_max_s
        truth: PaymentTruth | None = None
        try:
            if resp is not None:
                with contextlib.suppress(
                    _Transient, aiohttp.ClientError, ConnectionError, TimeoutError, ValueError
                ):
                    truth = await self._read_updates(resp, deadline)
                resp.close()
            while (truth is None or not truth.final) and time.monotonic() < deadline:
                try:
                    truth = await self._track_until_final(payment_hash, deadline)
                except (_Transient, aiohttp.ClientError, ConnectionError, TimeoutError, ValueError):
                    truth = None
                if truth is not None and truth.status is PaymentStatus.UNKNOWN:
                    break  # the node has no payment of that hash: nothing to follow
                if truth is None or not truth.final:
                    await asyncio.sleep(self.retry_pause_s * 4)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following payment %s", payment_hash)
        finally:
            follower.done.set()

    async def _read_updates(
        self, resp: aiohttp.ClientResponse, deadline: float
    ) -> PaymentTruth | None:
        """Updates until a final one or the end of the stream; the last one seen (as kept)."""
        last: PaymentTruth | None = None
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(resp.content.readline(), deadline - time.monotonic())
            if not line:
                break
            truth = _truth_of_line(line)
            if truth is not None:
                last = self._remember(truth)
                if truth.final:
                    return truth
        return last

    async def _track_until_final(self, payment_hash: str, deadline: float) -> PaymentTruth | None:
        url = f"{self.base_url}/v2/router/track/{hash_in_path(payment_hash)}"
        async with asyncio.timeout(max(0.001, deadline - time.monotonic())):
            async with self.session.get(url) as resp:
                if resp.status == 404:
                    return self._remember(PaymentTruth(payment_hash, PaymentStatus.UNKNOWN))
                if resp.status != 200:
                    raise _Transient(f"track: HTTP {resp.status}")
                return await self._read_updates(resp, deadline)

    async def wait(
        self, payment_hash: str, timeout_s: float, attempt_id: int | None = None
    ) -> PaymentTruth:
        deadline = time.monotonic() + max(0.0, timeout_s)
        for round_ in range(WAIT_ROUNDS_MAX):
            settled = self._settled(payment_hash, attempt_id)
            if settled is not None:
                return settled
            found = select(self._known.get(payment_hash), attempt_id)
            if round_ > 0 and (found is None or found.status is not PaymentStatus.IN_FLIGHT):
                break  # what a follower just saw: final, or nothing to follow
            follower = self._followers.get(payment_hash)
            if follower is None or follower.done.is_set():
                self._follow(payment_hash, None)  # a fresh look: a failed hash may have a new one
                follower = self._followers.get(payment_hash)
            remaining = deadline - time.monotonic()
            if follower is None or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(follower.done.wait(), timeout=remaining)
        found = select(self._known.get(payment_hash), attempt_id)
        return found if found is not None else PaymentTruth(payment_hash, PaymentStatus.UNKNOWN)

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> PaymentTruth:
        settled = self._settled(payment_hash, attempt_id)
        if settled is not None:
            return settled
        found = select(await self._lookup_remote(payment_hash), attempt_id)
        return found if found is not None else PaymentTruth(payment_hash, PaymentStatus.UNKNOWN)

    async def _lookup_remote(self, payment_hash: str) -> PaymentTruth:
        """The hash's newest attempt now: TrackPaymentV2's first update (or NotFound)."""

        async def once() -> PaymentTruth:
            url = f"{self.base_url}/v2/router/track/{hash_in_path(payment_hash)}"
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    async with self.session.get(url) as resp:
                        if resp.status == 404:
                            return PaymentTruth(payment_hash, PaymentStatus.UNKNOWN)
                        if resp.status != 200:
                            raise _Transient(f"track: HTTP {resp.status}")
                        truth = _truth_of_line(await resp.content.readline())
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as err:
                raise _Transient(f"track: {type(err).__name__}: {err}") from None
            if truth is None:
                raise _Transient("track: the stream ended before its first update")
            return self._remember(truth)

        return await self._retrying("lookup", once)

    async def lookup_many(self, payment_hashes: list[str]) -> dict[str, PaymentTruth]:
        """Each hash's truth from all payments of the node, page by page (ListPayments), for
        reconciliation."""
        wanted = set(payment_hashes)
        settled = {h: t for h in wanted if (t := self._settled(h, None)) is not None}
        if len(settled) == len(wanted):
            return {h: settled[h] for h in payment_hashes}
        found: dict[str, PaymentTruth] = {}
        offset = 0
        for _ in range(LIST_PAGES_MAX):
            params = {
                "include_incomplete": "true",
                "index_offset": str(offset),
                "max_payments": str(LIST_PAGE_MAX),
            }
            page = await self._retrying(
                "list payments", lambda p=params: self._get_json("/v1/payments", p)
            )
            payments = page.get("payments") or []
            for payment in payments:
                truth = truth_of_json(payment)
                h = truth.payment_hash
                if h in wanted:
                    # Each hash once, as its newest attempt (LND); should a node list older
                    # attempts too, the newest still wins.
                    prev = found.get(h)
                    if prev is None or (truth.attempt_id or 0) >= (prev.attempt_id or 0):
                        found[h] = truth
                        if truth.final:
                            self._remember(truth)
            if len(payments) < LIST_PAGE_MAX:
                break
            offset = int(page.get("last_index_offset") or 0)
        return {h: found.get(h, PaymentTruth(h, PaymentStatus.UNKNOWN)) for h in payment_hashes}


def _loads(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _truth_of_line(line: bytes) -> PaymentTruth | None:
    """One line of a payment stream: `{"result": Payment}`; `{"error": ...}` is a _Transient."""
    if not line.strip():
        return None
    message = json.loads(line)
    if "error" in message and message["error"]:
        raise _Transient(f"stream error: {message['error'].get('message', '')}")
    result = message.get("result")
    return truth_of_json(result) if isinstance(result, dict) else None


# BOLT11's human-readable part: "ln", a network's currency (those the bolt11 package reads:
# the embedded node's decoder agrees), an optional amount; then "1" and the data
BOLT11_HRP = re.compile(r"^ln(bcrt|bc|tbs|tb)(?:\d+[munp]?)?$")


def foreign_currency(payment_request: str) -> str | None:
    """The currency of an invoice of another network than ours, read from its prefix (the
    remote node's own refusal of it is only an error message); None: ours, or not BOLT11."""
    hrp = payment_request[: payment_request.rfind("1")]
    match = BOLT11_HRP.match(hrp)
    if match is None or match.group(1) == CURRENCY:
        return None
    return match.group(1)


def add_remote_network_routes(
    app: aiohttp.web.Application, node_url: str, *, timeout_s: float = 5.0
) -> None:
    """With `--node-url`, the target's network routes (`POST /node/invoices`,
    `POST /node/payments/lookup`, `GET /node/payments/{hash}`) are answered by that node, so
    invoices the wallet pays and the truth a checker reads come from the network the wallet
    really uses."""
    base_url = node_url.rstrip("/")

    async def pass_on(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        if ADMIN_HEADER in request.headers:  # the node's faults are behind its own token
            headers[ADMIN_HEADER] = request.headers[ADMIN_HEADER]
        try:
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as session:
                async with session.request(
                    request.method, base_url + request.path_qs, data=body, headers=headers
                ) as resp:
                    payload = await resp.read()
                    content_type = resp.headers.get("Content-Type", "application/json")
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            answer = {"error": "node_unavailable", "message": f"{base_url}: {err}"}
            return aiohttp.web.json_response(answer, status=502)
        return aiohttp.web.Response(
            body=payload, status=status, headers={"Content-Type": content_type}
        )

    # the faults that matter are the network's: the suite reads and sets them through the target
    for method, path in (*NETWORK_ROUTES, *FAULT_ROUTES):
        add_route(app, method, path, pass_on)
