"""The traffic classes (locustfiles/traffic.py) and `--traffic-mix` (options.py).

The mutant that proves the drain check's teeth (a funds check that misses the reservations still
queued, so parallel payouts overdraw a wallet) is `funds_check_misses_queued_payouts` in
tests/mutants/mutant_patches.py, run with the `mutants` marker: exit 3 and `overdrawn`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from locustfiles import checker, options, traffic
from locustfiles.users import PayerUser

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "locustfiles" / "lnchaos_suite.py"

RUN = ["--headless", "-t", "10s", "-u", "12", "-r", "12", "--only-summary"]
EXIT_TIMEOUT_S = 60.0  # 10 s of load + start, the final wait, shutdown


@pytest.mark.parametrize(
    ("text", "mix"),
    [
        ("shared=1,drain=1", {"shared": 1, "drain": 1}),
        (" drain = 3 ", {"drain": 3}),
        ("shared=2,drain=0", {"shared": 2}),  # weight 0: off
        ("none", {}),
        ("NONE", {}),
        ("", {}),
    ],
)
def test_traffic_mix_parses(text, mix):
    assert options.parse_traffic_mix(text) == mix


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("retry=1", "NAME one of shared, drain"),
        ("shared", "not NAME=WEIGHT"),
        ("shared=1,shared=2", "shared given twice"),
        ("drain=x", "must be an integer"),
        ("drain=-1", "within [0, 100]"),
        ("drain=101", "within [0, 100]"),
    ],
)
def test_traffic_mix_refuses_bad_input(text, says):
    with pytest.raises(ValueError, match="--traffic-mix") as err:
        options.parse_traffic_mix(text)
    assert says in str(err.value)


def test_settings_carry_the_mix_and_default_to_both_classes():
    assert options.settings_from(SimpleNamespace()).traffic_mix == (("drain", 1), ("shared", 1))
    settings = options.settings_from(SimpleNamespace(traffic_mix={"drain": 4}))
    assert settings.traffic_mix == (("drain", 4),)
    assert options.settings_from(SimpleNamespace(traffic_mix="none")).traffic_mix == ()


@pytest.mark.parametrize(
    ("mix", "checks_on", "classes"),
    [
        (
            {"shared": 1, "drain": 2},
            True,
            [PayerUser, traffic.DrainUser, traffic.SharedInvoiceUser],
        ),
        ({"drain": 1}, True, [PayerUser, traffic.DrainUser]),
        ({}, True, [PayerUser]),
        ({"shared": 1, "drain": 1}, False, [PayerUser]),  # --checks off: the payers alone
    ],
)
def test_apply_mix_sets_the_classes_and_weights(mix, checks_on, classes):
    all_classes = [PayerUser, traffic.SharedInvoiceUser, traffic.DrainUser]
    environment = SimpleNamespace(user_classes=list(all_classes))
    same_list = environment.user_classes
    traffic.apply_mix(environment, mix, checks_on=checks_on)
    assert environment.user_classes is same_list  # changed in place: the runner holds it
    assert environment.user_classes == classes
    assert PayerUser.weight == options.PAYER_WEIGHT
    if checks_on:
        assert traffic.DrainUser.weight == mix.get("drain", 0)
        assert traffic.SharedInvoiceUser.weight == mix.get("shared", 0)


def test_a_bad_mix_is_a_usage_error_before_anything_starts():
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(SUITE), "--headless", "--traffic-mix", "x=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--traffic-mix" in done.stderr and "NAME=WEIGHT" in done.stderr


def test_overdrawn_is_a_documented_kind():
    doc = checker.__doc__ or ""
    for name in (checker.OVERDRAWN, checker.SHARED_INVOICE, checker.DRAIN):
        assert f"`{name}`" in doc, name


def test_fix_on_run_with_both_classes_passes(locust_run):
    run = locust_run([*RUN, "--fix", "on", "--traffic-mix", "shared=1,drain=1"])
    code = run.finish(EXIT_TIMEOUT_S)
    report = run.report()
    assert code == 0, run.log_tail()
    by_name = report["checks"]["by_name"]
    for name in (checker.SHARED_INVOICE, checker.DRAIN):
        assert by_name[name]["passed"] > 0 and by_name[name]["failed"] == 0, (name, by_name)
    assert report["inconsistencies_total"] == 0
