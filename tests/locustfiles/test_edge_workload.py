"""The edge workload's options and draws (locustfiles/edge_workload.py), and the node's part
(target/node/faults.py): each option reaches its setting, the amounts span their range, a payout
sized near the balance leaves less than one fee reserve, the node's new faults are validated."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from locustfiles import edge_workload
from locustfiles.wallets import amount_max_msat
from locustfiles.wallets.lnbits import LNbitsWalletApi
from target.common.errors import ApiError
from target.node.faults import FaultSettings


class Recorder:
    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}

    def add_argument(self, flag: str, **kwargs: Any) -> None:
        self.options[flag.removeprefix("--").replace("-", "_")] = kwargs


def test_every_option_reaches_its_setting_with_its_default_in_help() -> None:
    parser = Recorder()
    edge_workload.add_arguments(parser)
    fields = set(edge_workload.EdgeSettings.__dataclass_fields__)
    assert set(parser.options) == fields  # each option's dest is a field of the settings
    for dest, kwargs in parser.options.items():
        assert f"default {kwargs['default']:g}" in kwargs["help"], dest
    given = {dest: kwargs["type"]("0.5") if dest.endswith(("share", "rate")) else None
             for dest, kwargs in parser.options.items()}  # fmt: skip
    settings = edge_workload.settings_from(SimpleNamespace(**given))
    for dest, value in given.items():
        expected = value if value is not None else getattr(edge_workload.EdgeSettings(), dest)
        assert getattr(settings, dest) == expected, dest


def test_amounts_span_orders_of_magnitude_within_their_bounds() -> None:
    edge = edge_workload.EdgeSettings(edge_amount_share=1.0)
    rng = random.Random(3)
    amounts = [edge_workload.draw_amount_msat(rng, edge) for _ in range(20_000)]
    assert min(amounts) >= 1000 and max(amounts) <= edge.edge_amount_max_msat
    assert all(amount % 1000 == 0 for amount in amounts)  # whole sats
    decades = {len(str(amount)) for amount in amounts}
    assert decades >= set(range(4, 13))  # 1 sat ... 10 BTC, every decade met
    again = random.Random(3)
    assert amounts[:50] == [edge_workload.draw_amount_msat(again, edge) for _ in range(50)]


def test_a_payout_near_the_balance_leaves_less_than_one_reserve() -> None:
    for balance_msat in (50_000, 1_000_000_000, 4 * 10**12 + 12_345):
        amount_msat = edge_workload.near_balance_amount_msat(balance_msat)
        reserve_msat = edge_workload.reserve_needed_msat(amount_msat) - amount_msat
        left_msat = balance_msat - amount_msat - reserve_msat
        assert 0 <= left_msat < reserve_msat, (balance_msat, amount_msat, left_msat)
    assert edge_workload.near_balance_amount_msat(3_000) == 0  # too small for one


def test_the_nodes_edge_faults_are_validated() -> None:
    assert FaultSettings().updated({"fee_at_limit_rate": 0.5, "long_hold_ms": 20_000.0})
    for bad in ({"fee_at_limit_rate": 1.5}, {"long_hold_ms": 70_000.0},
                {"fee_at_limit_rate": 0.6, "fee_to_limit_rate": 0.6}):  # fmt: skip
        with pytest.raises(ApiError):
            FaultSettings().updated(bad)


def test_coverage_is_shown_in_the_tab_rows_the_html_the_csv_and_compare() -> None:
    from lnchaos import report as compare_report
    from locustfiles import consistency_view

    section = {
        "fee_at_limit": {"what": "a fee at the limit", "enabled": True, "count": 0,
                         "expected": 20.0, "required": True, "witness": None},
        "large_payout": {"what": "a large payout", "enabled": True, "count": 3,
                         "expected": 4.2, "required": False, "witness": {"payout_id": "p9"}},
        "across_crash": {"what": "a payout pending across a crash", "enabled": False,
                         "count": 0, "expected": None, "required": False, "witness": None},
    }  # fmt: skip
    rows = {row["name"]: row for row in consistency_view.coverage_rows({"coverage": section})}
    assert rows["fee_at_limit"]["state"] == "NOT REACHED"
    assert (rows["large_payout"]["state"], rows["large_payout"]["witness"]) == ("reached", "p9")
    assert rows["across_crash"]["state"] == "not enabled"
    report = {"coverage": section, "verdict": "fail", "exit_code": 4, "reason": "coverage"}
    assert 'id="lnchaos-coverage"' in consistency_view.html_section(report)
    csv_rows = [r for r in consistency_view.csv_rows(report) if r["record"] == "coverage"]
    assert [r["name"] for r in csv_rows] == list(section)
    compare_row = {"coverage": {"fee_at_limit": 0, "large_payout": 3}}
    assert compare_report.cell(compare_row, "coverage") == "1 / 2 (fee_at_limit)"


def test_the_edge_stays_within_a_services_largest_amount():
    """An adapter's `amount_max_msat` (LNbits: 10M sats an invoice) bounds the largest payout,
    so the funding of FUNDING_PAYOUTS of them, with reserves, fits in one of its invoices (LNbits
    refused every funding invoice of the default 10 BTC edge: its runs verified nothing)."""
    edge = edge_workload.EdgeSettings()
    assert edge_workload.within(edge, None) is edge
    lnbits_max_msat = LNbitsWalletApi.amount_max_msat
    capped = edge_workload.within(edge, lnbits_max_msat)
    assert capped.edge_amount_max_msat == lnbits_max_msat // (edge_workload.FUNDING_PAYOUTS + 1)
    assert edge_workload.funding_msat(capped, 1_000_000) <= lnbits_max_msat
    small = edge_workload.EdgeSettings(edge_amount_max_msat=1_000_000)
    assert edge_workload.within(small, lnbits_max_msat) is small  # already within: unchanged
    assert amount_max_msat(SimpleNamespace(wallet_api="lnbits")) == lnbits_max_msat
    assert amount_max_msat(SimpleNamespace(wallet_api="lnchaos")) is None
