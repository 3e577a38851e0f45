"""Serve the target with one mutant patched in: `python tests/mutants/launch.py NAME [--] ARGS`.

NAME is a mutant of mutant_patches.MUTANTS, or a control (`control`: the target as it is). ARGS
go to the target's own CLI (`target.cli.main`), e.g. `--port 0 --fix on --admin-token T`; it
prints its `listening on URL` line and serves until SIGTERM. Exit code 97: a patch target is
missing (the patch table needs re-aiming after a refactor); 2: an unknown mutant.
"""

from __future__ import annotations

import sys

from mutant_patches import CONTROLS, MUTANTS, MutantTargetMissing, apply, value

EXIT_TARGET_MISSING = 97
EXIT_USAGE = 2


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*CONTROLS, *MUTANTS):
        names = ", ".join([*CONTROLS, *MUTANTS])
        print(f"usage: launch.py NAME [--] TARGET_ARGS...; NAME one of: {names}", file=sys.stderr)
        return EXIT_USAGE
    name, args = argv[0], argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    try:
        apply(name)
        target_main = value("cli_main")
    except MutantTargetMissing as err:
        print(f"mutant {name}: patch target missing: {err}", file=sys.stderr, flush=True)
        return EXIT_TARGET_MISSING
    print(f"mutant {name} applied", flush=True)
    return int(target_main(args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
