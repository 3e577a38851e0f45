"""The routes fuzzed apart, on the target and on `lnchaos node` alike:

- the LND streams (SubscribeInvoices never ends by itself; SendPaymentV2 and TrackPaymentV2 end
  when the payment does): a refusal is checked against the description like any answer; a 200
  must be a JSON stream, and is closed at once instead of read to its end;
- the fault settings (`PUT /admin/faults`), from a copy of the description whose millisecond
  settings are bounded to BOUND_MS: a fuzzed 60 s stall or latency would otherwise eat the test's
  budget. Each accepted setting is then in force for one LND request, which must answer as
  described or fail as an injected fault (a reset or a stalled connection), within its timeout.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fuzz_harness import ServerThread, Tally, describe, negative_at, operations

from target.app import NODE as TARGET_NODE
from target.app import TargetConfig, create_app, target_openapi
from target.node.faults import FaultSettings
from target.node.node_app import NODE as NODE_NODE
from target.node.node_app import NodeConfig, create_node_app
from target.node.openapi import NODE_OPENAPI, STREAM_PATHS

ADMIN_TOKEN = "fuzz-apart-token"
MACAROON = "0201036c6e64"
BOUND_MS = 50.0
STREAM_TIMEOUT_S = (2.0, 3.0)  # connect, and the wait for the answer's head
EXAMPLES = 15
QUIET = FaultSettings(timeout_rate=0.0, failure_rate=0.0, latency_ms_median=0.5)


def _target(tmp_path: Path) -> tuple[Callable[[], Any], Any, dict[str, Any]]:
    config = TargetConfig(
        admin_token=ADMIN_TOKEN, db_path=tmp_path / "wallet.sqlite", faults=copy.copy(QUIET)
    )
    return (lambda: create_app(config)), TARGET_NODE, target_openapi()


def _node(tmp_path: Path) -> tuple[Callable[[], Any], Any, dict[str, Any]]:
    config = NodeConfig(
        admin_token=ADMIN_TOKEN, db_path=tmp_path / "node.sqlite", faults=copy.copy(QUIET)
    )
    return (lambda: create_node_app(config)), NODE_NODE, NODE_OPENAPI


@pytest.fixture(params=[_target, _node], ids=["target", "node"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any, Any]]:
    make_app, node_key, document = request.param(tmp_path)
    with ServerThread(make_app) as server:
        yield server, node_key, document


def bounded_faults(document: dict[str, Any]) -> dict[str, Any]:
    """The description with every *_ms fault setting sent at most BOUND_MS."""
    bounded = copy.deepcopy(document)
    put = bounded["paths"]["/admin/faults"]["put"]
    body = copy.deepcopy(put["requestBody"]["content"]["application/json"]["schema"])
    for name, prop in body["properties"].items():
        if name.endswith("_ms"):
            prop["maximum"] = BOUND_MS
            prop["default"] = min(prop.get("default", 0), BOUND_MS)
    put["requestBody"]["content"]["application/json"]["schema"] = body
    return bounded


def fuzz_each(
    document: dict[str, Any], only: Callable[[str, str], bool], one: Callable[[Any], None]
) -> list[str]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    failures: list[str] = []
    for operation in operations(document, only=only):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                one(case)

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to negate
            except (Exception, BaseExceptionGroup) as err:
                label = f"{operation.method.upper()} {operation.path} ({mode.value})"
                failures.append(f"{label}: {describe(err)}")
    return failures


def test_fuzz_streams(served: tuple[ServerThread, Any, dict[str, Any]]) -> None:
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    server, node_key, document = served
    session = requests.Session()
    invoices = [
        session.post(f"{server.url}/node/invoices", json={"amount_msat": 3000 + i}, timeout=10)
        .json()["payment_request"]
        for i in range(10)
    ]  # fmt: skip
    tally = Tally()

    def money() -> Any:
        async def read(app: Any) -> Any:
            node = app[node_key]
            return node.sent_msat, node.fees_msat, sorted(node.counts.items())

        return server.on_app(read)

    def one(case: Any) -> None:
        number = tally.cases
        quiet = number % 5 == 0 or negative_at(case, "header")
        headers = {} if quiet else {"Grpc-Metadata-macaroon": MACAROON}
        if isinstance(case.body, dict) and number % 3 == 1 and not negative_at(case, "body"):
            case.body["payment_request"] = invoices[number % len(invoices)]
        before = money()
        # requests itself, streaming: the case's own call would read the stream to its end.
        kwargs = case.as_transport_kwargs(base_url=server.url, headers=headers)
        response = session.request(**kwargs, timeout=STREAM_TIMEOUT_S, stream=True)
        try:
            tally.count(f"{case.method} {case.path}", response.status_code)
            if response.status_code == 200:
                assert response.headers["Content-Type"].startswith("application/json")
                return  # a stream: closed at once (SubscribeInvoices would never end)
            case.validate_response(
                response,
                checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                        response_schema_conformance, negative_data_rejection],
                headers=headers,
            )  # fmt: skip
            if 400 <= response.status_code < 500:
                assert money() == before, f"{case.path} answered {response.status_code}: moved"
        finally:
            response.close()

    failures = fuzz_each(document, lambda path, _m: path in STREAM_PATHS, one)
    assert not failures, "\n\n".join(failures)
    print(f"streams: {tally.cases} cases, statuses {sorted(tally.by_status.items())}")
    assert tally.cases >= 60, tally
    assert 200 in tally.by_status and 400 in tally.by_status, tally.by_status


def test_fuzz_fault_settings(served: tuple[ServerThread, Any, dict[str, Any]]) -> None:
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    server, _node_key, document = served
    session = requests.Session()
    tally = Tally()
    probes: dict[str, int] = {}

    def one(case: Any) -> None:
        number = tally.cases
        quiet = number % 5 == 0 or negative_at(case, "header")
        headers = {} if quiet else {"X-Admin-Token": ADMIN_TOKEN}
        response = case.call(base_url=server.url, session=session, headers=headers, timeout=5)
        tally.count(f"{case.method} {case.path}", response.status_code)
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance, negative_data_rejection],
            headers=headers,
        )  # fmt: skip
        if case.method == "PUT" and response.status_code == 200:
            # The new settings in force for one LND request: as described, or an injected fault.
            try:
                probe = requests.get(
                    f"{server.url}/v1/getinfo",
                    headers={"Grpc-Metadata-macaroon": MACAROON},
                    timeout=2 + 2 * BOUND_MS / 1000,
                )
                assert probe.status_code in (200, 503), probe.text
                probes[str(probe.status_code)] = probes.get(str(probe.status_code), 0) + 1
            except requests.ConnectionError:
                probes["connection_error"] = probes.get("connection_error", 0) + 1

    failures = fuzz_each(bounded_faults(document), lambda path, _m: path == "/admin/faults", one)
    session.put(
        f"{server.url}/admin/faults",
        json=FaultSettings().as_dict() | {"http_error_rate": 0.0},
        headers={"X-Admin-Token": ADMIN_TOKEN},
        timeout=5,
    )
    assert not failures, "\n\n".join(failures)
    print(f"faults: {tally.cases} cases, {sorted(tally.by_status.items())}, probes {probes}")
    assert tally.cases >= 50, tally
    assert tally.by_status.get(200, 0) >= 5 and tally.by_status.get(400, 0) >= 3, tally
