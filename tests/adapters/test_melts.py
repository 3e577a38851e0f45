"""The proofs model's pure parts: Cashu's blind signatures (NUT-00) and the judgement of one
melt from the node's truth, the proofs' states and the quote's state."""

from __future__ import annotations

from coincurve import PrivateKey, PublicKey

from locustfiles import checker
from locustfiles.wallets.cashu_crypto import blind, hash_to_curve, split, unblind
from locustfiles.wallets.melts import MeltRecord, judge_melt

H = "c" * 64


def test_hash_to_curve_matches_nut00s_vectors() -> None:
    assert hash_to_curve(bytes(32)).format().hex() == (
        "024cce997d3b518f739663b757deaec95bcd9473c30a14ac2fd04023a739d1a725"
    )
    assert hash_to_curve(bytes(31) + b"\x01").format().hex() == (
        "022e7158e11c9506f1aa4248bf531298daa7febd6194f003edcd9b93ade6253acf"
    )


def test_an_unblinded_signature_is_the_mints_key_times_y() -> None:
    k = PrivateKey()
    blinded = blind(8)
    c_ = PublicKey(bytes.fromhex(blinded.b_)).multiply(k.secret)  # the mint signs B_
    c = unblind(c_.format().hex(), blinded.r, k.public_key.format().hex())
    assert c == hash_to_curve(blinded.secret.encode()).multiply(k.secret).format().hex()


def test_split_is_the_binary_digits() -> None:
    assert split(13) == [1, 4, 8]
    assert sum(split(1_999)) == 1_999 and all(a & (a - 1) == 0 for a in split(1_999))


def _record(answer: str = "succeeded", change_sat: int = 0) -> MeltRecord:
    return MeltRecord("q1", H, 100, 3, 103, ["y1", "y2"], 0, answer, change_sat)


def _paid(fee_msat: int = 1_500) -> dict[str, object]:
    return {"status": "succeeded", "fee_msat": fee_msat}


def test_a_melt_paid_with_its_change_keeps_the_rule() -> None:
    # fee 1,500 msat: 2 sat kept of the 3 sat reserve, 1 sat handed back
    assert judge_melt(_record(change_sat=1), ["SPENT", "SPENT"], "PAID", _paid()) is None
    failed = {"status": "failed"}
    assert judge_melt(_record("failed"), ["UNSPENT", "UNSPENT"], "UNPAID", failed) is None


def test_proofs_spendable_after_the_node_paid_are_paid_not_charged() -> None:
    found = judge_melt(_record("failed"), ["UNSPENT", "UNSPENT"], "UNPAID", _paid())
    assert found is not None and found["kind"] == checker.PAID_NOT_CHARGED
    assert found["proofs"] == {"y1": "UNSPENT", "y2": "UNSPENT"} and found["quote_id"] == "q1"


def test_proofs_burned_or_a_quote_paid_for_nothing_are_charged_not_paid() -> None:
    failed = {"status": "failed"}
    burned = judge_melt(_record("failed"), ["SPENT", "SPENT"], "UNPAID", failed)
    assert burned is not None and burned["kind"] == checker.CHARGED_NOT_PAID
    lied = judge_melt(_record("failed"), ["UNSPENT", "UNSPENT"], "PAID", failed)
    assert lied is not None and lied["kind"] == checker.CHARGED_NOT_PAID


def test_change_withheld_from_a_paid_answer_is_charged_not_paid() -> None:
    found = judge_melt(_record(change_sat=0), ["SPENT", "SPENT"], "PAID", _paid())
    assert found is not None and found["kind"] == checker.CHARGED_NOT_PAID
    assert found["diff_msat"] == -1_000
    # a failed answer's change waits for NUT-09's restore: not judged
    assert judge_melt(_record("failed"), ["SPENT", "SPENT"], "PAID", _paid()) is None


def test_pending_at_the_mint_or_in_flight_at_the_node_is_unresolved() -> None:
    pending = judge_melt(
        _record("pending"), ["PENDING", "PENDING"], "PENDING", {"status": "unknown"}
    )
    assert pending is not None and pending["kind"] == checker.UNRESOLVED
    in_flight = judge_melt(_record(), ["SPENT", "SPENT"], "PAID", {"status": "in_flight"})
    assert in_flight is not None and in_flight["kind"] == checker.UNRESOLVED
