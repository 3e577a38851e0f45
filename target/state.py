"""What one running target's wallet holds, under one typed app key. The node it pays through is
reached only through `node_client`; the two callables below are the node's answers the wallet's
health and reconciliation routes show, wired by the app factory (target/app.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .config import FixMode, WalletSettings
from .ledger import Ledger
from .metrics import Metrics
from .node.client import NodeClient, TruthReader
from .payouts import PayoutService
from .reconcile import Reconciler


@dataclass
class TargetState:
    admin_token: str
    wallet_settings: WalletSettings
    metrics: Metrics
    ledger: Ledger
    node_client: NodeClient
    # What reconciliation reads the node's truth through: the node's own records when it runs in
    # this process (NodeTruth), never the client the wallet pays with; the client for a remote node.
    node_truth: TruthReader
    payouts: PayoutService
    node_ok: Callable[[], bool]  # the node's journal is writing
    node_totals: Callable[[], Awaitable[dict[str, Any]]]  # the node's own counts
    reconciler: Reconciler  # incremental: the background job's and the admin route's

    @property
    def fix(self) -> FixMode:
        return self.payouts.fix


STATE: web.AppKey[TargetState] = web.AppKey("lnchaos_state", TargetState)
