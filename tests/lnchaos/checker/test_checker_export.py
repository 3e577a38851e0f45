"""The production-export converter: LND's ListPayments and a payouts CSV, judged by lnchaos check
with the chaos runs' rules. The sample (export_sample/) plants one charged-not-paid payout (po-3:
charged, the node's payment failed) and one paid-not-charged (po-4: the node paid, the service
says failed and charged nothing); the rest are right, and po-5 is still in flight."""

from __future__ import annotations

from pathlib import Path

import pytest

from lnchaos import cli
from lnchaos.checker import CHARGED_NOT_PAID, EXIT_INCONSISTENT, PAID_NOT_CHARGED
from lnchaos.checker.export import ExportError, convert
from lnchaos.checker.offline import judge_dir

SAMPLE = Path(__file__).resolve().parent / "export_sample"


def test_the_sample_export_is_judged_with_both_planted_findings_and_their_witnesses(tmp_path):
    convert(SAMPLE / "lnd_payments.json", SAMPLE / "payouts.csv", tmp_path)
    report = judge_dir(tmp_path)
    assert report["exit_code"] == EXIT_INCONSISTENT, report["reason"]
    found = {kind: entry["count"] for kind, entry in report["inconsistencies"].items()}
    assert found == {CHARGED_NOT_PAID: 1, PAID_NOT_CHARGED: 1}
    for kind, payout_id, node_status in ((CHARGED_NOT_PAID, "po-3", "failed"),
                                         (PAID_NOT_CHARGED, "po-4", "succeeded")):  # fmt: skip
        example = report["inconsistencies"][kind]["examples"][0]
        assert example["payout_id"] == payout_id
        witness = example["witness"]
        assert [r["type"] for r in witness] == ["invoke", "complete", "node_read", "check"]
        assert {r["payout_id"] for r in witness if "payout_id" in r} == {payout_id}
        assert witness[2]["status"] == node_status  # the node's truth that shows it
    assert report["payouts_verified"] == 5  # po-5 in flight: reported, not judged
    assert report["timeouts"]["left_to_reconciliation"] == 1


def test_an_unrecorded_payment_of_the_node_is_paid_not_charged(tmp_path):
    rows = (SAMPLE / "payouts.csv").read_text().splitlines()
    payouts = tmp_path / "payouts.csv"
    payouts.write_text("\n".join(r for r in rows if not r.startswith("po-6")) + "\n")
    convert(SAMPLE / "lnd_payments.json", payouts, tmp_path / "out")
    report = judge_dir(tmp_path / "out")
    assert report["inconsistencies"][PAID_NOT_CHARGED]["count"] == 2


def test_the_commands_convert_then_check(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["convert", "--lnd-payments", str(SAMPLE / "lnd_payments.json"),
            "--payouts", str(SAMPLE / "payouts.csv"), "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    assert cli.main(["check", str(out), "--out", str(tmp_path / "c.json")]) == EXIT_INCONSISTENT
    assert (tmp_path / "c.json").exists()
    assert '"charged_not_paid": 1' in capsys.readouterr().out


def test_a_payouts_csv_without_its_columns_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("payment_hash,amount_msat\nab,1\n")
    with pytest.raises(ExportError, match="charged_msat"):
        convert(SAMPLE / "lnd_payments.json", bad, tmp_path / "out")
