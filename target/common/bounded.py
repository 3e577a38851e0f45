"""`await bounded(call, timeout_s)`: `asyncio.timeout` for one await, with a bare timer of the loop.

A payout makes three bounded node calls and the node's wait a fourth. `asyncio.timeout` is a
context manager in pure Python (its object, two coroutines to enter and leave, a reschedule) around
a timer of the loop; these bounds cost about 43,000 instructions per payout flow, 1.7 % of the
target's (lnchaos bench --instructions, knocked out). Here the bound is the timer alone, with the
same semantics: when it fires the task is cancelled and the await raises TimeoutError, unless the
task was also cancelled from elsewhere, in which case CancelledError goes on (the count of
cancel requests tells them apart, as `asyncio.timeout` does); the timer is always cancelled when
the await ends, so no cancel can reach the task later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def _expire(task: asyncio.Task[object], fired: list[bool]) -> None:
    fired.append(True)
    task.cancel()


async def bounded(call: Awaitable[T], timeout_s: float) -> T:
    """`await call`, or TimeoutError once `timeout_s` have passed (then `call` is cancelled)."""
    task = asyncio.current_task()
    assert task is not None, "a bounded await runs in a task"
    cancelling = task.cancelling()
    fired: list[bool] = []
    timer = asyncio.get_running_loop().call_later(timeout_s, _expire, task, fired)
    try:
        result = await call
    except BaseException as err:
        timer.cancel()
        if fired:  # our cancel is spent: take it back, and it was a timeout if it was the only one
            if task.uncancel() <= cancelling and isinstance(err, asyncio.CancelledError):
                raise TimeoutError from err
        raise
    timer.cancel()
    if fired:  # fired as the call finished: the call won, our cancel request is taken back
        task.uncancel()
    return result
