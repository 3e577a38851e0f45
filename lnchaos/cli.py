"""`lnchaos <command>`: one entry point; each command lives in a module of its own.

Every command's --help shows each option's default and choices, and what its exit codes mean.
"""

from __future__ import annotations

import argparse
import sys

from target.cli import add_target_options, run_target
from target.node.node_app import add_node_options, run_node

from . import adapter_check, bench, check, compare, soak

EXIT_CODES = {
    "target": """exit codes:
  0   stopped by SIGTERM or SIGINT (within 5 s)
  1   refused to start: e.g. --bind beyond loopback without --admin-token, a port in use
  2   a usage error (an unknown option, a value of the wrong type or not among the choices)
  74  its journal (SQLite) failed to commit: it stops rather than serve from memory""",
    "node": """exit codes:
  0   stopped by SIGTERM or SIGINT
  1   refused to start: e.g. --bind beyond loopback without --admin-token, a port in use
  2   a usage error (an unknown option, a value of the wrong type or not among the choices)""",
    "compare": compare.EXIT_CODES,
    "soak": soak.EXIT_CODES,
    "adapter-check": adapter_check.EXIT_CODES,
    "check": check.EXIT_CODES,
    "convert": check.CONVERT_EXIT_CODES,
    "bench": """exit codes:
  0   measured (the figures are printed and written to <report-dir>/bench.json, or
      bench-instructions.json with --instructions)
  1   --memory-run found the target's memory not flat, or a setting out of range
  2   a usage error (an unknown option, a value of the wrong type)
  3   --instructions without valgrind on this machine""",
}
TOP_EXIT_CODES = """exit codes: those of the command (lnchaos COMMAND --help); 2 for a usage error.
lnchaos compare: 0 only when fix on proved itself and fix off reproduced the incident."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The default after every option's help (unless the help tells it already, or there is
    none: a flag, an unset option); the epilog (exit codes) as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if (
            "default" in help_text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
        ):
            return help_text
        return f"{help_text} (default: %(default)s)"


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """An option without help would hide its default: give it its name as help."""
    for action in parser._actions:  # argparse has no public list of a parser's options
        if action.help is None and action.option_strings and action.dest != "help":
            action.help = action.dest.replace("_", " ")


def command(
    commands: argparse._SubParsersAction, name: str, help_text: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=EXIT_CODES[name],
        formatter_class=HelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lnchaos", description=__doc__, epilog=TOP_EXIT_CODES, formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    target = command(commands, "target", "serve the wallet payout API and the node mock")
    add_target_options(target)
    target.set_defaults(run=run_target)
    node = command(
        commands, "node", "serve the node mock alone: its network, faults and LND's REST API"
    )
    add_node_options(node)
    node.set_defaults(run=run_node)
    comparison = command(
        commands, "compare", "run the suite against fix off, rollback and on; write one report"
    )
    compare.add_options(comparison)
    comparison.set_defaults(run=compare.main)
    benchmark = command(
        commands, "bench", "measure the floor, the target and the suite on this machine"
    )
    bench.add_options(benchmark)
    benchmark.set_defaults(run=bench.main)
    soaking = command(
        commands,
        "soak",
        "a long rehearsal: spike cycles, every traffic class, crashes and node faults at "
        "saturation; samples memory, CPU, loop lag and the verdict's cost (soak.json)",
    )
    soak.add_options(soaking)
    soaking.set_defaults(run=soak.main)
    checking = command(
        commands, "adapter-check", "run a wallet adapter's every call against a service"
    )
    adapter_check.add_options(checking)
    checking.set_defaults(run=adapter_check.main)
    judge = command(commands, "check", "judge a recorded run again, offline, from its history")
    check.add_options(judge)
    judge.set_defaults(run=check.main)
    conversion = command(
        commands, "convert", "turn LND's ListPayments and a payouts CSV into a history to check"
    )
    check.add_convert_options(conversion)
    conversion.set_defaults(run=check.convert_main)
    for sub in (target, node, comparison, benchmark, soaking, checking, judge, conversion):
        show_defaults(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
