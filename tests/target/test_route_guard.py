"""The route guard (target/common/errors.py) that stands in for a middleware: every route of the
target and of the node answers its failures as JSON, and what no route takes too."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from target_harness import fast_config, run

from target.app import create_app
from target.common.errors import ApiError, add_route, add_unrouted, guard_of, plain_guard
from target.node.node_app import NodeConfig, create_node_app


def unguarded(app: web.Application) -> list[str]:
    """Routes whose handler is not wrapped by a guard (a guard keeps the handler as
    `__wrapped__`), and the app's middlewares, which the guard replaces."""
    found = [f"middleware {m!r}" for m in app.middlewares]
    for route in app.router.routes():
        if getattr(route.handler, "__wrapped__", None) is None:
            found.append(f"{route.method} {route.resource.canonical if route.resource else '?'}")
    return found


def test_every_route_of_the_target_and_the_node_is_guarded(tmp_path: Path) -> None:
    target = create_app(fast_config(tmp_path / "w.sqlite"))
    node = create_node_app(NodeConfig(db_path=tmp_path / "n.sqlite"))
    for app in (target, node):
        routes = list(app.router.routes())
        assert len(routes) > 10
        assert unguarded(app) == []
        # the catch-all is the last route added
        assert routes[-1].method == "*"


def test_a_route_added_around_the_guard_is_found(tmp_path: Path) -> None:
    app = create_app(fast_config(tmp_path / "w.sqlite"))

    async def bare(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/bare", bare)
    assert sorted(unguarded(app)) == ["GET /bare", "HEAD /bare"]


def guarded_app() -> web.Application:
    app = web.Application()

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a secret detail of the server")

    async def refused(_request: web.Request) -> web.Response:
        raise ApiError(409, "conflict_here", "refused on purpose", extra_field=7)

    async def fine(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def translated(_request: web.Request) -> web.Response:
        raise KeyError("translated")

    add_route(app, "GET", "/broken", broken)
    add_route(app, "POST", "/refused", refused)
    add_route(app, "GET", "/fine", fine)
    add_route(app, "PUT", "/fine", fine)
    app.router.add_get(
        "/translated",
        guard_of(
            lambda err: (
                web.json_response({"t": 1}, status=503) if isinstance(err, KeyError) else None
            )
        )(translated),
    )
    add_unrouted(app)
    return app


def test_failures_and_unrouted_requests_are_json() -> None:
    async def scenario() -> None:
        async with TestClient(TestServer(guarded_app(), host="127.0.0.1")) as client:
            reply = await client.get("/broken")
            assert reply.status == 500
            body = await reply.json()
            assert body["error"] == "internal_error"
            assert "secret" not in await reply.text() and "Traceback" not in await reply.text()

            reply = await client.post("/refused")
            assert (reply.status, await reply.json()) == (
                409,
                {"error": "conflict_here", "message": "refused on purpose", "extra_field": 7},
            )

            reply = await client.get("/translated")
            assert (reply.status, await reply.json()) == (503, {"t": 1})

            reply = await client.get("/nowhere/at/all")
            assert reply.status == 404
            assert (await reply.json())["error"] == "not_found"

            reply = await client.delete("/fine")
            assert reply.status == 405
            assert (await reply.json())["error"] == "method_not_allowed"
            assert reply.headers["Allow"] == "GET,HEAD,PUT"

            reply = await client.head("/fine")  # a GET route also answers HEAD
            assert reply.status == 200

            reply = await client.get("/fine")
            assert (reply.status, await reply.json()) == (200, {"ok": True})

    run(scenario())


def test_the_plain_guard_keeps_the_handler() -> None:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response()

    assert plain_guard(handler).__wrapped__ is handler  # type: ignore[attr-defined]
