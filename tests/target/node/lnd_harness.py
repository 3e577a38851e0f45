"""Helpers for the LND REST tests: an in-process node (`create_node_app` on 127.0.0.1:0), a plain
HTTP client that speaks LND's REST conventions, stream readers, and `lnchaos node` processes.

Every wait has a deadline; tests poll, they never sleep to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from target_harness import fast_faults, run  # noqa: F401 - one harness for both suites

from target.common.child import ChildServer
from target.node.lnd_dir import LndDir
from target.node.lnd_rest import LND, LndService
from target.node.lnd_versions import NEWEST
from target.node.network import LightningNode
from target.node.node_app import GRPC_PORT, NODE, NodeConfig, create_node_app

ADMIN_TOKEN = "node-admin"
MACAROON = "0201036c6e64"  # any hex
REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass
class Node:
    """An in-process node app and a client for it."""

    url: str
    node: LightningNode
    service: LndService
    http: ClientSession
    macaroon: str = MACAROON  # hex; with an LND directory, its admin.macaroon
    grpc_port: int = 0  # LND's gRPC face (with grpc=True)

    def headers(self, macaroon: str | None = None) -> dict[str, str]:
        macaroon = macaroon or self.macaroon
        return {"Grpc-Metadata-macaroon": macaroon} if macaroon else {}

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path, params=params, headers=self.headers()) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body, headers=self.headers()) as r:
            return r.status, await r.json(content_type=None)

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"X-Admin-Token": ADMIN_TOKEN}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def merchant_invoice(self, amount_msat: int) -> dict[str, Any]:
        status, body = await self.admin("POST", "/node/invoices", {"amount_msat": amount_msat})
        assert status == 201, body
        return body

    async def stream(
        self, method: str, path: str, body: Any = None, *, patience_s: float = 5.0
    ) -> tuple[int, list[dict[str, Any]], bool]:
        """Read a streaming response for at most `patience_s`: (status, lines, ended)."""
        lines: list[dict[str, Any]] = []
        async with self.http.request(
            method, self.url + path, json=body, headers=self.headers()
        ) as resp:
            deadline = time.monotonic() + patience_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return resp.status, lines, False
                try:
                    raw = await asyncio.wait_for(resp.content.readline(), left)
                except TimeoutError:
                    return resp.status, lines, False
                if not raw:
                    return resp.status, lines, True
                lines.append(json.loads(raw))


@asynccontextmanager
async def node_app(
    *,
    macaroon_hex: str | None = None,
    tmp: Path,
    seed: int = 11,
    lnd_dir: LndDir | None = None,
    lnd_version: str = NEWEST,
    grpc: bool = False,
    lnd_status_initiated: bool = False,
    **faults: Any,
) -> AsyncIterator[Node]:
    """The node on 127.0.0.1:0; with `lnd_dir`, over TLS with its certificate (the client trusts
    that certificate alone) and its admin macaroon."""
    os.makedirs(tmp, exist_ok=True)
    config = NodeConfig(
        seed=seed,
        admin_token=ADMIN_TOKEN,
        macaroon_hex=macaroon_hex,
        db_path=tmp / "node.sqlite",
        faults=fast_faults(**faults),
        lnd_dir=lnd_dir,
        lnd_version=lnd_version,
        grpc_port=0 if grpc else None,
        lnd_status_initiated=lnd_status_initiated,
    )
    app = create_node_app(config)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    server_tls = lnd_dir.ssl_context() if lnd_dir else None
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    port = int(runner.addresses[0][1])  # the runner's public list of bound (host, port)
    scheme = "https" if lnd_dir else "http"
    client_tls = ssl.create_default_context(cafile=lnd_dir.cert_path) if lnd_dir else None
    macaroon = lnd_dir.macaroons["admin"].hex() if lnd_dir else MACAROON
    try:
        connector = TCPConnector(ssl=client_tls) if client_tls else None
        async with ClientSession(timeout=ClientTimeout(total=20), connector=connector) as http:
            url = f"{scheme}://127.0.0.1:{port}"
            grpc_port = app[GRPC_PORT] if grpc else 0
            yield Node(url, app[NODE], app[LND], http, macaroon, grpc_port)
    finally:
        await runner.cleanup()


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last is not None:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def server_process(module: str, args: list[str], log_path: Path) -> ChildServer:
    """`python -m <module> ARGS` as a child server (target/common/child.py); not started."""
    command = [sys.executable, "-m", module, *args]
    return ChildServer(command, log_path=log_path, cwd=REPO, die_with_parent=True)
