"""Serving an app on 127.0.0.1 until SIGTERM or SIGINT, then a bounded, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

log = logging.getLogger("lnchaos.server")

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


async def serve(
    app: web.Application,
    port: int,
    *,
    name: str,
    on_started: Callable[[str], None] | None = None,
) -> int:
    """Serve until a stop signal or the app's FailStop. Prints `<name> listening on
    http://127.0.0.1:PORT`, flushed. Returns the exit code: 0, or the FailStop's."""
    fail_stop = app.get(FAIL_STOP)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, LOOPBACK, port, reuse_address=True)
        await site.start()
        # The runner's public list of bound addresses: (host, port) for a TCP site.
        bound_port = int(runner.addresses[0][1]) if runner.addresses else port
        url = f"http://{LOOPBACK}:{bound_port}"
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
) -> int:
    """Log, make an admin token if none was given (printed once), serve until a stop signal."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not config.admin_token:
        config.admin_token = secrets.token_urlsafe(24)
        print(f"admin token: {config.admin_token}", flush=True)
    return asyncio.run(serve(make_app(config), port, name=name))
