"""The node mock alone (`lnchaos node`): the simulated network's routes, its faults, LND's REST
API and the network admin routes, without a wallet. Point any LND-REST client at it.

Routes: `GET /health`, `GET /openapi.json` (target/node/openapi.py); the network as the target
serves it (`POST /node/invoices`, `GET /node/payments/{payment_hash}`); `GET|PUT /admin/faults`;
LND REST (docs/lnd-rest.md); `POST /admin/network/pay`, `GET /admin/network/truth`.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ..common.errors import ApiError, add_route, add_unrouted
from ..common.journal import Journal, open_db
from ..common.server import LOOPBACK, check_bind, run_app
from .faults import FaultSettings, add_fault_options, faults_from
from .lnd_auth import LndDirMacaroons
from .lnd_dir import LndDir, prepare_lnd_dir
from .lnd_grpc import start_grpc, stop_grpc
from .lnd_rest import LND, LndService, add_lnd_routes, lnd_ctx
from .lnd_versions import NEWEST, VERSIONS
from .network import LightningNode
from .network_http import add_fault_routes, add_network_routes
from .openapi import NODE_OPENAPI

log = logging.getLogger("lnchaos.node")

BODY_MAX_BYTES = 64 * 1024


@dataclass
class NodeConfig:
    seed: int = 1
    admin_token: str = ""
    macaroon_hex: str | None = None  # None: any hex macaroon is accepted
    db_path: Path | None = None  # None: a new file in a temporary folder
    faults: FaultSettings = field(default_factory=FaultSettings)
    journal_batch_max: int = 256
    # LND's directory (--lnd-dir, prepared): its macaroons are then the only ones accepted, with
    # LND's permissions and answers, and the LND faces are served over TLS with its certificate
    lnd_dir: LndDir | None = None
    lnd_version: str = NEWEST  # the LND release the LND faces answer as (lnd_versions.py)
    lnd_status_initiated: bool = False  # routerrpc.usestatusinitiated (0.18 and later)
    grpc_port: int | None = None  # LND's gRPC there (0: a free port), with lnd_dir
    bind: str = LOOPBACK  # where gRPC listens (the REST face: run_app's host)


NODE: web.AppKey[LightningNode] = web.AppKey("lnchaos_node", LightningNode)
NODE_CONFIG: web.AppKey[NodeConfig] = web.AppKey("lnchaos_node_config", NodeConfig)
GRPC_PORT: web.AppKey[int] = web.AppKey("lnchaos_grpc_port", int)


def create_node_app(config: NodeConfig) -> web.Application:
    config.faults.validate()
    if config.db_path is None:
        config.db_path = Path(tempfile.mkdtemp(prefix="lnchaos-node-")) / "node.sqlite"
    app = web.Application(client_max_size=BODY_MAX_BYTES)
    app[NODE_CONFIG] = config
    app.cleanup_ctx.append(_node_ctx)
    app.cleanup_ctx.append(
        lnd_ctx(
            lambda a: LndService(
                a[NODE],
                seed=config.seed,
                admin_token=config.admin_token,
                macaroon_hex=config.macaroon_hex,
                macaroons=LndDirMacaroons(config.lnd_dir) if config.lnd_dir else None,
                version=VERSIONS[config.lnd_version],
                status_initiated=config.lnd_status_initiated,
            )
        )
    )
    if config.grpc_port is not None:
        app.cleanup_ctx.append(_grpc_ctx)
    add_route(app, "GET", "/health", health)
    add_route(app, "GET", "/openapi.json", openapi)
    add_network_routes(app, lambda request: request.app[NODE])
    add_fault_routes(app, lambda request: request.app[NODE], _admin_token)
    add_lnd_routes(app)
    add_unrouted(app)
    return app


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[NODE_CONFIG]
    db = await open_db(os.fspath(config.db_path))
    journal = Journal(db, batch_max=config.journal_batch_max)
    node = LightningNode(config.faults, seed=config.seed, journal=journal)
    try:
        await node.load()
        journal.start()
        app[NODE] = node
        yield
    finally:
        node.close()
        await journal.close()
        await db.close()


async def _grpc_ctx(app: web.Application) -> AsyncIterator[None]:
    """LND's gRPC face on the same node (after the LND service exists)."""
    config = app[NODE_CONFIG]
    assert config.lnd_dir is not None and config.grpc_port is not None, "gRPC needs --lnd-dir"
    server, port = await start_grpc(app[LND], config.lnd_dir, config.bind, config.grpc_port)
    app[GRPC_PORT] = port
    print(f"lnchaos node gRPC on {config.bind}:{port}", flush=True)
    try:
        yield
    finally:
        await stop_grpc(server)


