"""`--lnd-version`: each release's surface as LND shipped it (target/node/lnd_versions.py)."""

from __future__ import annotations

from pathlib import Path

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
