"""Cashu's blind signatures (NUT-00, blind Diffie-Hellman key exchange), with coincurve: what a
wallet needs to mint ecash and spend it. Secrets are random hex strings; amounts are powers of
two (NUT-00, NUT-02).

- `blind(secret)`: Y = hash_to_curve(secret), B_ = Y + rG, with r random; the mint signs
  C_ = kB_ with the key k of the output's amount;
- `unblind(C_, r, K)`: C = C_ - rK = kY, the proof's signature;
- `y_of(secret)`: Y, by which a proof's state is asked (NUT-07).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey

DOMAIN_SEPARATOR = b"Secp256k1_HashToCurve_Cashu_"
HASH_TO_CURVE_TRIES = 2**16
# the order of secp256k1's group
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def hash_to_curve(message: bytes) -> PublicKey:
    """NUT-00's hash_to_curve: the first x = SHA256(SHA256(DST || message) || counter_le32)
    that is on the curve, as the point 02 || x."""
    message_hash = hashlib.sha256(DOMAIN_SEPARATOR + message).digest()
    for counter in range(HASH_TO_CURVE_TRIES):
        candidate = hashlib.sha256(message_hash + counter.to_bytes(4, "little")).digest()
        try:
            return PublicKey(b"\x02" + candidate)
        except ValueError:
            continue
    raise ValueError("no point found for the message")


def y_of(secret: str) -> str:
    return hash_to_curve(secret.encode()).format().hex()


@dataclass(frozen=True)
class Blinded:
    amount_sat: int
    secret: str
    r: PrivateKey
    b_: str  # B_ as compressed hex


def blind(amount_sat: int, secret: str | None = None) -> Blinded:
    secret = secret or secrets.token_hex(32)
    r = PrivateKey()
    b_ = PublicKey.combine_keys([hash_to_curve(secret.encode()), r.public_key])
    return Blinded(amount_sat, secret, r, b_.format().hex())


def unblind(c_hex: str, r: PrivateKey, mint_key_hex: str) -> str:
    """C = C_ - rK, as compressed hex."""
    minus_r = (CURVE_ORDER - int.from_bytes(r.secret, "big")) % CURVE_ORDER
    minus_rk = PublicKey(bytes.fromhex(mint_key_hex)).multiply(minus_r.to_bytes(32, "big"))
    return PublicKey.combine_keys([PublicKey(bytes.fromhex(c_hex)), minus_rk]).format().hex()


def split(amount_sat: int) -> list[int]:
    """The powers of two that add up to `amount_sat` (its binary digits)."""
    return [1 << bit for bit in range(amount_sat.bit_length()) if amount_sat >> bit & 1]
