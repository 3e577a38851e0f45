"""An adapter from outside the project: ACME's package (acme_payouts/), installed into a folder
of the test's own, is found by its entry point and by `package.module:Class`, and drives a run
the verdict judges (the embedded target's fix off loses money through it: exit 3)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from adapters_harness import run_locust

from locustfiles.wallets import registry

# the whole module under the marker: its runs install a package and start nodes and
# services, and in the default run they left the distributed runs after them unable to connect
pytestmark = pytest.mark.adapters

SPEC = "acme_payouts.adapter:AcmeWalletApi"
RUN = ["--headless", "-t", "10s", "-u", "4", "-r", "4", "--seed", "7", "--only-summary"]
RUN_TIMEOUT_S = 90.0


def test_the_installed_package_registers_its_adapter(with_site: Path) -> None:
    names = registry.installed()
    assert names["acme"] == SPEC
    assert list(names)[: len(registry.BUILT_IN)] == list(registry.BUILT_IN)  # built-in first
    adapter = registry.load("acme")
    assert adapter is registry.load(SPEC)
    assert adapter.__module__ == "acme_payouts.adapter"
    assert registry.contract_problem(adapter) is None
    choices = registry.choices()
    assert "acme" in choices and SPEC in choices and "nope" not in choices
    assert list(choices) == list(names)  # what the web UI's form lists


def test_names_that_are_no_adapter_are_refused_with_why(with_site: Path) -> None:
    with pytest.raises(registry.AdapterError, match="no such adapter.*acme"):
        registry.load("acmee")
    with pytest.raises(registry.AdapterError, match="cannot import"):
        registry.load("acme_nothing.adapter:X")
    with pytest.raises(registry.AdapterError, match="has no Nope"):
        registry.load("acme_payouts.adapter:Nope")
    with pytest.raises(registry.AdapterError, match="written for contract None"):
        registry.load("locustfiles.wallet_client:WalletClient")  # no contract declared


def _acme_requests(stats_csv: Path) -> int:
    with open(stats_csv) as f:
        rows = [row for row in csv.DictReader(f) if row["Name"].startswith("acme pay")]
    return sum(int(row["Request Count"]) for row in rows)


@pytest.mark.adapters
def test_a_run_by_entry_point_name_catches_the_money_lost_through_it(
    with_site: Path, tmp_path: Path
) -> None:
    out = tmp_path / "by-name"
    args = [*RUN, "--wallet-api", "acme", "--fix", "off", "--shape", "spike"]
    code, report, log = run_locust([*args, "--csv", str(out / "stats")], out, RUN_TIMEOUT_S)
    assert code == 3, log
    assert report["wallet_api"]["name"] == "acme"
    assert report["wallet_api"]["adapter"] == SPEC
    assert report["inconsistencies"]["charged_not_paid"]["count"] > 0
    assert _acme_requests(out / "stats_stats.csv") > 0, "the payers did not pay through ACME"


@pytest.mark.adapters
def test_a_run_by_module_and_class_passes_a_correct_service(
    with_site: Path, tmp_path: Path
) -> None:
    out = tmp_path / "by-spec"
    args = [*RUN, "--wallet-api", SPEC, "--fix", "on"]
    code, report, log = run_locust([*args, "--csv", str(out / "stats")], out, RUN_TIMEOUT_S)
    assert code == 0, log
    assert report["verdict"] == "pass"
    assert report["wallet_api"]["adapter"] == SPEC
    assert report["payouts_verified"] > 0
    assert _acme_requests(out / "stats_stats.csv") > 0, "the payers did not pay through ACME"
