"""The judge: a recorded history in, findings with witnesses and a verdict out.

No Locust, gevent, aiohttp or HTTP library is imported anywhere in this package (a test checks
it in a fresh interpreter): the live checks of a Locust run (locustfiles/) and `lnchaos check`
(offline, on a recorded history) call the same functions, so their verdicts cannot drift.

- kinds.py: the vocabulary (check names, inconsistency kinds, outcomes, exit codes), once;
- rules.py: one payout's money (a payment's cost by the node's truth, the kind of a wrong
  balance, the final audit's judgement);
- rounds.py: the traffic classes' rounds (shared invoice, drain, retry, edge), each judged
  from the facts its check record carries;
- tally.py: one process's record of a run and the sum of many;
- audit.py: the master's final audit of the payouts no payer could judge;
- reconciliation.py: the target's reconciliation combined with the checks' and the audit's
  findings, each payout counted once;
- workers.py: the workers of a distributed run, and those lost mid-run;
- verdict.py: the run judged, the exit code, consistency.json (its schema, the kinds and the exit
  codes are that module's docstring);
- history.py: the recorded history (JSON Lines, schema in docs/history.md): writing it bounded,
  reading it, and the fold of its records into a tally that the live run and `lnchaos check`
  both use;
- offline.py: `lnchaos check`: a history judged again, with each finding's witness;
- export.py: a production system's records (LND ListPayments + a payouts CSV) as a history.
"""

from lnchaos.checker.audit import *  # noqa: F403
from lnchaos.checker.kinds import *  # noqa: F403
from lnchaos.checker.reconciliation import *  # noqa: F403
from lnchaos.checker.rules import *  # noqa: F403
from lnchaos.checker.tally import *  # noqa: F403
from lnchaos.checker.verdict import *  # noqa: F403
from lnchaos.checker.workers import *  # noqa: F403
