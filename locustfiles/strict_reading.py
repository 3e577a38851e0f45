"""Strict reading, Locust's side: an answer read against the shape its API promises
(lnchaos/checker/answers.py, the one home of the reading rules); one that breaks a promise is
recorded in the history as an `answer_shape` check (judged again by `lnchaos check` from the
answer it carries) and listed in Locust's Failures as `malformed_answer`.

Only answers that break a promise are recorded (a kept promise costs one dict walk and no
line: the bench's checks cost stays what it was); with --checks off nothing is read.
"""

from __future__ import annotations

import time
from typing import Any

from lnchaos.checker import answers
from lnchaos.checker.kinds import ANSWER_SHAPE, MALFORMED_ANSWER
from locustfiles import checker, recording
from locustfiles.telemetry import LOCAL


def read(shape: str, answer: Any, request: str, **ids: Any) -> bool:
    """True when `answer` keeps every promise of `shape`; else the finding is recorded (ids:
    wallet, hash, payout_id, http: what the example names) and False."""
    if not recording.DETAIL["on"]:
        return True
    found = answers.problems(shape, answer)
    if not found:
        return True
    started = time.perf_counter()
    LOCAL.history.emit(answers.malformed_record(shape, answer, request, **ids))
    message = f"{MALFORMED_ANSWER}: {request}: {'; '.join(found)}"
    checker.fire_check(None, ANSWER_SHAPE, checker.CheckFailed(message), started)
    return False
