"""`lnchaos target`: the options of the target, and its start."""

from __future__ import annotations

import argparse
from pathlib import Path

from .app import TargetConfig, create_app
from .common.errors import ApiError
from .common.server import LOOPBACK, check_bind, run_app
from .config import FixMode, WalletSettings
from .node.faults import add_fault_options, faults_from


def add_target_options(parser: argparse.ArgumentParser) -> None:
    wallet = WalletSettings()
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--bind", default=LOOPBACK,
        help="IP address to listen on; anything but loopback needs --admin-token",
    )  # fmt: skip
    parser.add_argument("--db", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--fix", choices=[m.value for m in FixMode], default="on")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--admin-token", default=None,
        help="generated and printed if not given (loopback only: a --bind beyond it needs one)",
    )  # fmt: skip
    parser.add_argument("--node-timeout-ms", type=int, default=wallet.node_timeout_ms)
    parser.add_argument("--resolver-interval-ms", type=int, default=wallet.resolver_interval_ms)
    parser.add_argument("--reconcile-interval-s", type=float, default=wallet.reconcile_interval_s)
    parser.add_argument("--stuck-after-s", type=float, default=wallet.stuck_after_s)
    parser.add_argument("--fee-reserve-base-msat", type=int, default=wallet.fee_reserve_base_msat)
    parser.add_argument("--fee-reserve-ppm", type=int, default=wallet.fee_reserve_ppm)
    parser.add_argument(
        "--ledger-batch-max", type=int, default=TargetConfig.ledger_batch_max,
        help="ledger writes per transaction (1 turns group commit off)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--node-url", default=None,
        help="pay through this node's LND REST API (e.g. `lnchaos node`) instead of the local mock",
    )  # fmt: skip
    parser.add_argument("--macaroon", default=None, help="hex macaroon sent to --node-url")
    add_fault_options(parser)


def config_from(args: argparse.Namespace) -> TargetConfig:
    if not 0 <= args.port <= 65535:
        raise SystemExit("--port must be within 0..65535")
    check_bind(args.bind, args.admin_token)
    if args.node_timeout_ms <= 0 or args.ledger_batch_max < 1:
        raise SystemExit("--node-timeout-ms and --ledger-batch-max must be positive")
    wallet = WalletSettings(
        node_timeout_ms=args.node_timeout_ms,
        fee_reserve_base_msat=args.fee_reserve_base_msat,
        fee_reserve_ppm=args.fee_reserve_ppm,
        resolver_interval_ms=args.resolver_interval_ms,
        reconcile_interval_s=args.reconcile_interval_s,
        stuck_after_s=args.stuck_after_s,
    )
    faults = faults_from(args)
    try:
        faults.validate()
    except ApiError as err:
        raise SystemExit(f"invalid fault setting: {err.message}") from None
    return TargetConfig(
        fix=FixMode(args.fix),
        seed=args.seed,
        admin_token=args.admin_token or "",
        db_path=args.db,
        faults=faults,
        wallet=wallet,
        ledger_batch_max=args.ledger_batch_max,
        node_url=args.node_url,
        node_macaroon_hex=args.macaroon,
    )


def run_target(args: argparse.Namespace) -> int:
    config = config_from(args)
    return run_app(
        create_app,
        config,
        port=args.port,
        name="lnchaos target",
        log_level=args.log_level,
        host=args.bind,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m target", description=__doc__)
    add_target_options(parser)
    return run_target(parser.parse_args(argv))
