"""`lnchaos <command>`: one entry point; each command lives in a module of its own."""

from __future__ import annotations

import argparse
import sys

from target.cli import add_target_options, run_target
from target.node.node_app import add_node_options, run_node

from . import bench, compare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lnchaos", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    target = commands.add_parser("target", help="serve the wallet payout API and the node mock")
    add_target_options(target)
    target.set_defaults(run=run_target)
    node = commands.add_parser(
        "node", help="serve the node mock alone: its network, faults and LND's REST API"
    )
    add_node_options(node)
    node.set_defaults(run=run_node)
    comparison = commands.add_parser(
        "compare", help="run the suite against fix off, rollback and on; write one report"
    )
    compare.add_options(comparison)
    comparison.set_defaults(run=compare.main)
    benchmark = commands.add_parser(
        "bench", help="measure the floor, the target and the suite on this machine"
    )
    bench.add_options(benchmark)
    benchmark.set_defaults(run=bench.main)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
