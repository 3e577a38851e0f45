"""One way to start and stop a child process: a server (`ChildServer`, which prints
`<name> listening on http://ADDRESS:PORT`, an IPv4 address) or a plain run (`ChildProcess`,
e.g. a Locust run).

- The child gets a session of its own (start_new_session): a Ctrl-C in the terminal reaches the
  parent, which then stops the child in order, and the child's process group can be signalled
  as one.
- stdout and stderr go to a log file, never to a pipe nobody drains (a full pipe blocks the
  child); every error carries the log's tail.
- `die_with_parent` (Linux): PR_SET_PDEATHSIG, so the child gets SIGTERM even when the parent is
  SIGKILLed. Linux sends it when the *thread* that started the child ends: start such children
  from a thread that lives as long as the process (the main thread; greenlets are fine).
- `stop()`: SIGTERM to the group, a bounded wait until the group is gone, then SIGKILL to the
  group and to every descendant seen still alive. A descendant with a session of its own (the
  embedded target under Locust) gets no SIGTERM from here: its parent stops it in its own order
  (Locust judges the target before it stops it); once the parent is gone, it is SIGKILLed.
  Idempotent, and registered with atexit at start.
- Every wait is bounded and blocking (short sleeps in a deadline-bounded poll): it works from
  plain code, from a thread beside an asyncio loop, and from gevent (Locust), whose monkey
  patches make the sleeps, the subprocess waits and the health check's socket cooperative.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

log = logging.getLogger("lnchaos.child")

# What target/common/server.py prints once it is bound, a whole line: the bound IPv4 address
# (any, 127.0.0.1 by default: the suite may bind the target elsewhere) and the port, each octet
# 0..255 written without leading zeros, the port 1..5 digits; nothing else on the line.
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
LISTENING_RE = re.compile(
    rb"listening on (https?://" + _OCTET + rb"(?:\." + _OCTET + rb"){3}:[0-9]{1,5})\r?\n"
)
START_TIMEOUT_S = 20.0
HEALTH_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05
# A SIGKILLed child is reaped at once, unless it is stuck in the kernel (D state): bounded anyway.
REAP_TIMEOUT_S = 5.0
HEALTH_REQUEST_TIMEOUT_S = 1.0
LOG_TAIL_CHARS = 2000
_SCAN_CARRY_BYTES = 256  # the part of a line the URL scan keeps between two reads
_PR_SET_PDEATHSIG = 1
# Straight to the child: an http_proxy in the environment must not carry the health check elsewhere.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ChildError(RuntimeError):
    """A child that did not start (exited, never listened, never healthy); with its log tail."""

    def __init__(self, message: str, *, log_tail: str, returncode: int | None) -> None:
        super().__init__(f"{message}\n--- log tail ---\n{log_tail}")
        self.log_tail = log_tail
        self.returncode = returncode


class ChildProcess:
    """A child process in a session of its own, its output in `log_path`.

    `env` adds to (or overrides) this process's environment; PYTHONUNBUFFERED=1 is always set
    so a Python child's log is current. `cpus` pins the child (Linux) right after it starts.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
        cpus: set[int] | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        name: str | None = None,
    ) -> None:
        assert command, "a child needs a command"
        assert stop_timeout_s >= 0
        self.command = [str(part) for part in command]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = dict(env or {})
        self.die_with_parent = die_with_parent
        self.cpus = cpus
        self.stop_timeout_s = stop_timeout_s
        self.name = name or _short_name(self.command)
        self.popen: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, psutil.Process] = {}  # every descendant sampled, by pid
        self._root: psutil.Process | None = None
        self._stopped = False
        self._owner_pid = os.getpid()  # the process that may stop it (see stop())

    # ---- start ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the child (once; a second call does nothing). Returns self."""
        if self.popen is not None:
            return self
        self._owner_pid = os.getpid()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        preexec = _die_with_parent_preexec(os.getpid()) if self.die_with_parent else None
        with open(self.log_path, "wb") as log_file:
            self.popen = subprocess.Popen(
                self.command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
            )
        atexit.register(self.stop)
        try:
            self._root = psutil.Process(self.popen.pid)
        except psutil.NoSuchProcess:
            self._root = None  # it is already gone: wait/stop report its exit code
        if self.cpus is not None and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(self.popen.pid, self.cpus)
            except OSError:
                pass  # already gone: whoever waits for it sees the exit code
        log.debug("%s started (pid %d, log %s)", self.name, self.popen.pid, self.log_path)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- state ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._popen().pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited (negative: killed by that signal), else None."""
        return self.popen.poll() if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait(
        self,
        timeout_s: float,
        *,
        until: Callable[[], bool] | None = None,
        poll_s: float = 0.1,
    ) -> int | None:
        """Wait up to `timeout_s` for the exit (or for `until()` to be true), sampling the
        descendants meanwhile; the exit code, or None if it is still running."""
        popen = self._popen()
        deadline = time.monotonic() + timeout_s
        while True:
            self.sample_descendants()
            code = popen.poll()
            if code is not None:
                return code
            if until is not None and until():
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(poll_s, left))

    def signal(self, signum: int) -> None:
        """Send `signum` to the child itself (not its group); nothing once it has exited."""
        self._popen().send_signal(signum)

    def sample_descendants(self) -> None:
        """Remember every descendant alive now, so that stop() can reach it even after its
        parent is gone (a descendant in a session of its own is out of the group's reach)."""
        roots = [p for p in self.seen.values() if _alive(p)]
        if self._root is not None and self.running():  # not reaped: its pid is still its own
            roots.insert(0, self._root)
        for root in roots:
            try:
                for child in root.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            except psutil.Error:
                continue

    def leftovers(self) -> list[psutil.Process]:
        """The child, if still running, and every descendant seen still alive (zombies are not)."""
        alive = [p for p in self.seen.values() if _alive(p)]
        if self._root is not None and self.running():
            alive.insert(0, self._root)
        return alive

    def group_alive(self) -> bool:
        """Whether a process of the child's group (the child or a descendant) is still running.
        Zombies do not count: their reaper (pid 1 for orphans) may take its time."""
        pgid = self._popen().pid
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return any(_alive(process) for process in _group_members(pgid))

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, max_chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the log (read from the end: a long run's log may be large)."""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                size = log_file.tell()
                log_file.seek(max(0, size - 4 * max_chars))
                return log_file.read().decode(errors="replace")[-max_chars:]
        except OSError:
            return ""

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM to the group; wait up to `timeout_s` (default `stop_timeout_s`) until the group
        is gone; then SIGKILL the group and every descendant seen still alive. Idempotent;
        returns the child's exit code (None if it was never started)."""
        popen = self.popen
        if popen is None:
            return None
        if self._stopped or os.getpid() != self._owner_pid:
            # A process forked after the start (Locust's --processes workers) inherits this
            # object and its atexit entry; only the process that started the child stops it.
            return popen.returncode
        self._stopped = True
        atexit.unregister(self.stop)
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        self.sample_descendants()
        if timeout_s > 0:
            _killpg(popen.pid, signal.SIGTERM)
            while time.monotonic() < deadline and (popen.poll() is None or self.group_alive()):
                self.sample_descendants()
                time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))
        self.sample_descendants()
        if timeout_s > 0 and (popen.poll() is None or self.group_alive()):
            log.warning("%s: still running %.1f s after SIGTERM; killing it", self.name, timeout_s)
        _killpg(popen.pid, signal.SIGKILL)  # stragglers in the group, if any
        for process in self.seen.values():
            if _alive(process):
                try:
                    process.kill()
                except psutil.Error:
                    pass
        # SIGKILL is delivered asynchronously: bounded, wait until the child is reaped and every
        # descendant is gone, so that a caller that checks finds nothing left.
        reap_deadline = time.monotonic() + REAP_TIMEOUT_S
        while (popen.poll() is None or self.leftovers()) and time.monotonic() < reap_deadline:
            time.sleep(POLL_INTERVAL_S / 5)
        if popen.poll() is None or self.leftovers():
            log.error("%s: still running after SIGKILL: %s", self.name, self.leftovers())
        log.debug("%s stopped (exit code %s)", self.name, popen.returncode)
        return popen.returncode

    def kill(self) -> int | None:
        """stop() without the grace: SIGKILL to the group and every descendant seen, now."""
        return self.stop(timeout_s=0)

    # ---- helpers -------------------------------------------------------------------------------

    def _popen(self) -> subprocess.Popen[bytes]:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen

    def _fail(self, message: str) -> ChildError:
        """Stop the child and make the error that says why, with the log's tail."""
        code = self.stop()
        return ChildError(
            f"{self.name}: {message} (exit code {code}; log {self.log_path})",
            log_tail=self.log_tail(),
            returncode=code,
        )


