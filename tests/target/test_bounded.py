"""`bounded(call, timeout_s)` keeps `asyncio.timeout`'s semantics with a bare timer: the result in
time, TimeoutError when late (the call cancelled), a cancel from elsewhere left a cancel, and no
cancel left behind to hit the task later."""

from __future__ import annotations

import asyncio

import pytest

from target.common.bounded import bounded

SHORT_S = 0.05  # a bound that must fire
LONG_S = 5.0  # a bound that must not


async def _value(value: int) -> int:
    await asyncio.sleep(0)
    return value


def test_the_result_in_time() -> None:
    async def main() -> int:
        return await bounded(_value(7), LONG_S)

    assert asyncio.run(main()) == 7


def test_late_is_a_timeout_and_the_call_is_cancelled() -> None:
    seen: list[str] = []

    async def never() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> int:
        with pytest.raises(TimeoutError):
            await bounded(never(), SHORT_S)
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(main()) == 0  # the bound's cancel request was taken back
    assert seen == ["cancelled"]


def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def bounded_wait() -> None:
            started.set()
            await bounded(asyncio.Event().wait(), LONG_S)

        task = asyncio.create_task(bounded_wait())
        await asyncio.wait_for(started.wait(), LONG_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_cancel_from_elsewhere_wins_over_a_bound_that_fired_too() -> None:
    """Both cancel the task before it runs again (a cancel queued just before a bound of 0 s:
    asyncio's loop runs both in its next turn): CancelledError, as under asyncio.timeout."""

    async def bounded_wait() -> None:
        me = asyncio.current_task()
        assert me is not None
        asyncio.get_running_loop().call_soon(me.cancel)
        await bounded(asyncio.Event().wait(), 0)

    async def main() -> None:
        task = asyncio.create_task(bounded_wait())
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_no_cancel_is_left_for_later() -> None:
    """The timer of a bound that ended in time never fires: the task runs on past it."""

    async def main() -> str:
        await bounded(_value(1), SHORT_S)
        await asyncio.sleep(SHORT_S * 4)  # past the bound's deadline: nothing may cancel this
        return "ran on"

    assert asyncio.run(main()) == "ran on"


def test_a_call_that_swallows_the_cancel_returns_and_leaves_no_cancel_pending() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"

    async def main() -> tuple[str, int]:
        result = await bounded(stubborn(), SHORT_S)
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    assert asyncio.run(main()) == ("finished anyway", 0)


def test_an_inner_bound_firing_leaves_the_outer_one_alone() -> None:
    async def inner() -> str:
        try:
            await bounded(asyncio.Event().wait(), SHORT_S)
        except TimeoutError:
            return "inner timed out"
        return "never"

    async def main() -> str:
        return await bounded(inner(), LONG_S)

    assert asyncio.run(main()) == "inner timed out"
