"""A target paying through a remote node (`--node-url`) answers bad invoices as the embedded
node does, and the node's DecodePayReq reads an amountless invoice as LND does (num_msat 0), so
the edge check's contract (`foreign_invoice`, `amountless_invoice`) holds in both setups: a
`--node-url` run once failed with accepted_bad_input on every mainnet, testnet and amountless
case, all answered `malformed_invoice`."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from types import SimpleNamespace

import bolt11
import pytest
from lnd_harness import node_app, run

from target.node.invoices import InvoiceError, decode
from target.node.lnd_client import foreign_currency

STRANGER_KEY = hashlib.sha256(b"a payee outside the network").hexdigest()


def stranger_invoice(
    rng: random.Random, *, amount_msat: int | None = 10_000, currency: str = "bcrt"
) -> SimpleNamespace:
    """A signed invoice of a payee outside the network (as the suite's edge class makes them:
    locustfiles/traffic.py, not imported here, where Locust's monkey-patching must not reach)."""
    payment_hash = f"{rng.getrandbits(256):064x}"
    tags = bolt11.Tags(
        [
            bolt11.Tag(bolt11.TagChar.payment_hash, payment_hash),
            bolt11.Tag(bolt11.TagChar.payment_secret, f"{rng.getrandbits(256):064x}"),
            bolt11.Tag(bolt11.TagChar.description, "lnchaos edge case"),
        ]
    )
    amount = bolt11.MilliSatoshi(amount_msat) if amount_msat else None
    raw = bolt11.Bolt11(currency=currency, date=int(time.time()), amount_msat=amount, tags=tags)
    return SimpleNamespace(
        payment_request=bolt11.encode(raw, STRANGER_KEY), payment_hash=payment_hash
    )


@pytest.mark.parametrize(
    ("currency", "foreign"), [("bc", "bc"), ("tb", "tb"), ("bcrt", None), ("tbs", "tbs")]
)
def test_an_invoice_of_another_network_is_told_by_its_prefix(
    currency: str, foreign: str | None
) -> None:
    invoice = stranger_invoice(random.Random(7), currency=currency)
    assert foreign_currency(invoice.payment_request) == foreign
    with pytest.raises(InvoiceError) as raised:  # the embedded node's own reading agrees
        decode(invoice.payment_request)
        raise InvoiceError("none", "ours decodes")  # bcrt: signed by a stranger, still ours
    assert raised.value.code == ("foreign_invoice" if foreign else "none")


@pytest.mark.parametrize("text", ["", "lnbcrt", "not an invoice", "lnxx10u1abc", "1"])
def test_what_is_not_bolt11_is_left_to_the_node(text: str) -> None:
    assert foreign_currency(text) is None


def test_decodepayreq_reads_an_amountless_invoice_and_a_send_refuses_it(tmp_path: Path) -> None:
    invoice = stranger_invoice(random.Random(8), amount_msat=None)

    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            async with node.http.get(
                node.url + "/v1/payreq/" + invoice.payment_request, headers=node.headers()
            ) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            assert body["num_msat"] == "0" and body["payment_hash"] == invoice.payment_hash
            send = {"payment_request": invoice.payment_request, "fee_limit_msat": "1000"}
            async with node.http.post(
                node.url + "/v2/router/send", json=send, headers=node.headers()
            ) as resp:
                assert resp.status == 400, await resp.text()
            assert await node.node.lookup(invoice.payment_hash) is None  # nothing went out

    run(scenario(), timeout_s=30)
