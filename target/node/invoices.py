"""Real BOLT11 invoices (the `bolt11` package), and a registry so a node decodes its own quickly.

Encoding costs about a millisecond and decoding nearly two; a node answers a decode of an
invoice it issued from its own registry (as LND's decodepayreq does for its own) and runs the full
decoder, signature recovery included, only for invoices it has not seen.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import bolt11
from coincurve import PrivateKey

from .bolt11_fast import Encoder

CURRENCY = "bcrt"  # regtest: no invoice of ours can ever be paid on a real network


class InvoiceError(ValueError):
    """A payment request that cannot be paid: malformed, foreign, expired, amountless."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Invoice:
    payment_request: str
    payment_hash: str  # hex
    amount_msat: int
    payee: str  # hex compressed pubkey
    created_s: int
    expiry_s: int
    description: str | None
    description_hash: str | None
    payment_addr: str  # hex payment secret
    min_final_cltv_expiry: int
    preimage: bytes | None = None  # known only to the node that issued it

    def expired(self, at_s: float | None = None) -> bool:
        return (time.time() if at_s is None else at_s) > self.created_s + self.expiry_s


def private_key_for(seed: int, name: str) -> str:
    """A deterministic secp256k1 key per (seed, node name), so a replayed run has the same ids."""
    return hashlib.sha256(f"lnchaos:{name}:{seed}".encode()).hexdigest()


def pubkey_of(private_key_hex: str) -> str:
    """The compressed public key (hex) of a private key, as a node id."""
    return PrivateKey(bytes.fromhex(private_key_hex)).public_key.format(compressed=True).hex()


class InvoiceBook:
    """Issues the invoices of one node and remembers the most recent ones."""

    def __init__(self, private_key_hex: str, *, registry_max: int = 10_000):
        self._registry: OrderedDict[str, Invoice] = OrderedDict()  # payment_request -> invoice
        self._by_hash: dict[str, Invoice] = {}
        self._registry_max = registry_max
        self._encoder = Encoder(private_key_hex)
        self.pubkey: str = pubkey_of(private_key_hex)

    def issue(
        self,
        amount_msat: int,
        *,
        preimage: bytes | None,
        payment_addr: bytes,
        memo: str = "",
        description_hash: str | None = None,
        expiry_s: int = 3600,
        min_final_cltv_expiry: int = 80,
        created_s: int | None = None,
        payment_hash: str | None = None,
    ) -> Invoice:
        """A signed invoice. Without a preimage, `payment_hash` (hex) is required: a hold
        invoice, which the network can only pay up to ACCEPTED until its preimage is given."""
        assert len(payment_addr) == 32
        assert amount_msat > 0
        if preimage is not None:
            assert len(preimage) == 32
            payment_hash = hashlib.sha256(preimage).hexdigest()
        assert payment_hash is not None and len(payment_hash) == 64
        created_s = int(time.time()) if created_s is None else created_s
        # Equal byte for byte to bolt11.encode (tests/target/test_bolt11_fast.py), ~10x faster.
        payment_request = self._encoder.encode(
            currency=CURRENCY,
            amount_msat=amount_msat,
            created_s=created_s,
            payment_hash=payment_hash,
            payment_secret=payment_addr.hex(),
            expiry_s=expiry_s,
            min_final_cltv_expiry=min_final_cltv_expiry,
            description=None if description_hash else memo,
            description_hash=description_hash,
        )
        invoice = Invoice(
            payment_request=payment_request,
            payment_hash=payment_hash,
            amount_msat=amount_msat,
            payee=self.pubkey,
            created_s=created_s,
            expiry_s=expiry_s,
            description=None if description_hash else memo,
            description_hash=description_hash,
            payment_addr=payment_addr.hex(),
            min_final_cltv_expiry=min_final_cltv_expiry,
            preimage=preimage,
        )
        self._registry[payment_request] = invoice
        self._by_hash[payment_hash] = invoice
        while len(self._registry) > self._registry_max:
            _, old = self._registry.popitem(last=False)
            self._by_hash.pop(old.payment_hash, None)
        return invoice

    def forget(self, payment_hash: str) -> None:
        invoice = self._by_hash.pop(payment_hash, None)
        if invoice is not None:
            self._registry.pop(invoice.payment_request, None)

    def known(self, payment_request: str) -> Invoice | None:
        return self._registry.get(payment_request)

    def by_hash(self, payment_hash: str) -> Invoice | None:
        return self._by_hash.get(payment_hash)


def decode(payment_request: str, *, amountless_ok: bool = False) -> Invoice:
    """Full BOLT11 decode with signature recovery; every failure is an InvoiceError.
    amountless_ok: an invoice without an amount decodes (amount 0), as LND's DecodePayReq
    answers it; a payment of it is refused (amountless_invoice)."""
    if not isinstance(payment_request, str) or not 0 < len(payment_request) <= 4096:
        raise InvoiceError("malformed_invoice", "payment_request must be a BOLT11 string")
    try:
        raw = bolt11.decode(payment_request.strip())
    except Exception as err:  # the library raises many types, bitstring's included
        raise InvoiceError("malformed_invoice", f"not a valid BOLT11 invoice: {err}") from None
    if raw.currency != CURRENCY:
        raise InvoiceError(
            "foreign_invoice", f"invoice is for network '{raw.currency}', this node is on regtest"
        )
    if not raw.amount_msat and not amountless_ok:
        raise InvoiceError("amountless_invoice", "invoices without an amount are not supported")
    payment_hash = raw.payment_hash
    payee = raw.payee
    if not payment_hash or not payee or not raw.payment_secret:
        raise InvoiceError("malformed_invoice", "invoice lacks a payment hash, secret or payee")
    return Invoice(
        payment_request=payment_request.strip().lower(),
        payment_hash=payment_hash,
        amount_msat=int(raw.amount_msat or 0),
        payee=payee,
        created_s=raw.date,
        expiry_s=raw.expiry,
        description=raw.description,
        description_hash=raw.description_hash,
        payment_addr=raw.payment_secret,
        min_final_cltv_expiry=raw.min_final_cltv_expiry,
    )
