"""Serving an app on one address (127.0.0.1 unless told) until SIGTERM or SIGINT, then a bounded,
clean shutdown.

The bind address (`--bind` of `lnchaos target` and `lnchaos node`, `--target-bind` of the suite)
is an IP address. Anything but loopback (127.0.0.0/8, ::1) opens the service to every host that
reaches it, so it needs an explicit admin token (a generated one is refused: it would be printed
into a log that others may read) and prints a one-line warning. The `listening on` line carries
the bound address: it is the URL others are given.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from aiohttp import web

log = logging.getLogger("lnchaos.server")
T = TypeVar("T")

LOOPBACK = "127.0.0.1"
# For a request still running (a payout waiting on the node), aiohttp waits up to this long
# twice before it cancels the handler; then the cleanup contexts run (background jobs, journal
# flush). 2 x 1 s keeps the whole stop well under 5 s (2 s took about 4.3 s).
SHUTDOWN_TIMEOUT_S = 1.0
# The exit code of a process stopped by a failed journal (sysexits' EX_IOERR): its memory was
# ahead of its disk, so it stopped instead of answering from memory.
EXIT_JOURNAL_FAILED = 74


class FailStop:
    """A fatal error of the app asks its server to stop, with the exit code to stop with.

    The app factory puts one under FAIL_STOP; `serve` stops on it as on a stop signal and
    `run_app` returns its exit code. Without a server (an app under test) it is only a flag."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.exit_code = 0
        self.reason = ""

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def stop(self, exit_code: int, reason: str) -> None:
        if self.event.is_set():
            return  # the first reason stands
        log.critical("stopping with exit code %d: %s", exit_code, reason)
        self.exit_code = exit_code
        self.reason = reason
        self.event.set()


FAIL_STOP: web.AppKey[FailStop] = web.AppKey("lnchaos_fail_stop", FailStop)


def is_loopback(host: str) -> bool:
    """Whether `host` is an IP address of the loopback range (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_problem(
    host: str,
    admin_token: str | None,
    *,
    option: str = "--bind",
    token_option: str = "--admin-token",
) -> str | None:
    """Why `host` may not be bound (not an IP address; beyond loopback without an explicit
    admin token), else None."""
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return f"{option} must be an IP address (127.0.0.1, 10.0.0.5, 0.0.0.0, ::1), not {host!r}"
    if not address.is_loopback and not admin_token:
        return (
            f"{option} {address} is not a loopback address: every host that reaches it could "
            f"use the admin routes, so it needs an explicit {token_option} (a generated token "
            f"is refused for it)"
        )
    return None


def check_bind(
    host: str,
    admin_token: str | None,
    *,
    option: str = "--bind",
    token_option: str = "--admin-token",
) -> str:
    """The address to bind, normalised; SystemExit with the clear message of `bind_problem`."""
    problem = bind_problem(host, admin_token, option=option, token_option=token_option)
    if problem:
        raise SystemExit(problem)
    return str(ipaddress.ip_address(host.strip().strip("[]")))


def bind_warning(host: str, name: str) -> str | None:
    """The one-line warning for a service bound beyond loopback, else None."""
    if is_loopback(host):
        return None
    return (
        f"warning: {name} binds {host}, not loopback: every host that reaches it can use its "
        f"API (the admin token guards only the admin routes); keep that network private"
    )


def http_url(host: str, port: int, scheme: str = "http") -> str:
    """http://HOST:PORT (or another scheme), with an IPv6 address in brackets."""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def serve(
    app: web.Application,
    port: int,
    *,
    name: str,
    host: str = LOOPBACK,
    on_started: Callable[[str], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Serve on `host` until a stop signal or the app's FailStop. Prints `<name> listening on
    http://HOST:PORT` (the bound address), flushed. Returns the exit code: 0, or the
    FailStop's."""
    fail_stop = app.get(FAIL_STOP)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        # The runner's public list of bound addresses: (host, port) for a TCP site.
        bound_port = int(runner.addresses[0][1]) if runner.addresses else port
        url = http_url(host, bound_port, "https" if ssl_context else "http")
        print(f"{name} listening on {url}", flush=True)
        if on_started is not None:
            on_started(url)
        waits = [asyncio.ensure_future(stop.wait())]
        if fail_stop is not None:
            waits.append(asyncio.ensure_future(fail_stop.event.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        log.info("%s: stopping", name)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        sys.stdout.flush()
    if fail_stop is not None and fail_stop.stopping:
        print(f"{name} stopped: {fail_stop.reason}", file=sys.stderr, flush=True)
        return fail_stop.exit_code
    return 0


class _HasAdminToken(Protocol):
    admin_token: str


def run_app(
    make_app: Callable[[Any], web.Application],
    config: _HasAdminToken,
    *,
    port: int,
    name: str,
    log_level: str,
    host: str = LOOPBACK,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Log, make an admin token if none was given (printed once; loopback only), serve on
    `host` until a stop signal."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host = check_bind(host, config.admin_token)  # the callers checked; never a generated token
    warning = bind_warning(host, name)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if not config.admin_token:
        config.admin_token = secrets.token_urlsafe(24)
        print(f"admin token: {config.admin_token}", flush=True)
    app = make_app(config)
    return run_loop(serve(app, port, name=name, host=host, ssl_context=ssl_context))


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop's event loop where uvloop is installed (not on Windows).
    libuv's loop and transports take less CPU per request than asyncio's selector loop: the
    loop, select and socket writes were a quarter of the target's CPU (py-spy)."""
    try:
        import uvloop
    except ImportError:  # an optional speed-up: the standard loop serves the same
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
