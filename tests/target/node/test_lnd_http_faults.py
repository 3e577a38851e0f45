"""HTTP faults of the LND REST routes: their rates (fixed seed, binomial bounds), what "before" and
"after" the node acts mean for a payment, and that they touch only the LND routes."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import aiohttp
from lnd_harness import Node, eventually, node_app, run

N_REQUESTS = 400
LATENCY_MS = 120.0
STALL_MS = 60.0


async def raw_get(port: int, path: str) -> tuple[str, float, bytes]:
    """One GET over a fresh socket, no client retries: (outcome, elapsed_ms, body)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nGrpc-Metadata-macaroon: 00\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    try:
        data = await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return "reset", (time.monotonic() - started) * 1000, b""
    finally:
        writer.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    if not data:
        return "stall", elapsed_ms, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return ("ok" if status == 200 else f"http_{status}"), elapsed_ms, body


def within(observed: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_http_faults_happen_at_their_configured_rates(tmp_path: Path) -> None:
    rates = {"latency": 0.25, "error": 0.1, "reset": 0.1, "stall": 0.1}

    async def scenario() -> dict[str, int]:
        async with node_app(
            tmp=tmp_path,
            seed=2024,
            http_latency_rate=rates["latency"],
            http_latency_ms=LATENCY_MS,
            http_error_rate=rates["error"],
            http_reset_rate=rates["reset"],
            http_stall_rate=rates["stall"],
            http_stall_ms=STALL_MS,
            http_fault_after_rate=0.5,
        ) as node:
            port = int(node.url.rsplit(":", 1)[1])
            gate = asyncio.Semaphore(16)

            async def one() -> tuple[str, float, bytes]:
                async with gate:
                    return await raw_get(port, "/v1/getinfo")

            results = await asyncio.gather(*(one() for _ in range(N_REQUESTS)))
            counts = node_counts(node)
        observed = {"ok": 0, "error": 0, "reset": 0, "stall": 0, "latency_ok": 0}
        for outcome, elapsed_ms, body in results:
            if outcome == "http_503":
                status = json.loads(body)
                assert status["code"] == 14 and status["details"] == [], status
                observed["error"] += 1
            elif outcome in ("reset", "stall", "ok"):
                observed[outcome] += 1
                if outcome == "stall":
                    assert elapsed_ms >= STALL_MS * 0.9
            else:
                raise AssertionError(f"unexpected outcome {outcome}")
            if outcome == "ok" and elapsed_ms >= LATENCY_MS * 0.9:
                observed["latency_ok"] += 1
        # the caller saw exactly what the node drew
        assert counts["requests"] == N_REQUESTS
        for kind in ("error", "reset", "stall"):
            assert observed[kind] == counts[f"{kind}_before"] + counts[f"{kind}_after"], kind
        for kind in ("error", "reset", "stall"):
            assert within(observed[kind], N_REQUESTS, rates[kind]), (kind, observed)
        assert within(counts["latency"], N_REQUESTS, rates["latency"]), counts
        assert within(observed["latency_ok"], observed["ok"], rates["latency"]), observed
        faulted = sum(
            counts[f"{k}_{w}"] for k in ("error", "reset", "stall") for w in ("before", "after")
        )
        after = sum(counts[f"{k}_after"] for k in ("error", "reset", "stall"))
        assert within(after, faulted, 0.5), counts
        return observed

    first = run(scenario(), timeout_s=60)
    print("observed", first)


def node_counts(node: Node) -> dict[str, int]:
    return dict(node.service.http_faults.counts)


async def send_raw(node: Node, payment_request: str) -> str:
    """One SendPaymentV2 call read to its end: what the caller saw."""
    body = {"payment_request": payment_request, "fee_limit_msat": "10000"}
    try:
        async with node.http.post(
            node.url + "/v2/router/send",
            json=body,
            headers=node.headers(),
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp:
            if resp.status != 200:
                return f"http_{resp.status}"
            lines = [json.loads(raw) for raw in (await resp.read()).splitlines() if raw]
            return lines[-1]["result"]["status"] if lines else "empty"
    except (aiohttp.ClientError, ConnectionError) as err:
        return type(err).__name__


def test_faults_before_pay_nothing_and_after_pay_but_hide_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        for kind in ("error", "reset", "stall"):
            for after in (False, True):
                async with node_app(
                    tmp=tmp_path / f"{kind}-{after}",
                    http_stall_ms=50.0,
                    http_fault_after_rate=1.0 if after else 0.0,
                    **{f"http_{kind}_rate": 1.0},
                ) as node:
                    merchant = await node.merchant_invoice(20_000)
                    seen = await send_raw(node, merchant["payment_request"])
                    assert seen not in ("SUCCEEDED", "FAILED"), (kind, after, seen)
                    if kind == "error":
                        assert seen == "http_503"
                    payment = await node.node.lookup(merchant["payment_hash"])
                    # the node's own record, the judge's coverage of "acted, not told"
                    lost = node.node.answer_lost(merchant["payment_hash"])
                    assert lost is after, (kind, after, "the node records a hidden answer")
                    if not after:
                        assert payment is None, (kind, "before: nothing may be paid")
                        continue
                    assert payment is not None, (kind, "after: the payment went out")

                    async def settled(h: str = merchant["payment_hash"]) -> bool | None:
                        found = await node.node.lookup(h)
                        return True if found and found.status == "succeeded" else None

                    await eventually(settled, 5, "the hidden payment to settle")

    run(scenario(), timeout_s=60)


def test_http_faults_touch_only_the_lnd_routes_and_follow_put_faults(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, http_error_rate=1.0, http_fault_after_rate=0.0) as node:
            status, _ = await node.get("/v1/getinfo")
            assert status == 503
            await node.merchant_invoice(1000)  # /node/* unaffected
            status, _ = await node.admin("GET", "/admin/network/truth")
            assert status == 200
            status, faults = await node.admin("PUT", "/admin/faults", {"http_error_rate": 0.0})
            assert status == 200 and faults["http_error_rate"] == 0.0
            assert {"http_latency_ms", "http_stall_ms", "http_fault_after_rate"} <= set(faults)
            status, _ = await node.get("/v1/getinfo")
            assert status == 200
            status, body = await node.admin(
                "PUT", "/admin/faults", {"http_error_rate": 0.6, "http_reset_rate": 0.6}
            )
            assert status == 400 and body["error"] == "invalid_fault"

    run(scenario())


def test_an_answer_seen_is_not_recorded_lost_and_the_record_is_bounded(tmp_path: Path) -> None:
    """No fault: the caller saw the answer, so nothing is recorded lost; the record keeps the
    newest ANSWERS_LOST_MAX hashes."""
    from target.node import network
    from target.node.network_http import truth_json

    async def scenario() -> None:
        async with node_app(tmp=tmp_path / "clean") as node:
            merchant = await node.merchant_invoice(20_000)
            assert await send_raw(node, merchant["payment_request"]) in ("SUCCEEDED", "FAILED")
            assert not node.node.answer_lost(merchant["payment_hash"])
            bound = network.ANSWERS_LOST_MAX
            for i in range(bound + 10):
                node.node.note_answer_lost(f"{i:064x}")
            assert not node.node.answer_lost(f"{0:064x}")  # the oldest went
            assert node.node.answer_lost(f"{bound + 9:064x}")
            assert truth_json(f"{bound + 9:064x}", None, 0, True)["answer_lost"] is True

    run(scenario(), timeout_s=60)
