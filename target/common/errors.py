"""One place for the errors a client may see: each is a status, a stable code and a message."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .json_body import json_response

log = logging.getLogger("lnchaos.target")


class ApiError(Exception):
    """An error that reaches the client as JSON: `{"error": code, "message": ..., **extra}`."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, **self.extra}


def bad_request(code: str, message: str, **extra: object) -> ApiError:
    return ApiError(400, code, message, **extra)


def json_error(status: int, code: str, message: str, **extra: object) -> web.Response:
    return json_response({"error": code, "message": message, **extra}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# An app's own exceptions as answers (None: not one of them); and a check that may answer before
# any handler runs (None: go on).
Translate = Callable[[Exception], web.StreamResponse | None]
Gate = Callable[[web.Request], web.StreamResponse | None]
Guard = Callable[[Handler], Handler]


# A client's id of its request, echoed on the answer (any route, errors included), so a client
# can tell an answer from one that reached the wrong request on a reused connection: what the
# judge of a retry round checks before it believes an answer (locustfiles/traffic.py).
REQUEST_ID = "X-Request-Id"
REQUEST_ID_MAX = 128


def is_request_id(value: str) -> bool:
    """An id worth echoing: 1 to REQUEST_ID_MAX visible ASCII characters."""
    return 0 < len(value) <= REQUEST_ID_MAX and value.isascii() and value.isprintable()


def echo_request_id(request: web.Request, answer: web.StreamResponse) -> web.StreamResponse:
    """The answer, carrying the request's own id (REQUEST_ID) when it sent a valid one."""
    request_id = request.headers.get(REQUEST_ID)
    if request_id is not None and is_request_id(request_id) and not answer.prepared:
        answer.headers[REQUEST_ID] = request_id
    return answer


def guard_of(translate: Translate | None = None, gate: Gate | None = None) -> Guard:
    """What wraps each of an app's handlers (`add_route`): every failure becomes a JSON error and
    no traceback reaches a client; `gate` and `translate` add the app's own refusals.

    A wrapper around each handler, not a middleware: with any middleware aiohttp runs, for every
    request, the chain's cached build, a partial and a coroutine per middleware, and one more of
    its own that sets `current_app`. Counted by `lnchaos bench --instructions`, that was 45-58 k
    instructions a payout flow of three requests (2 % of the target's work); a wrapper is one
    coroutine."""

    def guard(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if gate is not None:
                refused = gate(request)
                if refused is not None:
                    return echo_request_id(request, refused)
            try:
                answer = await handler(request)
            except ApiError as err:
                answer = json_response(err.body(), status=err.status)
            except web.HTTPRequestEntityTooLarge as err:
                # aiohttp keeps the limit only in the text ("Maximum request body size N ...").
                answer = json_error(413, "body_too_large", err.text or "request body too large")
            except web.HTTPException as err:
                if err.status < 400:
                    raise
                code = err.reason.lower().replace(" ", "_")
                answer = json_error(err.status, code, err.reason)
            except Exception as err:
                translated = translate(err) if translate is not None else None
                if translated is None:
                    log.exception("unhandled error on %s %s", request.method, request.path)
                    translated = json_error(
                        500, "internal_error", "internal error; see the target's log"
                    )
                answer = translated
            return echo_request_id(request, answer)

        return guarded

    return guard


plain_guard = guard_of()

# The app's guard, set before its routes are added; an app without one gets `plain_guard`.
ROUTE_GUARD: web.AppKey[Guard] = web.AppKey("lnchaos_route_guard", Guard)  # type: ignore[arg-type]


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> web.AbstractRoute:
    """Add a route whose handler is wrapped in the app's guard (a GET also answers HEAD)."""
    guarded = app.get(ROUTE_GUARD, plain_guard)(handler)
    if method == "GET":
        return app.router.add_get(path, guarded)
    return app.router.add_route(method, path, guarded)


def add_unrouted(app: web.Application) -> None:
    """Last of an app's routes: what no route takes is answered as JSON too, 404 or 405 with its
    Allow header (aiohttp's own answers are text). It is indexed under "/", which aiohttp's
    router tries after every longer prefix, so it only ever sees what nothing else matched."""

    async def unrouted(request: web.Request) -> web.StreamResponse:
        allowed: set[str] = set()
        for resource in app.router.resources():
            if resource is not catch_all:
                _, methods = await resource.resolve(request)
                allowed |= methods
        if allowed:
            answer = json_error(405, "method_not_allowed", "Method Not Allowed")
            answer.headers["Allow"] = ",".join(sorted(allowed))
            return answer
        return json_error(404, "not_found", "Not Found")

    catch_all = add_route(app, "*", "/{unrouted:.*}", unrouted).resource


async def read_json_object(request: web.Request) -> dict[str, object]:
    """The request body as a JSON object, or a 400/413 that names what was wrong."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    try:
        # orjson first (about 24 k instructions less per payout flow, its two bodies); what it
        # refuses goes to the standard library, so the answers stay as they were: NaN, a BOM, a
        # lone surrogate are read there, then judged by the field checks. (An integer past 64 bits
        # comes back from orjson a float, which the field checks refuse as they refused it.)
        try:
            value = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_request("malformed_json", f"body is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise bad_request("malformed_json", "body must be a JSON object")
    return value


def require_int(body: dict[str, object], key: str, *, minimum: int, maximum: int) -> int:
    """An integer field within [minimum, maximum]; bools and floats are refused, not rounded."""
    if key not in body:
        raise bad_request("missing_field", f"'{key}' is required", field=key)
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("invalid_amount", f"'{key}' must be an integer", field=key)
    if value < minimum or value > maximum:
        raise bad_request(
            "invalid_amount", f"'{key}' must be between {minimum} and {maximum}", field=key
        )
    return value


def require_str(body: dict[str, object], key: str, *, max_len: int) -> str:
    if key not in body:
        raise bad_request("missing_field", f"'{key}' is required", field=key)
    value = body[key]
    if not isinstance(value, str) or not value:
        raise bad_request("invalid_field", f"'{key}' must be a non-empty string", field=key)
    if len(value) > max_len:
        raise bad_request("invalid_field", f"'{key}' is longer than {max_len}", field=key)
    return value
