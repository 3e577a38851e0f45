"""Put on PYTHONPATH by the crash runs (tests/mutants/mutant_runs.py): patches the mutant named
by $LNCHAOS_MUTANT into a process started as `python -m target`, which is how the suite starts
its embedded target, at the first start and at every restart after a crash. Any other process
(Locust, its workers) is left alone. A patch target that is missing stops the target with exit
code 97 (as launch.py does), so a run never passes against an unpatched target."""

import os
import sys
from pathlib import Path

_NAME = os.environ.get("LNCHAOS_MUTANT")

if _NAME and sys.orig_argv[1:3] == ["-m", "target"]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/mutants
    from mutant_patches import MutantTargetMissing, apply

    try:
        apply(_NAME)
    except MutantTargetMissing as err:
        print(f"mutant {_NAME}: patch target missing: {err}", file=sys.stderr, flush=True)
        raise SystemExit(97) from None
    print(f"mutant {_NAME} applied", file=sys.stderr, flush=True)
