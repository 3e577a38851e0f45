"""The fast encoder is the `bolt11` library, byte for byte, on the invoices our nodes issue."""

from __future__ import annotations

import random

import bolt11
import pytest
from bolt11.models.tags import Tag, TagChar, Tags

from target.node import bolt11_fast
from target.node.bolt11_fast import Encoder
from target.node.invoices import CURRENCY, InvoiceBook, decode, private_key_for

KEY = private_key_for(1, "merchant")


def library_encode(
    amount_msat: int,
    created_s: int,
    payment_hash: str,
    payment_secret: str,
    expiry_s: int,
    cltv: int,
    memo: str,
    description_hash: str | None,
) -> str:
    tags = [
        Tag(TagChar.payment_hash, payment_hash),
        Tag(TagChar.payment_secret, payment_secret),
        Tag(TagChar.expire_time, expiry_s),
        Tag(TagChar.min_final_cltv_expiry, cltv),
    ]
    if description_hash:
        tags.append(Tag(TagChar.description_hash, description_hash))
    else:
        tags.append(Tag(TagChar.description, memo))
    raw = bolt11.Bolt11(
        currency=CURRENCY,
        date=created_s,
        amount_msat=bolt11.MilliSatoshi(amount_msat),
        tags=Tags(tags),
    )
    return bolt11.encode(raw, KEY)


@pytest.mark.parametrize("seed", range(4))
def test_equal_to_the_library_on_random_invoices(seed: int) -> None:
    rng = random.Random(seed)
    encoder = Encoder(KEY)
    for _ in range(100):
        amount_msat = rng.choice(
            [1, 10, 999, 1000, 10 ** rng.randint(0, 15), rng.randint(1, 2**50)]
        )
        expiry_s = rng.choice([0, 1, 31, 32, 3600, rng.randint(0, 2**40)])
        cltv = rng.choice([0, 9, 18, 80, 144, rng.randint(0, 2**20)])
        memo = rng.choice(["", "lnchaos", "é☃ unicode", "x" * rng.randint(0, 600)])
        description_hash = rng.randbytes(32).hex() if rng.random() < 0.2 else None
        args = (
            amount_msat,
            rng.randint(0, 2**34),
            rng.randbytes(32).hex(),
            rng.randbytes(32).hex(),
            expiry_s,
            cltv,
            memo,
            description_hash,
        )
        got = encoder.encode(
            currency=CURRENCY,
            amount_msat=args[0],
            created_s=args[1],
            payment_hash=args[2],
            payment_secret=args[3],
            expiry_s=args[4],
            min_final_cltv_expiry=args[5],
            description=None if description_hash else memo,
            description_hash=description_hash,
        )
        assert got == library_encode(*args)


def test_issued_invoices_decode_with_the_library_to_what_was_issued() -> None:
    book = InvoiceBook(KEY)
    rng = random.Random(7)
    for amount_msat in (1, 1000, 123_456_789, 10**11):
        invoice = book.issue(
            amount_msat, preimage=rng.randbytes(32), payment_addr=rng.randbytes(32), memo="m"
        )
        decoded = decode(invoice.payment_request)  # the full decoder, signature recovery included
        assert decoded.payment_hash == invoice.payment_hash
        assert decoded.amount_msat == amount_msat
        assert decoded.payee == book.pubkey == Encoder(KEY).pubkey
        assert decoded.payment_addr == invoice.payment_addr
        assert decoded.expiry_s == invoice.expiry_s
        assert decoded.description == "m"


def test_whole_message_checksum_equals_the_stepwise_one_at_every_length() -> None:
    # The parity-mask path (up to WHOLE_GROUPS_MAX groups) and the step-per-group path agree on
    # every data length around the limit, and a flipped data bit changes the checksum.
    rng = random.Random(11)
    for count in range(0, bolt11_fast.WHOLE_GROUPS_MAX + 8):
        groups = bolt11_fast.Groups()
        groups.add(rng.getrandbits(5 * count), count)
        hrp = "lnbcrt" + str(rng.randint(1, 10**12)) + rng.choice(["", "m", "u", "n", "p"])
        fast = bolt11_fast.bech32_encode(hrp, groups)
        assert fast == bolt11_fast._bech32_encode_stepwise(hrp, groups)
        if count:
            flipped = bolt11_fast.Groups()
            flipped.add(groups.value ^ (1 << rng.randrange(5 * count)), count)
            assert bolt11_fast.bech32_encode(hrp, flipped)[-6:] != fast[-6:]
