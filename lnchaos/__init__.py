"""The `lnchaos` command: orchestration (target, compare, bench) around the target and the suite."""
