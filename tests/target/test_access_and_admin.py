"""Who may do what (wallet keys, the admin token), the admin switches at run time, /metrics and
/openapi.json."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from target_harness import ADMIN_TOKEN, Api, assert_clean, eventually, fast_config, in_process, run

AMOUNT_MSAT = 20_000
FUNDS_MSAT = 1_000_000


def test_one_wallets_key_never_reaches_another_wallet(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            alice = await api.new_wallet(FUNDS_MSAT)
            mallory = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            paid = await api.pay(alice, invoice["payment_request"])
            assert paid.status == 200, paid
            payout_id = paid.body["payout_id"]
            alice_view = await api.wallet(alice)
            before = await api.conservation()

            # Reading Alice's wallet: only with Alice's key.
            for key in (mallory.api_key, "", "x" * 32, alice.api_key + "x", alice.api_key.upper()):
                reply = await api.call(
                    "GET", f"/api/wallets/{alice.wallet_id}", headers={"X-Api-Key": key}
                )
                assert reply.status == 401 and reply.error == "unauthorized", (key, reply)
                assert "balance_msat" not in reply.text
            reply = await api.call("GET", f"/api/wallets/{alice.wallet_id}")
            assert reply.status == 401 and reply.error == "unauthorized"

            # Alice's payout looks like a missing one to anyone else.
            missing = await api.call(
                "GET", f"/api/payouts/{'f' * 32}", headers={"X-Api-Key": mallory.api_key}
            )
            assert missing.status == 404
            reply = await api.call(
                "GET", f"/api/payouts/{payout_id}", headers={"X-Api-Key": mallory.api_key}
            )
            assert (reply.status, reply.body) == (missing.status, missing.body)
            # No key at all: 401 before any lookup, the same for her payout and a missing one.
            for headers in ({}, {"X-Admin-Token": ADMIN_TOKEN}):
                for some_id in (payout_id, "f" * 32):
                    reply = await api.call("GET", f"/api/payouts/{some_id}", headers=headers)
                    assert (reply.status, reply.error) == (401, "unauthorized"), headers
            assert (await api.payout(payout_id, alice))["status"] == "succeeded"

            # Paying from Alice's wallet with Mallory's key: refused, nothing sent or moved.
            other = await api.invoice(AMOUNT_MSAT)
            reply = await api.call(
                "POST",
                f"/api/wallets/{alice.wallet_id}/payouts",
                json_body={"payment_request": other["payment_request"]},
                headers={"X-Api-Key": mallory.api_key, "Idempotency-Key": "steal"},
            )
            assert reply.status == 401 and reply.error == "unauthorized", reply
            assert (await api.node_payment(other["payment_hash"]))["status"] == "unknown"
            assert await api.wallet(alice) == alice_view
            assert (await api.wallet(mallory))["balance_msat"] == FUNDS_MSAT
            assert await api.conservation() == before

            # Mallory's own Idempotency-Key space is apart from Alice's.
            reply = await api.pay(mallory, other["payment_request"], idempotency_key="steal")
            assert reply.status == 200, reply
            assert (await api.wallet(mallory))["balance_msat"] < FUNDS_MSAT
            assert await api.wallet(alice) == alice_view

    run(scenario())


def router_routes(api: Api) -> list[tuple[str, str]]:
    """(method, path) of every route the app's router has (HEAD twins of GETs and the catch-all
    that answers JSON 404s and 405s left out)."""
    assert api.app is not None
    return sorted(
        (route.method, route.resource.canonical)
        for route in api.app.router.routes()
        if route.method not in ("HEAD", "*") and route.resource is not None
    )


def admin_routes(api: Api) -> list[tuple[str, str]]:
    return [(m, p) for m, p in router_routes(api) if p.startswith("/admin/")]


# Bodies that change nothing, for the admin routes that take one.
HARMLESS_BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/admin/faults"): {"failure_rate": 0.0},
    ("PUT", "/admin/fix"): {"mode": "on"},
}


def test_admin_routes_need_the_admin_token(tmp_path):
    """Every /admin/ route of the router (whoever added it): 401 without the right token."""

    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            routes = admin_routes(api)
            assert len(routes) >= 5, routes
            wrong_tokens: list[dict[str, str]] = [
                {},
                {"X-Admin-Token": ""},
                {"X-Admin-Token": ADMIN_TOKEN + "x"},
                {"X-Admin-Token": ADMIN_TOKEN.upper()},
                {"X-Admin-Token": wallet.api_key},
                {"X-Api-Key": wallet.api_key},
                {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ]
            for method, path in routes:
                body = HARMLESS_BODIES.get((method, path))
                for headers in wrong_tokens:
                    reply = await api.call(method, path, json_body=body, headers=headers)
                    assert reply.status == 401 and reply.error == "unauthorized", (path, reply)
                reply = await api.call(
                    method, path, json_body=body, headers={"X-Admin-Token": ADMIN_TOKEN}
                )
                if method == "GET" or body is not None:
                    assert reply.status == 200, (path, reply)
                else:  # no harmless body known: past the token check is all we ask
                    assert reply.status not in (401, 403), (path, reply)
            # A refused PUT changed nothing.
            assert (await api.admin("GET", "/admin/fix")).body == {"mode": "on"}

    run(scenario())


def test_without_an_admin_token_the_admin_routes_stay_closed(tmp_path):
    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix="on")
        config.admin_token = ""
        async with in_process(config, check_conserved=False) as api:
            for headers in ({}, {"X-Admin-Token": ""}):
                reply = await api.call("GET", "/admin/reconciliation", headers=headers)
                assert reply.status == 401, reply
                reply = await api.call(
                    "PUT", "/admin/fix", json_body={"mode": "off"}, headers=headers
                )
                assert reply.status == 401, reply
            assert (await api.call("GET", "/health")).body["fix"] == "on"

    run(scenario())


def test_fix_mode_switches_at_run_time(tmp_path):
    """PUT /admin/fix changes how the next payouts run; a payout keeps the mode it started
    under (a pending saga payout is still resolved after a switch to off)."""

    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix="on", timeout_rate=1.0)
        async with in_process(config) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            held_msat = AMOUNT_MSAT + config.wallet.fee_reserve_msat(AMOUNT_MSAT)

            saga = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
            assert saga.status == 202, saga

            reply = await api.admin("PUT", "/admin/fix", {"mode": "off"})
            assert reply.status == 200 and reply.body == {"mode": "off"}
            assert (await api.admin("GET", "/admin/fix")).body == {"mode": "off"}
            assert (await api.call("GET", "/health")).body == {"status": "ok", "fix": "off"}
            incident = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
            assert incident.status == 504 and incident.error == "payment_timeout", incident

            assert (await api.admin("PUT", "/admin/fix", {"mode": "rollback"})).status == 200
            refunded = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
            assert refunded.status == 504, refunded

            # The saga payout, started under on, is still resolved (late fail: cancelled).
            async def saga_final() -> dict[str, Any] | None:
                payout = await api.payout(saga.body["payout_id"], wallet)
                return payout if payout["status"] != "pending" else None

            final = await eventually(saga_final, timeout_s=5.0, what="the saga payout")
            assert final["status"] == "failed"
            view = await api.wallet(wallet)
            # Only the payout made under off still holds its charge (amount + fee reserve).
            assert view == {
                "wallet_id": wallet.wallet_id,
                "balance_msat": FUNDS_MSAT - held_msat,
                "reserved_msat": 0,
            }
            rec = await api.settled_reconciliation()
            assert rec["charged_not_paid"]["count"] == 1
            assert rec["charged_not_paid"]["payout_ids"] == [incident.body["payout_id"]]
            assert rec["paid_not_charged"]["count"] == 0

    run(scenario())


def test_faults_switch_at_run_time(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            initial = (await api.admin("GET", "/admin/faults")).body
            assert initial["failure_rate"] == 0.0 and initial["timeout_rate"] == 0.0

            reply = await api.admin("PUT", "/admin/faults", {"failure_rate": 1.0})
            assert reply.status == 200
            assert reply.body == {**initial, "failure_rate": 1.0}, "only the given key changes"
            assert (await api.admin("GET", "/admin/faults")).body == reply.body
            failed = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
            assert failed.status == 502 and failed.error == "payment_failed", failed

            reply = await api.admin(
                "PUT",
                "/admin/faults",
                {"failure_rate": 0.0, "timeout_rate": 1.0, "late_settle_rate": 1.0},
            )
            assert reply.status == 200
            pending = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
            assert pending.status == 202, pending

            bad = await api.admin("PUT", "/admin/faults", {"timeout_rate": 1.5, "fee_ppm": 5})
            assert bad.status == 400 and bad.error == "invalid_fault", bad
            assert (await api.admin("GET", "/admin/faults")).body == reply.body, "all or nothing"

            assert (await api.admin("PUT", "/admin/faults", initial)).body == initial
            ok = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
            assert ok.status == 200, ok
            assert_clean(await api.settled_reconciliation())

    run(scenario())


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_the_payouts(tmp_path):
    async def scenario() -> None:
        # The timed-out payout stays in flight long enough to be seen pending in the gauge.
        config = fast_config(tmp_path / "w.sqlite", fix="on", inflight_hold_ms=2000.0)
        async with in_process(config) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            plan = [({}, 200)] * 3 + [({"failure_rate": 1.0}, 502)] * 2
            plan += [({"timeout_rate": 1.0, "late_settle_rate": 1.0}, 202)]
            for faults, status in plan:
                assert (await api.admin("PUT", "/admin/faults", faults)).status == 200
                reply = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
                assert reply.status == status, reply
                await api.admin("PUT", "/admin/faults", {"timeout_rate": 0.0, "failure_rate": 0.0})
            poor = await api.new_wallet(1000)
            refused = await api.pay(poor, (await api.invoice(AMOUNT_MSAT))["payment_request"])
            assert refused.status == 409

            metrics = await api.call("GET", "/metrics")
            assert metrics.status == 200 and metrics.content_type.startswith("text/plain")
            samples = metric_samples(metrics.text)
            answers = "lnchaos_payout_answers_total"
            assert samples[(answers, (("status", "200"),))] == 3
            assert samples[(answers, (("status", "502"),))] == 2
            assert samples[(answers, (("status", "202"),))] == 1
            assert samples[(answers, (("status", "409"),))] == 1
            assert samples[("lnchaos_node_timeouts_total", ())] == 1
            assert samples[("lnchaos_payouts_pending", ())] == 1
            finished = "lnchaos_payouts_total"
            assert samples[(finished, (("outcome", "succeeded"),))] == 3
            assert samples[(finished, (("outcome", "failed"),))] == 2

            await api.settled_reconciliation()  # the late settlement is confirmed
            samples = metric_samples((await api.call("GET", "/metrics")).text)
            assert samples[(finished, (("outcome", "succeeded"),))] == 4
            assert samples[("lnchaos_payouts_pending", ())] == 0
            assert samples[("lnchaos_conserved", ())] == 1
            for kind in ("charged_not_paid", "paid_not_charged", "stuck_pending"):
                assert samples[("lnchaos_inconsistencies", (("kind", kind),))] == 0

    run(scenario())


def test_openapi_lists_every_route_of_the_router(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite")) as api:
            reply = await api.call("GET", "/openapi.json")
            assert reply.status == 200
            document = reply.body
            listed = sorted(
                (method.upper(), path)
                for path, operations in document["paths"].items()
                for method in operations
            )
            assert listed == router_routes(api)
            for path, operations in document["paths"].items():
                for method, operation in operations.items():
                    assert operation.get("responses"), f"{method} {path} documents no response"

    run(scenario())


@pytest.mark.parametrize("path", ["/health", "/metrics", "/openapi.json"])
def test_public_routes_answer_without_credentials(tmp_path, path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite")) as api:
            assert (await api.call("GET", path)).status == 200

    run(scenario())
