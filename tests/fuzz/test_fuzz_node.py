"""Schemathesis fuzzes `lnchaos node` (the node mock alone) from its own description (GET
/openapi.json): no 5xx, every answer as described, and no money moved by a rejected request (what
the node sent, its fees, what it received, its payment counts).

Four cases in five carry the admin token and the node's macaroon; some carry one of the node's own
invoices, so the network admin route really pays. The streams and the fault settings are fuzzed
apart (test_fuzz_streams_and_faults.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fuzz_harness import ServerThread, Tally, negative_at, run_operations

from target.node.faults import FaultSettings
from target.node.node_app import NODE, NodeConfig, create_node_app
from target.node.openapi import NODE_OPENAPI, STREAM_PATHS

ADMIN_TOKEN = "fuzz-node-token"
MACAROON = "0201036c6e64"
INVOICES = 20
EXAMPLES = 20
EXAMPLES_LONG = 100


def fuzzed_here(path: str, method: str) -> bool:
    return path not in STREAM_PATHS and path != "/admin/faults"


class NodeFuzz:
    def __init__(self, server: ServerThread):
        self.server = server
        self.session = requests.Session()
        # The node's own invoices (LND AddInvoice), for the network to pay.
        self.invoices = []
        for i in range(INVOICES):
            answer = self.session.post(
                f"{server.url}/v1/invoices",
                json={"value_msat": str(2000 + i), "memo": "fuzz"},
                headers={"Grpc-Metadata-macaroon": MACAROON},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            self.invoices.append(answer.json()["payment_request"])
        self.tally = Tally()

    def prepare(self, case: Any, number: int) -> dict[str, str]:
        """What a negative case broke on purpose (its headers, body) is left as it is."""
        if number % 5 == 0 or negative_at(case, "header"):
            return {}
        body = case.body
        if isinstance(body, dict) and "payment_request" in body and number % 3 == 1:
            if not negative_at(case, "body"):
                body["payment_request"] = self.invoices[number % INVOICES]
        return {"X-Admin-Token": ADMIN_TOKEN, "Grpc-Metadata-macaroon": MACAROON}

    def fingerprint(self) -> Any:
        async def money(app: Any) -> Any:
            node = app[NODE]
            return (
                node.sent_msat,
                node.fees_msat,
                node.receiver.received_msat,
                node.receiver.received_count,
                sorted(node.counts.items()),
            )

        return self.server.on_app(money)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeFuzz]:
    config = NodeConfig(
        seed=5,
        admin_token=ADMIN_TOKEN,
        # one macaroon, not "any hex": a case whose macaroon Hypothesis generated (one in five
        # carries no credentials of ours) must be refused, and a generated string that happens
        # to be hex would otherwise pass as valid (schemathesis' ignored_auth then fails, on
        # whichever generated values a change of the case count brings)
        macaroon_hex=MACAROON,
        db_path=tmp_path / "node.sqlite",
        faults=FaultSettings(timeout_rate=0.0, failure_rate=0.0, latency_ms_median=0.5),
    )
    with ServerThread(lambda: create_node_app(config)) as server:
        yield NodeFuzz(server)


def run_fuzz(node: NodeFuzz, examples: int) -> Tally:
    run_operations(
        NODE_OPENAPI,
        only=fuzzed_here,
        base_url=node.server.url,
        tally=node.tally,
        max_examples=examples,
        prepare=node.prepare,
        fingerprint=node.fingerprint,
        session=node.session,
    )
    return node.tally


def test_node_serves_its_description(node: NodeFuzz) -> None:
    answer = node.session.get(f"{node.server.url}/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == NODE_OPENAPI
    routes = sorted(
        (route.method, route.resource.canonical)
        for route in node.server.app.router.routes()  # type: ignore[union-attr]
        if route.method not in ("HEAD", "*") and route.resource is not None  # not the catch-all
    )
    described = sorted(
        (method.upper(), path)
        for path, operations in NODE_OPENAPI["paths"].items()
        for method in operations
    )
    assert described == routes


def test_fuzz_node(node: NodeFuzz) -> None:
    tally = run_fuzz(node, EXAMPLES)
    print(f"node fuzz: {tally.cases} cases, statuses {sorted(tally.by_status.items())}")
    assert tally.cases >= 400, tally
    assert node.fingerprint()[3] >= 1, "no fuzzed case made the network pay an invoice"


@pytest.mark.fuzz
@pytest.mark.timeout(900)
def test_fuzz_node_long(node: NodeFuzz) -> None:
    tally = run_fuzz(node, EXAMPLES_LONG)
    print(f"node fuzz (long): {tally.cases} cases, statuses {sorted(tally.by_status.items())}")
    assert tally.cases >= 2500, tally
