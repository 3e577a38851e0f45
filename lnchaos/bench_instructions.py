"""`lnchaos bench --instructions`: the work of the target and of the floor per payout flow, in
instructions counted by valgrind (callgrind): exact where this machine's timing is not.

On a shared 2-core machine the CPU per request of two identical bench runs differs by up to
15 %, so a change worth 1-3 % cannot be told apart by timing. An instruction count can: each
server runs under callgrind and serves `flows` payout flows (the bench driver's three requests:
an invoice, a payout, its status; against the floor, the same methods and body sizes on /ping),
`concurrency` at once, from a client in this process; a second run of the same server serves
none; the difference over `flows` is the work of a flow without start and stop. Runs of one tree
agree within about 0.5 % at 8 at once (group commits batch a little differently each run) and
within 0.05 % one at a time.

Instructions are not time: a cache miss or a system call costs more than its count, and the
kernel's share is not counted at all. The bench's CPU per request stays the measure of issue
14's targets; this is the measure of a change's effect, before and after, in one command.
Periodic work is off in these runs (the reconciliation every hour, not every 5 s): under
valgrind a run takes fifty times longer, and work paced by the clock would be charged to the
flows fifty times over.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from target.common.child import ChildServer

from . import bench
from .bench import ROOT, floor_command

# The bench's own target (bench.target_command: no faults) with its clock-paced work off; see the
# module's docstring.
CLOCK_OFF_ARGS = ["--reconcile-interval-s", "3600"]
START_TIMEOUT_S = 300.0  # Python and the target's imports under valgrind: about 30 s here
STOP_TIMEOUT_S = 120.0  # valgrind writes its counts when the server exits
FLOWS_TIMEOUT_S = 1800.0
REQUEST_TIMEOUT_S = 120.0
WALLET_BALANCE_MSAT = 10**15
AMOUNT_MSAT_RANGE = (1_000, 100_000)
FLOOR_PAYMENT_REQUEST = "lnbcrt" + "x" * 300  # a payout body's size, on the floor
COLLECTED_RE = re.compile(r"==\d+== Collected : (\d+)")


@dataclass(frozen=True)
class InstructionSettings:
    flows: int = 300
    concurrency: int = 8
    report_dir: Path = Path("reports")

    def __post_init__(self) -> None:
        if not 1 <= self.flows <= 100_000 or not 1 <= self.concurrency <= 256:
            raise ValueError("--instruction-flows 1..100000, --instruction-concurrency 1..256")


def valgrind() -> str | None:
    return shutil.which("valgrind")


def collected_instructions(log_text: str) -> int:
    """The total callgrind printed at the exit of the program it ran."""
    found = COLLECTED_RE.findall(log_text)
    if not found:
        raise RuntimeError("callgrind printed no 'Collected' total (did the server exit?)")
    return int(found[-1])


def per_flow(idle: int, served: int, flows: int) -> float:
    """Instructions of one flow: the run that served `flows` less the run that served none."""
    assert flows > 0
    return (served - idle) / flows


def target_command(work_dir: Path) -> list[str]:
    return bench.target_command(work_dir, CLOCK_OFF_ARGS)


async def _target_flows(
    session: aiohttp.ClientSession, url: str, count: int, rng: random.Random
) -> None:
    async with session.post(f"{url}/api/wallets", json={"balance_msat": WALLET_BALANCE_MSAT}) as r:
        if r.status != 201:
            raise RuntimeError(f"wallet: HTTP {r.status}")
        wallet = await r.json()
    headers = {"X-Api-Key": wallet["api_key"]}
    for _ in range(count):
        amount_msat = rng.randint(*AMOUNT_MSAT_RANGE)
        async with session.post(f"{url}/node/invoices", json={"amount_msat": amount_msat}) as r:
            if r.status != 201:
                raise RuntimeError(f"invoice: HTTP {r.status}")
            payment_request = (await r.json())["payment_request"]
        payouts = f"{url}/api/wallets/{wallet['wallet_id']}/payouts"
        body = {"payment_request": payment_request}
        async with session.post(payouts, json=body, headers=headers) as r:
            if r.status not in (200, 202):
                raise RuntimeError(f"payout: HTTP {r.status}")
            payout_id = (await r.json())["payout_id"]
        async with session.get(f"{url}/api/payouts/{payout_id}", headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"status: HTTP {r.status}")


async def _floor_flows(
    session: aiohttp.ClientSession, url: str, count: int, rng: random.Random
) -> None:
    headers = {"X-Api-Key": "k" * 43}
    for _ in range(count):
        amount_msat = rng.randint(*AMOUNT_MSAT_RANGE)
        async with session.post(f"{url}/ping", json={"amount_msat": amount_msat}) as r:
            await r.read()
        body = {"payment_request": FLOOR_PAYMENT_REQUEST}
        async with session.post(f"{url}/ping", json=body, headers=headers) as r:
            await r.read()
        async with session.get(f"{url}/ping", headers=headers) as r:
            await r.read()


async def drive(url: str, mode: str, flows: int, concurrency: int) -> None:
    """`flows` flows against `url`, `concurrency` at once, each worker its own wallet."""
    if flows == 0:
        return
    assert url.startswith(("http://127.", "http://[::1]")), "only loopback is driven"
    shares = [flows // concurrency + (i < flows % concurrency) for i in range(concurrency)]
    flow = _target_flows if mode == "target" else _floor_flows
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with asyncio.timeout(FLOWS_TIMEOUT_S):
            await asyncio.gather(
                *(flow(session, url, n, random.Random(i)) for i, n in enumerate(shares) if n)
            )


def count_run(
    command: list[str], mode: str, flows: int, concurrency: int, work_dir: Path, tag: str
) -> int:
    """Instructions of one server run under callgrind that served `flows` flows."""
    tool = valgrind()
    if tool is None:
        raise RuntimeError("valgrind is not installed (Debian: apt-get install valgrind)")
    out = work_dir / f"{tag}.callgrind"
    child = ChildServer(
        [tool, "--tool=callgrind", f"--callgrind-out-file={out}", *command],
        log_path=work_dir / f"{tag}.log",
        cwd=ROOT,
        env={"PYTHONHASHSEED": "0"},  # the same str hashes, so the same dict layouts, each run
        die_with_parent=True,
        stop_timeout_s=STOP_TIMEOUT_S,
        name=f"{mode} under callgrind",
    )
    with child.start(start_timeout_s=START_TIMEOUT_S):
        asyncio.run(drive(child.url, mode, flows, concurrency))
        child.stop()
    return collected_instructions(child.log_text())


def measure(settings: InstructionSettings, quiet: bool = False) -> dict[str, Any]:
    """Per flow, the target's and the floor's instructions; writes bench-instructions.json."""
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="lnchaos-bench-instructions-") as tmp:
        work = Path(tmp)
        for mode in ("floor", "target"):
            runs[mode] = {}
            for flows in (0, settings.flows):
                tag = f"{mode}-{flows}"
                run_dir = work / tag
                run_dir.mkdir()
                command = floor_command() if mode == "floor" else target_command(run_dir)
                runs[mode][str(flows)] = count_run(
                    command, mode, flows, settings.concurrency, run_dir, tag
                )
                if not quiet:
                    print(f"  {mode}, {flows} flows: {runs[mode][str(flows)]:,} instructions")
    floor = per_flow(runs["floor"]["0"], runs["floor"][str(settings.flows)], settings.flows)
    target = per_flow(runs["target"]["0"], runs["target"][str(settings.flows)], settings.flows)
    summary = {
        "flows": settings.flows,
        "concurrency": settings.concurrency,
        "floor_instructions_per_flow": floor,
        "target_instructions_per_flow": target,
        "ratio_target_floor": target / floor if floor > 0 else None,
        "runs": runs,
    }
    path = settings.report_dir / "bench-instructions.json"
    path.write_text(json.dumps(summary, indent=1))
    return summary


def render(summary: dict[str, Any]) -> str:
    ratio = summary["ratio_target_floor"]
    return (
        f"instructions per payout flow (3 requests; {summary['flows']} flows, "
        f"{summary['concurrency']} at once, callgrind):\n"
        f"  floor  {summary['floor_instructions_per_flow'] / 1e6:8.3f} M\n"
        f"  target {summary['target_instructions_per_flow'] / 1e6:8.3f} M"
        + (f"   ({ratio:.2f} x the floor)" if ratio is not None else "")
    )
