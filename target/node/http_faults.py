"""HTTP-level faults of the node's LND REST routes, drawn per request from their own seeded source.

Each request draws, in this order: latency (`http_latency_rate`: wait `http_latency_ms`), then at
most one of error / reset / stall (`http_error_rate`, `http_reset_rate`, `http_stall_rate`), then
whether the fault strikes before the node acts or after it (`http_fault_after_rate`):

- before: the node does nothing (no invoice added, nothing paid);
- after: the node acts (the payment goes out), but the caller sees only the fault.

The faults:
- error: a 503 with an LND-shaped body `{"code": 14, "message": ..., "details": []}`;
- reset: the TCP connection is reset (RST), no response;
- stall: the response hangs for `http_stall_ms`, then the connection closes without completing
  it (a stream sends its 200 header, and after the node acted its first update, then nothing).

An after-fault hides the answer, never the effect: that is the case a careless wallet gets wrong
(it refunds a payment that was made).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web

from .faults import FaultSettings
from .lnd_json import Code, LndError


class FaultKind(StrEnum):
    NONE = "none"
    ERROR = "error"
    RESET = "reset"
    STALL = "stall"


@dataclass(frozen=True)
class HttpFault:
    kind: FaultKind
    after: bool  # strikes after the node acted
    latency_ms: float  # extra wait (0: none), before or after the node acts as `after` says
    stall_ms: float


# The payment hashes one request started attempts for (set by each LND route's handler, appended
# by the send): a fault after the node acted hides the answer of those acts, and the node records
# them (LightningNode.note_answer_lost) for the judge's coverage of "the node acted, the caller
# was not told" (lnchaos/checker/coverage.py), counted by the node, never by the wallet's word.
ACTED: ContextVar[list[str] | None] = ContextVar("lnchaos_acted_hashes", default=None)


def acting() -> None:
    """A request starts: nothing acted on yet (each request runs in a task of its own)."""
    ACTED.set([])


def acted(payment_hash: str) -> None:
    """The node started an attempt of `payment_hash` for the current request."""
    hashes = ACTED.get()
    if hashes is not None:
        hashes.append(payment_hash)


def hide_after(node: Any, fault: HttpFault) -> None:
    """A fault struck after the node acted: the acts of this request went unanswered."""
    if fault.after and fault.kind is not FaultKind.NONE:
        for payment_hash in ACTED.get() or ():
            node.note_answer_lost(payment_hash)


INJECTED = LndError(Code.UNAVAILABLE, 'connection error: desc = "transport is closing"')


class HttpFaults:
    """The seeded draw of HTTP faults, and counts of what was drawn (for tests and metrics)."""

    def __init__(self, seed: int):
        self._rng = random.Random(f"http-faults:{seed}")
        self.counts: Counter[str] = Counter()

    def draw(self, f: FaultSettings) -> HttpFault:
        rng = self._rng
        latency_ms = f.http_latency_ms if rng.random() < f.http_latency_rate else 0.0
        u = rng.random()
        if u < f.http_error_rate:
            kind = FaultKind.ERROR
        elif u < f.http_error_rate + f.http_reset_rate:
            kind = FaultKind.RESET
        elif u < f.http_error_rate + f.http_reset_rate + f.http_stall_rate:
            kind = FaultKind.STALL
        else:
            kind = FaultKind.NONE
        after = rng.random() < f.http_fault_after_rate
        self.counts["requests"] += 1
        if latency_ms:
            self.counts["latency"] += 1
        if kind is not FaultKind.NONE:
            self.counts[f"{kind}_{'after' if after else 'before'}"] += 1
        return HttpFault(kind, after, latency_ms, f.http_stall_ms)


def reset_connection(request: web.BaseRequest) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed proxy would."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def close_connection(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()


def error_response(err: LndError) -> web.Response:
    return web.json_response(err.status(), status=err.http_status)


async def strike_unary(request: web.Request, fault: HttpFault) -> web.StreamResponse:
    """The answer a faulted unary request gets instead of its own."""
    if fault.kind is FaultKind.ERROR:
        return error_response(INJECTED)
    if fault.kind is FaultKind.RESET:
        reset_connection(request)
        return web.Response(status=500)  # never reaches the caller
    assert fault.kind is FaultKind.STALL
    await asyncio.sleep(fault.stall_ms / 1000)
    close_connection(request)
    return web.Response(status=500)  # never reaches the caller
