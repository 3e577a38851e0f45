"""The application factory: `create_app(config)` wires ledger, node, payouts and background jobs.

Each resource is opened and closed by one cleanup context, in order: databases, then the state
built on them, then the background jobs that use it (closed first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from .config import TargetConfig
from .errors import error_middleware
from .http_api import add_routes
from .journal import Journal, open_db
from .ledger import Ledger
from .metrics import Metrics
from .node.client import LocalNodeClient, NodeClient
from .node.lnd_client import LndRestNodeClient, remote_network_middleware
from .node.lnd_rest import LndService, add_lnd_routes, lnd_ctx
from .node.network import LightningNode
from .payouts import PayoutService, run_resolver
from .reconcile import run_reconciler
from .state import STATE, TargetState

log = logging.getLogger("lnchaos.target")

DB_PATHS: web.AppKey[tuple[Path, Path]] = web.AppKey("lnchaos_db_paths", tuple)


def db_paths(config: TargetConfig) -> tuple[Path, Path]:
    """The wallet's database and the node's: apart, as a wallet and its node would be."""
    if config.db_path is None:
        folder = Path(tempfile.mkdtemp(prefix="lnchaos-"))
        config.db_path = folder / "wallet.sqlite"
    wallet = Path(config.db_path)
    return wallet, wallet.with_name(wallet.stem + ".node.sqlite")


def create_app(config: TargetConfig) -> web.Application:
    config.faults.validate()
    middlewares = [error_middleware]
    if config.node_url:  # the network is the remote node's (docs/lnd-rest.md)
        middlewares.append(remote_network_middleware(config.node_url))
    app = web.Application(middlewares=middlewares, client_max_size=config.wallet.max_body_bytes)
    app[DB_PATHS] = db_paths(config)
    app.cleanup_ctx.append(_state_ctx(config))
    app.cleanup_ctx.append(
        lnd_ctx(
            lambda a: LndService(a[STATE].node, seed=config.seed, admin_token=config.admin_token)
        )
    )
    app.cleanup_ctx.append(_background_ctx)
    add_routes(app)
    add_lnd_routes(app)  # the local node's LND REST face (docs/lnd-rest.md)
    return app


def _state_ctx(config: TargetConfig):  # noqa: ANN202 - aiohttp's cleanup-context shape
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        wallet_path, node_path = app[DB_PATHS]
        wallet_db = await open_db(os.fspath(wallet_path))
        node_db = await open_db(os.fspath(node_path))
        wallet_journal = Journal(wallet_db, batch_max=config.ledger_batch_max)
        node_journal = Journal(node_db, batch_max=config.ledger_batch_max)
        metrics = Metrics()
        ledger = Ledger(wallet_journal)
        node = LightningNode(config.faults, seed=config.seed, journal=node_journal)
        try:
            await ledger.load()
            await node.load()
            wallet_journal.start()
            node_journal.start()
            node_client: NodeClient = LocalNodeClient(node)
            if config.node_url:  # the wallet pays through a remote node (docs/lnd-rest.md)
                node_client = LndRestNodeClient(config.node_url, config.node_macaroon_hex)
            payouts = PayoutService(ledger, node_client, config.wallet, config.fix, metrics)
            app[STATE] = TargetState(
                config, metrics, ledger, node, node_journal, node_client, payouts
            )
            await payouts.recover_charge_first()
            yield
        finally:
            if STATE in app:
                await app[STATE].node_client.close()
            node.close()
            await wallet_journal.close()
            await node_journal.close()
            await wallet_db.close()
            await node_db.close()

    return ctx


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    stop = asyncio.Event()
    wallet = state.config.wallet
    tasks = [
        asyncio.create_task(
            run_resolver(state.payouts, wallet.resolver_interval_ms / 1000, stop), name="resolver"
        ),
        asyncio.create_task(
            run_reconciler(
                state.ledger,
                state.node_client,
                state.metrics,
                interval_s=wallet.reconcile_interval_s,
                stuck_after_s=wallet.stuck_after_s,
                stop=stop,
            ),
            name="reconciler",
        ),
    ]
    yield
    stop.set()
    _, still = await asyncio.wait(tasks, timeout=2.0)
    for task in still:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
