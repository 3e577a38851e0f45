"""A real LNbits for the suite's tests: installed from PyPI into a virtual environment of its
own (cached outside the repo), started on loopback against a `lnchaos node`, stopped with every
child.

- `lnbits_version()`: the release judged, 1.6.2 unless $LNCHAOS_LNBITS_VERSION says otherwise.
- `install(version)`: `~/.cache/lnchaos/lnbits-<version>` ($LNCHAOS_CACHE_DIR overrides the
  folder), made once (a lock file keeps two sessions from installing at once; a marker file
  says the install finished) with `pip install lnbits==<version> 'bitstring<5'` (bolt11 2.2.0,
  which LNbits pins, breaks with bitstring 5). Later runs reuse it.
- `patched_copy(...)`: a copy of the installed `lnbits` package with one source edit, put first
  on PYTHONPATH: the cached install is never changed.
- `LNbits`: one LNbits process (its data in a folder of the test's), the LND REST funding
  source pointed at the node (or its gRPC one, LndWallet, with `GrpcFunding`), the settings the
  suite needs (see docs/lnbits.md).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from target.common.child import ChildProcess

DEFAULT_VERSION = "1.6.2"
VERSION_ENV = "LNCHAOS_LNBITS_VERSION"
CACHE_ENV = "LNCHAOS_CACHE_DIR"
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 90.0
POLL_INTERVAL_S = 0.2
# bolt11 2.2.0 (LNbits' pin) fails to import with bitstring 5
EXTRA_PINS = ("bitstring<5",)
MARKER = ".lnchaos-installed"


def lnbits_version() -> str:
    return os.environ.get(VERSION_ENV) or DEFAULT_VERSION


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lnchaos")


def install(version: str) -> Path:
    """The venv with LNbits `version`, installed once into the cache (bounded in time)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"lnbits-{version}"
    with open(root / f"lnbits-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session installing: wait for it
        if (venv / MARKER).is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-made install
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        command += [f"lnbits=={version}", *EXTRA_PINS]
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"pip install lnbits=={version} failed:\n{result.stderr[-3000:]}")
        (venv / MARKER).write_text(version)
    return venv


def site_packages(venv: Path) -> Path:
    """Where the venv's `lnbits` package lives."""
    found = sorted(venv.glob("lib/python*/site-packages/lnbits/__init__.py"))
    if not found:
        raise RuntimeError(f"no lnbits package in {venv}")
    return found[0].parent.parent


def patched_copy(venv: Path, dest: Path, path: str, old: str, new: str) -> Path:
    """A copy of the installed `lnbits` package in `dest` with `old` replaced by `new` in
    `path` (relative to the package; exactly one occurrence). Returns `dest`, for PYTHONPATH."""
    source = site_packages(venv) / "lnbits"
    target = dest / "lnbits"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    patched = target / path
    text = patched.read_text()
    assert text.count(old) == 1, f"the patch no longer fits {path} of this LNbits"
    patched.write_text(text.replace(old, new))
    return dest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# LNbits' fee reserve for a payment out (its defaults, set explicitly so a test can compute it):
# max(RESERVE_FEE_MIN_MSAT, amount x RESERVE_FEE_PERCENT / 100) is held until the payment is final
RESERVE_FEE_MIN_MSAT = 2000
RESERVE_FEE_PERCENT = 1.0


def fee_reserve_msat(amount_msat: int) -> int:
    """LNbits' fee reserve of a payment of `amount_msat` (core/services: fee_reserve)."""
    return max(RESERVE_FEE_MIN_MSAT, int(amount_msat * RESERVE_FEE_PERCENT / 100.0))


@dataclass(frozen=True)
class GrpcFunding:
    """LNbits' gRPC funding source (LndWallet) on the node's gRPC face, configured as for a
    real LND: its port, the tls.cert and the admin.macaroon files of its --lnd-dir."""

    port: int
    cert_path: Path
    macaroon_path: Path


def funding_env(node_url: str, grpc: GrpcFunding | None) -> dict[str, str]:
    if grpc is None:
        return {
            "LNBITS_BACKEND_WALLET_CLASS": "LndRestWallet",
            "LND_REST_ENDPOINT": node_url,  # plain http: the node has no TLS
            "LND_REST_MACAROON": "00",  # any hex unless the node was given --macaroon
        }
    return {
        "LNBITS_BACKEND_WALLET_CLASS": "LndWallet",
        "LND_GRPC_ENDPOINT": "127.0.0.1",
        "LND_GRPC_PORT": str(grpc.port),
        "LND_GRPC_CERT": str(grpc.cert_path),
        "LND_GRPC_MACAROON": str(grpc.macaroon_path),
    }


def lnbits_env(node_url: str, data_dir: Path, grpc: GrpcFunding | None = None) -> dict[str, str]:
    """The settings LNbits needs to run on the node mock, offline, under load (docs/lnbits.md)."""
    return {
        "LNBITS_DATA_FOLDER": str(data_dir),
        "LNBITS_ADMIN_UI": "false",  # settings from the environment, no first-install flow
        **funding_env(node_url, grpc),
        # a payment not final within 1 s is answered pending (the node holds timeouts 1.5 s)
        "LNBITS_FUNDING_SOURCE_PAY_INVOICE_WAIT_SECONDS": "1",
        # the suite is one client on loopback: LNbits' 200 requests a minute would stop it
        "LNBITS_RATE_LIMIT_NO": "1000000",
        "LNBITS_RESERVE_FEE_MIN": str(RESERVE_FEE_MIN_MSAT),
        "LNBITS_RESERVE_FEE_PERCENT": str(RESERVE_FEE_PERCENT),
        # offline: no price lookups (a wallet's fiat amounts), no extension manifests
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
    }


class LNbits:
    """One LNbits on 127.0.0.1 against the node at `node_url`; `url` once started."""

    def __init__(
        self,
        venv: Path,
        node_url: str,
        workdir: Path,
        *,
        pythonpath: Path | None = None,
        grpc: GrpcFunding | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir = workdir / "lnbits-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = lnbits_env(node_url, data_dir, grpc)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        # LNbits serves its static files from ./lnbits/static: run where its package is
        cwd = pythonpath if pythonpath is not None else site_packages(venv)
        command = [str(venv / "bin" / "lnbits"), "--host", "127.0.0.1", "--port", str(self.port)]
        self.child = ChildProcess(
            command, log_path=workdir / "lnbits.log", cwd=cwd, env=env, name="lnbits"
        )

    def start(self) -> LNbits:
        self.child.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not self.child.running():
                raise RuntimeError(f"LNbits exited:\n{self.child.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                self.child.stop()
                raise RuntimeError(f"LNbits not healthy in {START_TIMEOUT_S:g} s")
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> None:
        self.child.stop()
