"""The application factory: `create_app(config)` wires ledger, node, payouts and background jobs.

This is the one module that knows both the wallet (the system under test: target/*.py) and the
node (the judge: target/node/). The wallet reaches the node only through its client
(target/node/client.py); the node knows nothing of the wallet. Both run in this process, each with
a database of its own.

Each resource is opened and closed by one cleanup context, in order: databases, then the state
built on them, then the background jobs that use it (closed first).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .common.errors import ROUTE_GUARD, add_unrouted
from .common.journal import JOURNAL_QUEUE_MAX, Journal, open_db
from .common.server import EXIT_JOURNAL_FAILED, FAIL_STOP, FailStop
from .config import FixMode, WalletSettings
from .http_api import add_routes, wallet_guard
from .ledger import Ledger
from .metrics import Metrics
from .node.client import LocalNodeClient, NodeClient, NodeTruth, TruthReader
from .node.faults import FaultSettings
from .node.lnd_client import LndRestNodeClient, add_remote_network_routes
from .node.lnd_rest import LndService, add_lnd_routes, lnd_ctx
from .node.network import LightningNode
from .node.network_http import add_fault_routes, add_network_routes
from .node.openapi import LND_PATHS, NETWORK_PATHS
from .openapi import OPENAPI, OPENAPI_DOC
from .payouts import PayoutService, run_resolver
from .reconcile import Reconciler, create_checkpoint_table, run_reconciler
from .state import STATE, TargetState

log = logging.getLogger("lnchaos.target")


@dataclass
class TargetConfig:
    fix: FixMode = FixMode.ON
    seed: int = 1
    admin_token: str = ""
    db_path: Path | None = None  # None: a new file in a temporary folder
    faults: FaultSettings = field(default_factory=FaultSettings)
    wallet: WalletSettings = field(default_factory=WalletSettings)
    ledger_batch_max: int = 256  # payouts' ledger writes per transaction (group commit)
    journal_queue_max: int = JOURNAL_QUEUE_MAX  # writes waiting for the disk; past it: 503
    node_url: str | None = None  # the wallet's node over LND REST (docs/lnd-rest.md); None: local
    node_macaroon_hex: str | None = None  # sent to node_url as Grpc-Metadata-macaroon


DB_PATHS: web.AppKey[tuple[Path, Path]] = web.AppKey("lnchaos_db_paths", tuple)
NODE: web.AppKey[LightningNode] = web.AppKey("lnchaos_target_node", LightningNode)


def db_paths(config: TargetConfig) -> tuple[Path, Path]:
    """The wallet's database and the node's: apart, as a wallet and its node would be."""
    if config.db_path is None:
        folder = Path(tempfile.mkdtemp(prefix="lnchaos-"))
        config.db_path = folder / "wallet.sqlite"
    wallet = Path(config.db_path)
    return wallet, wallet.with_name(wallet.stem + ".node.sqlite")


def create_app(config: TargetConfig) -> web.Application:
    config.faults.validate()
    # No middleware: each handler is wrapped in the wallet's guard instead (errors.guard_of).
    app = web.Application(client_max_size=config.wallet.max_body_bytes)
    app[ROUTE_GUARD] = wallet_guard
    app[DB_PATHS] = db_paths(config)
    app[OPENAPI_DOC] = target_openapi()
    app[FAIL_STOP] = FailStop()
    app.cleanup_ctx.append(_state_ctx(config))
    app.cleanup_ctx.append(
        lnd_ctx(lambda a: LndService(a[NODE], seed=config.seed, admin_token=config.admin_token))
    )
    app.cleanup_ctx.append(_background_ctx)
    add_routes(app)
    # The local node's own faces: its network routes, its faults, LND REST (docs/lnd-rest.md).
    if config.node_url:  # the network and its faults are the remote node's (docs/lnd-rest.md)
        add_remote_network_routes(app, config.node_url)
    else:
        add_network_routes(app, lambda request: request.app[NODE])
        add_fault_routes(app, lambda r: r.app[NODE], lambda _request: config.admin_token)
    add_lnd_routes(app)
    add_unrouted(app)
    return app


def target_openapi() -> dict[str, Any]:
    """GET /openapi.json: the wallet's routes and its embedded node's, one document."""
    document = copy.deepcopy(OPENAPI)
    document["paths"].update(copy.deepcopy(NETWORK_PATHS))
    document["paths"].update(copy.deepcopy(LND_PATHS))
    return document


def _state_ctx(config: TargetConfig):  # noqa: ANN202 - aiohttp's cleanup-context shape
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        wallet_path, node_path = app[DB_PATHS]
        wallet_db = await open_db(os.fspath(wallet_path))
        node_db = await open_db(os.fspath(node_path))
        fail_stop = app[FAIL_STOP]

        def journal_failed(which: str):  # noqa: ANN202 - a callback factory
            def stop(err: BaseException) -> None:
                fail_stop.stop(EXIT_JOURNAL_FAILED, f"the {which} journal failed: {err}")

            return stop

        # A failed commit stops the process (its memory is ahead of its disk): fail-stop.
        wallet_journal = Journal(
            wallet_db,
            batch_max=config.ledger_batch_max,
            queue_max=config.journal_queue_max,
            on_failed=journal_failed("wallet"),
        )
        node_journal = Journal(
            node_db, batch_max=config.ledger_batch_max, on_failed=journal_failed("node")
        )
        metrics = Metrics()
        ledger = Ledger(wallet_journal)
        node = LightningNode(config.faults, seed=config.seed, journal=node_journal)
        try:
            await ledger.load()
            await create_checkpoint_table(wallet_db)
            await node.load()
            wallet_journal.start()
            node_journal.start()
            node_client: NodeClient = LocalNodeClient(node)
            node_truth: TruthReader = NodeTruth(node)
            if config.node_url:  # the wallet pays through a remote node (docs/lnd-rest.md)
                node_client = LndRestNodeClient(config.node_url, config.node_macaroon_hex)
                node_truth = node_client
            payouts = PayoutService(ledger, node_client, config.wallet, config.fix, metrics)
            reconciler = Reconciler(ledger, node_truth, stuck_after_s=config.wallet.stuck_after_s)
            await reconciler.load()
            metrics.in_flight.set_function(lambda: node.in_flight)
            metrics.journal_queue.set_function(lambda: wallet_journal.queued)
            app[NODE] = node
            app[STATE] = TargetState(
                admin_token=config.admin_token,
                wallet_settings=config.wallet,
                metrics=metrics,
                ledger=ledger,
                node_client=node_client,
                node_truth=node_truth,
                payouts=payouts,
                node_ok=lambda: node_journal.failed is None,
                node_totals=node.totals,
                reconciler=reconciler,
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


LOOP_LAG_PROBE_S = 0.5


async def probe_loop_lag(metrics: Metrics, stop: asyncio.Event) -> None:
    """How late the loop wakes a timer of LOOP_LAG_PROBE_S: a loop that falls behind (a long
    run's growing work, a blocking call) shows here before it shows in latencies. Until stop."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + LOOP_LAG_PROBE_S
        try:
            await asyncio.wait_for(stop.wait(), LOOP_LAG_PROBE_S)
        except TimeoutError:
            metrics.loop_lag.set(max(0.0, loop.time() - due))


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    stop = asyncio.Event()
    wallet = state.wallet_settings
    tasks = [
        asyncio.create_task(
            run_resolver(state.payouts, wallet.resolver_interval_ms / 1000, stop), name="resolver"
        ),
        asyncio.create_task(
            run_reconciler(
                state.reconciler, state.metrics, interval_s=wallet.reconcile_interval_s, stop=stop
            ),
            name="reconciler",
        ),
        asyncio.create_task(probe_loop_lag(state.metrics, stop), name="loop-lag"),
    ]
    yield
    stop.set()
    _, still = await asyncio.wait(tasks, timeout=2.0)
    for task in still:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
