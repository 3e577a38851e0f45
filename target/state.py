"""What one running target holds, under one typed app key."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .config import FaultSettings, TargetConfig
from .journal import Journal
from .ledger import Ledger
from .metrics import Metrics
from .node.client import NodeClient
from .node.network import LightningNode
from .payouts import PayoutService


@dataclass
class TargetState:
    config: TargetConfig
    metrics: Metrics
    ledger: Ledger
    node: LightningNode
    node_journal: Journal
    node_client: NodeClient
    payouts: PayoutService

    def node_journal_ok(self) -> bool:
        return self.node_journal.failed is None

    def set_faults(self, faults: FaultSettings) -> None:
        faults.validate()
        self.node.faults = faults
        self.config.faults = faults


STATE: web.AppKey[TargetState] = web.AppKey("lnchaos_state", TargetState)
