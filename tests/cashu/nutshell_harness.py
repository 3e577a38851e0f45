"""A real Nutshell mint for the suite's tests: installed from PyPI (`cashu`) into a virtual
environment of its own (cached outside the repo), started on loopback with the LND REST backend
pointed at a `lnchaos node`, stopped with every child.

- `install(version)`: `~/.cache/lnchaos/nutshell-<version>` ($LNCHAOS_CACHE_DIR overrides the
  folder), made once (a lock file, a marker file). Nutshell 0.21.0's own pins do not resolve on a
  fresh machine, so it is installed as `pip install --no-deps cashu==<version>`, then its
  requirements as its metadata states them, less `breez-sdk-spark` (pinned <0.18, no longer on
  PyPI), plus the working set WORKING_SET below.
- `patched_copy(...)`: a copy of the installed `cashu` package with one source edit, put first
  on PYTHONPATH: the cached install is never changed.
- `Mint`: one mint process (its database in a folder of the test's), input fees off.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from target.common.child import ChildProcess

DEFAULT_VERSION = "0.21.0"
VERSION_ENV = "LNCHAOS_NUTSHELL_VERSION"
CACHE_ENV = "LNCHAOS_CACHE_DIR"
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.2
MARKER = ".lnchaos-installed"
# What Nutshell 0.21.0 needs beyond its metadata on a fresh machine (found by installing it):
# - breez-sdk-spark: its pin (>=0.17,<0.18) is gone from PyPI; cashu/lightning/__init__.py
#   imports the Spark backend at start, so some release must be there (0.18.0 imports; the
#   Spark backend is not used here);
# - marshmallow<4: environs 9.5 (Nutshell's pin) reads marshmallow.__version_info__, gone in 4;
# - limits<4: slowapi 0.1.x asks for the "fixed-window-elastic-expiry" strategy, gone in 4.
DROPPED = ("breez-sdk-spark",)
WORKING_SET = ("breez-sdk-spark==0.18.0", "marshmallow<4", "limits<4")


def nutshell_version() -> str:
    return os.environ.get(VERSION_ENV) or DEFAULT_VERSION


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lnchaos")


def _pip(venv: Path, *args: str) -> None:
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def install(version: str) -> Path:
    """The venv with Nutshell `version`, installed once into the cache (bounded in time)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"nutshell-{version}"
    with open(root / f"nutshell-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session installing: wait for it
        if (venv / MARKER).is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-made install
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        _pip(venv, "--no-deps", f"cashu=={version}")
        _pip(venv, *requirements(venv), *WORKING_SET)
        (venv / MARKER).write_text(version)
    return venv


def requirements(venv: Path) -> list[str]:
    """cashu's requirements as its metadata states them, less DROPPED."""
    script = (
        "import importlib.metadata, json; print(json.dumps(importlib.metadata.requires('cashu')))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=60
    )
    wanted = []
    for requirement in json.loads(out.stdout or "[]"):
        name = requirement.split(";")[0].strip()
        if not any(name.lower().startswith(dropped) for dropped in DROPPED):
            wanted.append(name.replace(" (", "").replace(")", ""))
    return wanted


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages/cashu/__init__.py"))
    if not found:
        raise RuntimeError(f"no cashu package in {venv}")
    return found[0].parent.parent


def patched_copy(venv: Path, dest: Path, path: str, old: str, new: str) -> Path:
    """A copy of the installed `cashu` package in `dest` with `old` replaced by `new` in `path`
    (relative to the package; exactly one occurrence). Returns `dest`, for PYTHONPATH."""
    shutil.copytree(site_packages(venv) / "cashu", dest / "cashu")
    target = dest / "cashu" / path
    text = target.read_text()
    assert text.count(old) == 1, f"the patch does not apply to {path} exactly once"
    target.write_text(text.replace(old, new))
    return dest


def set_faults(node_url: str, admin_token: str, faults: dict[str, float]) -> None:
    """PUT /admin/faults on the node (urllib: this test process does not import Locust)."""
    request = urllib.request.Request(
        f"{node_url}/admin/faults",
        data=json.dumps(faults).encode(),
        method="PUT",
        headers={"X-Admin-Token": admin_token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200, resp.status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mint:
    """One Nutshell mint on loopback, its LND REST backend the node at `node_url`."""

    def __init__(
        self, venv: Path, node_url: str, data_dir: Path, *, pythonpath: Path | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "MINT_BACKEND_BOLT11_SAT": "LndRestWallet",
            "MINT_LND_REST_ENDPOINT": node_url,
            "MINT_LND_REST_MACAROON": "00",  # any hex: the node takes any macaroon
            "MINT_LND_REST_CERT_VERIFY": "False",  # plain http on loopback
            "MINT_PRIVATE_KEY": "lnchaos-test-mint",
            "MINT_LISTEN_HOST": "127.0.0.1",
            "MINT_LISTEN_PORT": str(self.port),
            "MINT_DATABASE": str(data_dir / "mint"),
            "CASHU_DIR": str(data_dir / "cashu"),
            "MINT_INPUT_FEE_PPK": "0",  # the melts judged are the payment's; no ecash fees
            "MINT_RATE_LIMIT": "False",  # the suite is a single client
            "DEBUG": "True",
        }
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        command = [str(venv / "bin" / "mint"), "--host", "127.0.0.1", "--port", str(self.port)]
        self.child = ChildProcess(
            command, log_path=data_dir / "mint.log", cwd=data_dir, env=env, name="nutshell mint"
        )

    def start(self) -> Mint:
        self.child.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.child.returncode is not None:
                raise RuntimeError(f"the mint exited:\n{self.child.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/info", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(POLL_INTERVAL_S)
        self.child.stop()
        raise RuntimeError(f"the mint did not answer within {START_TIMEOUT_S} s")

    def log(self) -> str:
        return self.child.log_tail(200_000)