class ChildServer(ChildProcess):
    """A child server: started, it has printed `listening on http://ADDRESS:PORT` (its `url`),
    and, if asked, answered GET `health_path` with 200."""

    url: str = ""

    def start(
        self,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        health_path: str | None = None,
        health_timeout_s: float = HEALTH_TIMEOUT_S,
    ) -> Self:
        """Start the child and wait (bounded) for its URL, then for its health if asked. On any
        failure the child is stopped and ChildError says why, with the log's tail."""
        if self.popen is not None:
            return self
        super().start()
        self.wait_listening(start_timeout_s)
        if health_path is not None:
            self.wait_healthy(health_path, health_timeout_s)
        return self

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """The URL from the child's `listening on` line, read from its log within `timeout_s`."""
        if self.url:
            return self.url
        popen = self._popen()
        deadline = time.monotonic() + timeout_s
        offset, carry = 0, b""
        while True:
            exited = popen.poll() is not None  # before reading: its last words are in the log
            try:
                with open(self.log_path, "rb") as log_file:
                    log_file.seek(offset)
                    new = log_file.read()
            except OSError:
                new = b""
            offset += len(new)
            found = LISTENING_RE.search(carry + new)
            if found:
                self.url = found.group(1).decode()
                self.sample_descendants()  # what it started before listening (workers, ...)
                log.debug("%s listening on %s", self.name, self.url)
                return self.url
            carry = (carry + new)[-_SCAN_CARRY_BYTES:]
            if exited:
                raise self._fail("exited before it was listening")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"no 'listening on' line within {timeout_s:g} s")
            time.sleep(min(POLL_INTERVAL_S, left))

    def wait_healthy(self, path: str = "/health", timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        """Poll GET `url + path` until it answers 200, within `timeout_s`."""
        assert path.startswith("/"), path
        url = self.wait_listening(0) + path
        popen = self._popen()
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            if popen.poll() is not None:
                raise self._fail(f"exited while waiting for GET {path} (last: {last})")
            request_timeout_s = max(
                0.05, min(HEALTH_REQUEST_TIMEOUT_S, deadline - time.monotonic())
            )
            try:
                with _NO_PROXY.open(url, timeout=request_timeout_s) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                last = repr(error)
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"GET {path} not 200 within {timeout_s:g} s (last: {last})")
            time.sleep(min(POLL_INTERVAL_S, left))


def _short_name(command: list[str]) -> str:
    """`python -m target ...` -> `target`; `python x/server.py ...` -> `server.py`."""
    if len(command) >= 3 and command[1] == "-m":
        return command[2]
    if len(command) >= 2 and Path(command[0]).name.startswith("python") and command[1][:1] != "-":
        return Path(command[1]).name
    return Path(command[0]).name


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (is_running also checks that the pid was not reused)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue  # gone meanwhile
    return members


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone (or its pid now belongs to someone else's group)


def _die_with_parent_preexec(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when its parent dies (Linux only). libc is
    loaded here, in the parent: the child, between fork and exec, only calls prctl."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
