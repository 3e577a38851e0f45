"""The floor of the bench: a bare aiohttp JSON endpoint doing nothing.

`python -m lnchaos.bench_floor --port 0` serves `/ping` (GET and POST) → `{}` on 127.0.0.1, with
the same runner as the target (`target.common.server`: the same event loop, no access log, same
shutdown), so the only difference the bench sees between the floor and the target is the
target's own work.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from target.common.server import run_loop, serve

EMPTY_JSON = b"{}"


async def ping(request: web.Request) -> web.Response:
    if request.can_read_body:
        await request.read()  # a POST body is read, as the target reads its JSON
    return web.Response(body=EMPTY_JSON, content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_post("/ping", ping)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnchaos.bench_floor", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    run_loop(serve(create_app(), args.port, name="lnchaos bench floor"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
