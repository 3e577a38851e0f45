"""The soak's sampler (lnchaos/soak.py) counts each process's memory once: a child between fork
and exec is a copy of its parent and is not counted (the hour's soak broke its memory bound on
one sample that summed Locust with such a copy of itself, taken while a target restarted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from lnchaos.soak import is_unexecuted_fork, role_of

WAIT_S = 5.0


def test_a_fork_before_its_exec_is_not_counted_and_an_execed_child_is():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never execs; waits for its parent to close the pipe, bounded
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    execed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert is_unexecuted_fork(psutil.Process(pid))
        deadline = time.monotonic() + WAIT_S  # until the interpreter has exec'd (bounded)
        while time.monotonic() < deadline and psutil.Process(execed.pid).cmdline()[:1] == []:
            time.sleep(0.01)
        assert not is_unexecuted_fork(psutil.Process(execed.pid))
        assert not is_unexecuted_fork(psutil.Process(os.getpid()))  # pytest's own parent differs
        assert role_of(psutil.Process(execed.pid)) == "locust"  # neither target nor worker
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)
        execed.send_signal(signal.SIGKILL)
        execed.wait(timeout=WAIT_S)
