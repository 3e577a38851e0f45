"""target/common/child.py: a child server is found by its `listening on` line, stopped with
nothing left (a grandchild in its own session included), a child that dies or hangs at start
gives a clear error with its log's tail, and one that ignores SIGTERM is killed within the bound.
Also from a gevent-patched process (as under Locust) and with die-with-parent."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from target.common.child import ChildError, ChildProcess, ChildServer

REPO = Path(__file__).resolve().parents[2]

# A tiny server: argv[1] is its behaviour. It binds 127.0.0.1:0, may start a grandchild (in its
# own session or in the group) and prints the grandchild's pid, then its `listening on` line.
TINY_SERVER = r"""
import http.server, os, signal, subprocess, sys, time

mode = sys.argv[1]
if mode == "exit-early":
    print("boom: no config here", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "never-listens":
    print("starting, slowly", flush=True)
    time.sleep(60)
    sys.exit(0)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
health = 503 if mode == "unhealthy" else 200


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(health if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
for own_session in (True, False):
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=own_session
    )
    print(f"grandchild {sleeper.pid}", flush=True)
print(f"tiny listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_server.py"
    path.write_text(TINY_SERVER)
    return path


def grandchildren(child: ChildProcess) -> list[psutil.Process]:
    pids = [int(line.split()[1]) for line in child.log_text().splitlines() if "grandchild" in line]
    return [psutil.Process(pid) for pid in pids]


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_server_is_found_healthy_and_stopped_with_nothing_left(script, tmp_path):
    server = ChildServer([sys.executable, str(script), "ok"], log_path=tmp_path / "s.log")
    with server.start(health_path="/health"):
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "/health", timeout=5) as response:
            assert response.status == 200
        family = [psutil.Process(server.pid), *grandchildren(server)]
        assert len(family) == 3 and all(not gone(p) for p in family)
        assert {p.pid for p in family[1:]} <= set(server.seen)
    # SIGTERM ended the server; the sleeper in its own session was out of the group's reach
    # and got SIGKILL as a descendant seen.
    assert all(gone(p) for p in family), [p.pid for p in family if not gone(p)]
    assert server.returncode == -15
    assert not server.group_alive() and server.leftovers() == []
    assert server.stop() == -15  # idempotent
    assert server.kill() == -15


def test_a_child_that_exits_early_gives_its_exit_code_and_log_tail(script, tmp_path):
    server = ChildServer([sys.executable, str(script), "exit-early"], log_path=tmp_path / "e.log")
    with pytest.raises(ChildError) as failure:
        server.start(start_timeout_s=10)
    message = str(failure.value)
    assert "exited before it was listening" in message and "exit code 3" in message, message
    assert "boom: no config here" in failure.value.log_tail
    assert failure.value.returncode == 3


def test_a_child_that_never_listens_is_stopped_after_the_start_bound(script, tmp_path):
    server = ChildServer([sys.executable, str(script), "never-listens"], log_path=tmp_path / "n")
    started = time.monotonic()
    with pytest.raises(ChildError) as failure:
        server.start(start_timeout_s=1.0)
    assert time.monotonic() - started < 1.0 + server.stop_timeout_s
    assert "no 'listening on' line within 1 s" in str(failure.value)
    assert "starting, slowly" in failure.value.log_tail
    assert not server.running() and not server.group_alive()


def test_an_unhealthy_server_is_an_error_and_is_stopped(script, tmp_path):
    server = ChildServer([sys.executable, str(script), "unhealthy"], log_path=tmp_path / "u.log")
    with pytest.raises(ChildError) as failure:
        server.start(health_path="/health", health_timeout_s=0.5)
    assert "GET /health not 200 within 0.5 s (last: HTTP 503)" in str(failure.value)
    assert server.url and not server.running() and server.leftovers() == []


def test_a_child_that_ignores_sigterm_is_killed_within_the_bound(script, tmp_path):
    server = ChildServer(
        [sys.executable, str(script), "ignore-term"],
        log_path=tmp_path / "i.log",
        stop_timeout_s=1.0,
    )
    server.start()
    family = [psutil.Process(server.pid), *grandchildren(server)]
    started = time.monotonic()
    code = server.stop()
    stopped_s = time.monotonic() - started
    assert code == -9, server.log_tail()
    assert 0.9 <= stopped_s < 3.0, stopped_s
    assert all(gone(p) for p in family)


def test_a_plain_child_is_waited_for_bounded(tmp_path):
    quick = ChildProcess(
        [sys.executable, "-c", "print('done', flush=True)"], log_path=tmp_path / "q.log"
    )
    with quick:
        assert quick.wait(10) == 0
    assert quick.log_tail().strip() == "done"

    slow = ChildProcess(
        [sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "s"
    )
    with slow:
        started = time.monotonic()
        assert slow.wait(0.3) is None  # still running after the bound
        assert 0.3 <= time.monotonic() - started < 2.0
        polls = []

        def third_poll() -> bool:
            polls.append(time.monotonic())
            return len(polls) == 3

        assert slow.wait(10, until=third_poll) is None
        assert len(polls) == 3 and slow.running()
    assert not slow.running() and slow.returncode == -15


# A parent process of the tiny server (argv: the script, the server's log), as Python source.
INNER_SERVER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from target.common.child import ChildServer\n"
    "server = ChildServer([sys.executable, sys.argv[1], 'ok'], log_path=Path(sys.argv[2]),\n"
    "                     die_with_parent=True)\n"
)


def inner_command(program: str, script: Path, tmp_path: Path) -> list[str]:
    return [sys.executable, "-c", program, str(script), str(tmp_path / "inner.log")]


def test_it_works_from_a_gevent_patched_process(script, tmp_path):
    """Locust's processes are monkey-patched by gevent: start, health, stop work there too."""
    program = (
        "from gevent import monkey; monkey.patch_all()\n"
        + INNER_SERVER
        + "with server.start(health_path='/health'):\n"
        "    print('url', server.url, flush=True)\n"
        "print('exit', server.returncode, 'left', len(server.leftovers()), flush=True)\n"
    )
    runner = ChildProcess(
        inner_command(program, script, tmp_path), log_path=tmp_path / "g", cwd=REPO
    )
    with runner:
        assert runner.wait(30) == 0, runner.log_tail()
    assert "url http://127.0.0.1:" in runner.log_text(), runner.log_tail()
    assert "exit -15 left 0" in runner.log_text(), runner.log_tail()


def test_die_with_parent_ends_the_child_when_its_parent_is_sigkilled(script, tmp_path):
    """A parent SIGKILLed cannot stop its child; PR_SET_PDEATHSIG does (Linux only)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    program = INNER_SERVER + (
        "server.start()\n"
        "print('pid', server.pid, flush=True)\n"
        "print('server listening on', server.url, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = ChildServer(
        inner_command(program, script, tmp_path), log_path=tmp_path / "p", cwd=REPO
    )
    with parent.start(start_timeout_s=20):
        server_pid = int(parent.log_text().split("pid ")[1].split()[0])
        server = psutil.Process(server_pid)
        assert not gone(server)
        parent.sample_descendants()  # the server's sleepers do not die with it: stop() gets them
        parent.signal(9)
        assert parent.wait(5) == -9
        deadline = time.monotonic() + 5.0
        while not gone(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(server), "the server outlived its SIGKILLed parent"


def test_a_forked_copy_does_not_stop_the_child(script, tmp_path):
    """A worker forked after the start (Locust --processes) inherits the object and its atexit
    entry; its exit must not stop its parent's child."""
    program = INNER_SERVER + (
        "import os\n"
        "server.start()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.exit(0)  # runs the inherited atexit entry\n"
        "os.waitpid(pid, 0)\n"
        "print('after the fork, running:', server.running(), flush=True)\n"
        "print('stopped with', server.stop(), flush=True)\n"
    )
    runner = ChildProcess(
        inner_command(program, script, tmp_path), log_path=tmp_path / "f", cwd=REPO
    )
    with runner:
        assert runner.wait(30) == 0, runner.log_tail()
    assert "after the fork, running: True" in runner.log_text(), runner.log_tail()
    assert "stopped with -15" in runner.log_text(), runner.log_tail()
