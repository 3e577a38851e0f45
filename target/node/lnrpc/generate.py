"""Regenerate the Python modules of LND's protos here: python -m target.node.lnrpc.generate

The .proto files are LND's own, copied unchanged from lightningnetwork/lnd at tag v0.20.3-beta
(commit 05407c84eed9035452c73f4f025efa9f4041ae96; MIT, LICENSE-lnd): lnrpc/lightning.proto,
lnrpc/routerrpc/router.proto, lnrpc/invoicesrpc/invoices.proto. 0.20.3 is the newest release
whose lnrpc.Lightning still has SendPaymentSync, which the node serves for --lnd-version up to
0.20. No package on PyPI ships LND's stubs kept up to date, so the generated modules are kept
here; generating needs grpcio-tools (the `grpc` extra), running them only grpcio and protobuf.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = ("lightning.proto", "router.proto", "invoices.proto")


def main() -> int:
    from grpc_tools import protoc  # the `grpc` extra; only this script needs it

    args = ["protoc", f"-I{HERE}", f"--python_out={HERE}", f"--grpc_python_out={HERE}"]
    if protoc.main([*args, *(str(HERE / p) for p in PROTOS)]) != 0:
        return 1
    for path in HERE.glob("*_pb2*.py"):
        # protoc writes top-level imports (`import lightning_pb2`); these are a package's modules
        text = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", path.read_text(), flags=re.M)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
