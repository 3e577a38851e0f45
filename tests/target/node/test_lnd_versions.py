"""`--lnd-version`: each release's surface as LND shipped it (target/node/lnd_versions.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from lnd_harness import node_app, run

from target.node.lnd_versions import NEWEST, VERSIONS


def test_send_payment_sync_is_gone_in_0_21_and_pays_in_0_20(tmp_path: Path) -> None:
    async def scenario() -> None:
        answers = {}
        for version in ("0.20", "0.21"):
            async with node_app(tmp=tmp_path / version, lnd_version=version) as node:
                merchant = await node.merchant_invoice(10_000)
                body = {"payment_request": merchant["payment_request"]}
                answers[version] = await node.post("/v1/channels/transactions", body)
                truth = await node.node.lookup(merchant["payment_hash"])
                answers[version] += (truth.status.value if truth else None,)
                _, info = await node.get("/v1/getinfo")
                assert info["version"].startswith(VERSIONS[version].release)
        status, paid, truth = answers["0.20"]
        assert (status, paid["payment_error"], truth) == (200, "", "succeeded")
        # 0.21: grpc-gateway no longer knows the path; nothing was paid
        assert answers["0.21"] == (404, {"code": 5, "message": "Not Found", "details": []}, None)

    run(scenario())


def test_default_is_the_newest_release_without_send_payment_sync() -> None:
    assert NEWEST == max(VERSIONS, key=lambda name: tuple(map(int, name.split("."))))
    assert not VERSIONS[NEWEST].send_payment_sync
    assert all(VERSIONS[name].send_payment_sync for name in ("0.17", "0.18", "0.19", "0.20"))


def test_status_initiated_reports_initiated_before_the_first_htlc(tmp_path: Path) -> None:
    """routerrpc.usestatusinitiated (0.18 and later): SendPaymentV2's first update is INITIATED
    with no HTLC, then IN_FLIGHT with it, then the end. Without it, IN_FLIGHT first."""

    async def scenario() -> None:
        seen = {}
        for flag in (True, False):
            async with node_app(
                tmp=tmp_path / str(flag), lnd_status_initiated=flag, latency_ms_median=50.0
            ) as node:
                merchant = await node.merchant_invoice(10_000)
                body = {"payment_request": merchant["payment_request"], "fee_limit_msat": "9000"}
                status, lines, ended = await node.stream("POST", "/v2/router/send", body)
                assert status == 200 and ended
                seen[flag] = [(u["result"]["status"], len(u["result"]["htlcs"])) for u in lines]
        assert seen[True] == [("INITIATED", 0), ("IN_FLIGHT", 1), ("SUCCEEDED", 1)]
        assert seen[False] == [("IN_FLIGHT", 1), ("SUCCEEDED", 1)]

    run(scenario())


def test_status_initiated_needs_a_release_that_has_it() -> None:
    from target.node.node_app import add_node_options, config_from

    parser = argparse.ArgumentParser()
    add_node_options(parser)
    args = parser.parse_args(["--lnd-status-initiated", "--lnd-version", "0.17"])
    with pytest.raises(SystemExit, match="0.18 or later"):
        config_from(args)
    args = parser.parse_args(["--lnd-status-initiated", "--lnd-version", "0.18"])
    assert config_from(args).lnd_status_initiated
