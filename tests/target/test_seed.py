"""PUT /admin/seed: a running target's fault draws follow a new seed (the web UI's start form
reaches the target at each run's start), the same seed replays the same draws, bad input moves
nothing."""

from __future__ import annotations

from target_harness import Api, fast_config, in_process, run

AMOUNT_MSAT = 20_000
FUNDS_MSAT = 2_000_000
DRAWS = 12


async def outcomes(api: Api, seed: int) -> list[int]:
    """The answers of DRAWS payouts, one after another, right after seeding."""
    assert (await api.admin("PUT", "/admin/seed", {"seed": seed})).body == {"seed": seed}
    wallet = await api.new_wallet(FUNDS_MSAT)
    answers = []
    for _ in range(DRAWS):
        paid = await api.pay(wallet, (await api.invoice(AMOUNT_MSAT))["payment_request"])
        answers.append(paid.status)
    return answers


def test_the_same_seed_replays_the_same_fault_draws(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", failure_rate=0.5)) as api:
            first = await outcomes(api, 5)
            assert set(first) == {200, 502}, first  # both outcomes drawn: the draw matters
            assert await outcomes(api, 5) == first
            for bad in ({"seed": -1}, {"seed": "5"}, {"seed": 1.5}, {"seed": True}, {}):
                reply = await api.admin("PUT", "/admin/seed", bad)
                assert reply.status == 400 and reply.error, (bad, reply)
            # refused seeds took no effect: seeding anew still replays the same draws
            assert await outcomes(api, 5) == first

    run(scenario())
