"""Who may call the node's LND faces (REST and gRPC): the macaroon each call carries, hex-encoded
(`Grpc-Metadata-macaroon` header, `macaroon` gRPC metadata), checked against what the call needs.

Two policies:
- `AnyHexMacaroon` (no --lnd-dir): any hex, or exactly the --macaroon hex; refusals are 401 with
  code 16 (Unauthenticated), so a client can tell them from faults (LND itself never says 16);
- `LndDirMacaroons` (--lnd-dir): one of the directory's three macaroon files, with the operations
  LND grants it (readonly: reads only; invoice: invoices); refusals as LND words them, gRPC code
  2 (Unknown), which grpc-gateway answers with HTTP 500.
"""

from __future__ import annotations

import hmac
import re
from typing import Protocol

from .lnd_dir import LndDir
from .lnd_json import Code, LndError

Permission = tuple[str, str]  # (entity, action), as LND's rpcserver lists each call's

HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


class MacaroonPolicy(Protocol):
    def check(self, macaroon_hex: str | None, permission: Permission) -> None:
        """Raise LndError when the call may not proceed."""


class AnyHexMacaroon:
    """Any hex macaroon, or exactly the configured one."""

    def __init__(self, macaroon_hex: str | None = None):
        self.expected = macaroon_hex.lower() if macaroon_hex else None

    def check(self, macaroon_hex: str | None, permission: Permission) -> None:
        if not macaroon_hex:
            raise LndError(Code.UNAUTHENTICATED, "expected 1 macaroon, got 0")
        if not HEX.match(macaroon_hex):
            raise LndError(Code.UNAUTHENTICATED, "unable to decode macaroon: invalid hex")
        if self.expected is not None and not hmac.compare_digest(
            macaroon_hex.lower(), self.expected
        ):
            raise LndError(
                Code.UNAUTHENTICATED, "verification failed: signature mismatch after caveat"
            )


class LndDirMacaroons:
    """The directory's macaroons, each with its operations; LND's messages (macaroons/service.go,
    Go's encoding/hex, the bakery's checker)."""

    def __init__(self, lnd_dir: LndDir):
        self.lnd_dir = lnd_dir

    def check(self, macaroon_hex: str | None, permission: Permission) -> None:
        if not macaroon_hex:
            raise LndError(Code.UNKNOWN, "expected 1 macaroon, got 0")
        raw = _go_hex_decode(macaroon_hex)
        grants = self.lnd_dir.grants(raw)
        if grants is None:
            raise LndError(
                Code.UNKNOWN, "verification failed: signature mismatch after caveat verification"
            )
        entity, action = permission
        if action not in grants.get(entity, ()):
            raise LndError(Code.UNKNOWN, "permission denied")


def _go_hex_decode(text: str) -> bytes:
    """hex.DecodeString as Go answers a bad string (LND returns that error as it is)."""
    for char in text:
        if char not in "0123456789abcdefABCDEF":
            raise LndError(Code.UNKNOWN, f"encoding/hex: invalid byte: U+{ord(char):04X} {char!r}")
    if len(text) % 2:
        raise LndError(Code.UNKNOWN, "encoding/hex: odd length hex string")
    return bytes.fromhex(text)


__all__ = ["AnyHexMacaroon", "LndDirMacaroons", "MacaroonPolicy", "Permission"]