# ---- handlers (same contract as the target's node routes, docs/target-api.md) -----------------


def _admin_token(request: web.Request) -> str:
    return request.app[NODE_CONFIG].admin_token


async def health(request: web.Request) -> web.Response:
    node = request.app[NODE]
    ok = node.journal.failed is None
    return web.json_response({"status": "ok" if ok else "failed"}, status=200 if ok else 503)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(NODE_OPENAPI)


# ---- `lnchaos node` -----------------------------------------------------------------------------


def add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument(
        "--bind",
        default=LOOPBACK,
        help="IP address to listen on; anything but loopback needs --admin-token",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--admin-token",
        default=None,
        help="generated and printed if not given (loopback only: a --bind beyond it needs one)",
    )
    parser.add_argument(
        "--macaroon",
        default=None,
        help="hex macaroon the Grpc-Metadata-macaroon header must carry (default: any hex)",
    )
    parser.add_argument(
        "--lnd-dir",
        type=Path,
        default=None,
        help="write LND's tls.cert, tls.key and data/chain/bitcoin/regtest/*.macaroon there (kept"
        " if present); serve over TLS and accept only those macaroons (default: plain HTTP, any"
        " hex macaroon)",
    )
    parser.add_argument(
        "--lnd-version",
        choices=sorted(VERSIONS),
        default=NEWEST,
        help="the LND release to answer as (docs/lnd.md's table: e.g. 0.21 has no SendPaymentSync)",
    )
    parser.add_argument(
        "--lnd-status-initiated",
        action="store_true",
        help="as LND with routerrpc.usestatusinitiated (0.18 and later): SendPaymentV2's first"
        " update is INITIATED, before any HTLC",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="serve LND's gRPC there too, over TLS (needs --lnd-dir; 0 picks a free port)",
    )
    parser.add_argument("--db", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--log-level", default="WARNING")
    add_fault_options(parser)


def config_from(args: argparse.Namespace) -> NodeConfig:
    if not 0 <= args.port <= 65535:
        raise SystemExit("--port must be within 0..65535")
    check_bind(args.bind, args.admin_token)
    if args.macaroon is not None and args.lnd_dir is not None:
        raise SystemExit("--macaroon and --lnd-dir exclude each other: the directory's macaroons")
    if args.lnd_status_initiated and not VERSIONS[args.lnd_version].status_initiated:
        raise SystemExit("--lnd-status-initiated needs --lnd-version 0.18 or later")
    if args.grpc_port is not None and args.lnd_dir is None:
        raise SystemExit("--grpc-port needs --lnd-dir (gRPC is served over TLS, as LND serves it)")
    if args.grpc_port is not None and not 0 <= args.grpc_port <= 65535:
        raise SystemExit("--grpc-port must be within 0..65535")
    if args.macaroon is not None:
        try:
            bytes.fromhex(args.macaroon)
        except ValueError:
            raise SystemExit("--macaroon must be hex") from None
    faults = faults_from(args)
    try:
        faults.validate()
    except ApiError as err:
        raise SystemExit(f"invalid fault setting: {err.message}") from None
    return NodeConfig(
        seed=args.seed,
        admin_token=args.admin_token or "",
        macaroon_hex=args.macaroon,
        db_path=args.db,
        lnd_version=args.lnd_version,
        lnd_status_initiated=args.lnd_status_initiated,
        grpc_port=args.grpc_port,
        bind=check_bind(args.bind, args.admin_token),
        faults=faults,
    )


def run_node(args: argparse.Namespace) -> int:
    config = config_from(args)
    ssl_context = None
    if args.lnd_dir is not None:
        config.lnd_dir = prepare_lnd_dir(args.lnd_dir, [args.bind])
        ssl_context = config.lnd_dir.ssl_context()
        print(
            f"lnd dir: {config.lnd_dir.cert_path} {config.lnd_dir.macaroon_path('admin')}",
            flush=True,
        )
    return run_app(
        create_node_app,
        config,
        port=args.port,
        name="lnchaos node",
        log_level=args.log_level,
        host=args.bind,
        ssl_context=ssl_context,
    )


__all__ = [
    "LND",
    "NODE",
    "NodeConfig",
    "add_node_options",
    "create_node_app",
    "run_node",
]
