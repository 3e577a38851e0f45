"""`lnchaos check REPORT_DIR`: a recorded run judged again offline (lnchaos/checker/offline.py).

No network and no clock: the history in REPORT_DIR/history/ (docs/history.md) is folded with
the live run's own functions, so the verdict, the exit code and the counts per kind are the live
run's; each finding's examples carry their witness (the records of that payment and wallet).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lnchaos.checker.export import ExportError, convert
from lnchaos.checker.offline import HistoryError, judge_dir
from lnchaos.checker.verdict import write_report

EXIT_BAD_HISTORY = 65  # EX_DATAERR: no history, or one that is not one (never a verdict's code)
EXIT_CODES = """exit codes (the run's verdict, as the live run decided it):
  0   pass
  1   Locust's own failure, or a worker lost mid-run
  2   Locust's own: an unhandled exception in a greenlet or event handler
  3   inconsistencies over the threshold, or payouts left out of the final audit
  4   nothing proven: nothing verified, no timeout resolved, no payout succeeded; or a history
      truncated at its bound (records are missing)
  5   the target failed
  65  no history in REPORT_DIR, or a malformed one (not JSON Lines, no header, never ended)"""


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "report_dir", type=Path, help="a run's report folder (or its history/ folder)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write the consistency document (JSON) there"
    )


def main(args: argparse.Namespace) -> int:
    try:
        report = judge_dir(args.report_dir)
    except HistoryError as err:
        print(f"lnchaos check: {err}", file=sys.stderr)
        return EXIT_BAD_HISTORY
    if args.out is not None:
        write_report(args.out, report)
    counts = {kind: entry["count"] for kind, entry in report["inconsistencies"].items()}
    print(f"verdict {report['verdict']} (exit code {report['exit_code']}): {report['reason']}")
    print(f"inconsistencies by kind: {json.dumps(counts, sort_keys=True)}")
    return int(report["exit_code"])


CONVERT_EXIT_CODES = """exit codes:
  0   the history written to OUT_DIR/history/ (judge it with lnchaos check OUT_DIR)
  2   a usage error
  65  an export that cannot be read (its file, line and what is wrong are printed)"""


def add_convert_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lnd-payments", type=Path, required=True, help="LND's ListPayments answer (JSON)"
    )
    parser.add_argument(
        "--payouts",
        type=Path,
        required=True,
        help="the service's payouts (CSV: payment_hash, amount_msat, fee_msat, status, "
        "charged_msat; optional payout_id, wallet_id, created_unix)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the report folder to write")


def convert_main(args: argparse.Namespace) -> int:
    try:
        folder = convert(args.lnd_payments, args.payouts, args.out)
    except ExportError as err:
        print(f"lnchaos convert: {err}", file=sys.stderr)
        return EXIT_BAD_HISTORY
    print(f"history written to {folder}; judge it with: lnchaos check {args.out}")
    return 0
