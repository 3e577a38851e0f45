"""A small LNURL-withdraw service (LUD-03) for the tests, paying through a `lnchaos node` over
LND's REST API (no LNURL server installable here runs offline: see docs/adapters.md).

    python tests/adapters/withdraw_service.py --node-url URL [--port 0] [--reopen-on-error]

- `POST /links {"amount_msat"}` -> 201 `{"link_id", "lnurl"}`: a link worth amount_msat, once;
- `GET /lnurlw/{id}` -> LUD-03's withdrawRequest while the link is open, else
  `{"status": "ERROR", "reason"}`; a link whose payment is pending is first looked up at the
  node (as a wallet follows a pending payment when asked about it);
- `GET /lnurlw/{id}/callback?k1=&pr=` -> `{"status": "OK"}` once the node paid the invoice, or
  `{"status": "ERROR", "reason"}`.

The link is taken (pending) before the payment is sent, so it pays once. The invoice is decoded
here (target/node/invoices.py): the node is asked only to pay and about a payment. The send is
LND's SendPaymentSync (`POST /v1/channels/transactions`). An answer saying the payment failed
re-opens the link; an HTTP error says nothing about the payment (the node may have acted), so
the service asks the node (TrackPaymentV2, through target/node/lnd_client.py) and re-opens the
link only when the node says the payment failed or never started. `--reopen-on-error` is the
money bug the tests require found as `double_payout`: an HTTP error re-opens the link at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from target.common.server import serve  # noqa: E402
from target.node.invoices import InvoiceError, decode  # noqa: E402
from target.node.lnd_client import LndRestNodeClient, NodeUnavailable  # noqa: E402
from target.node.network import PaymentStatus  # noqa: E402

SEND_TIMEOUT_S = 15.0
MIN_WITHDRAWABLE_MSAT = 1_000
LINKS_MAX = 100_000
log = logging.getLogger("withdraw_service")


@dataclass
class WithdrawLink:
    link_id: str
    k1: str
    amount_msat: int
    state: str = "open"  # open | pending | spent
    payment_hash: str | None = None


@dataclass
class Service:
    node: LndRestNodeClient
    node_url: str
    reopen_on_error: bool
    links: dict[str, WithdrawLink]


SERVICE = web.AppKey("service", Service)


def error(reason: str, status: int = 200) -> web.Response:
    return web.json_response({"status": "ERROR", "reason": reason}, status=status)


async def create_link(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        body = await request.json()
        amount_msat = body["amount_msat"]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "invalid_request"}, status=400)
    if not isinstance(amount_msat, int) or not 0 < amount_msat <= 10**11:
        return web.json_response({"error": "invalid_amount"}, status=400)
    if len(service.links) >= LINKS_MAX:
        return web.json_response({"error": "link_limit"}, status=409)
    link = WithdrawLink(secrets.token_hex(8), secrets.token_hex(16), amount_msat)
    service.links[link.link_id] = link
    lnurl = f"{request.url.origin()}/lnurlw/{link.link_id}"
    return web.json_response({"link_id": link.link_id, "lnurl": lnurl}, status=201)


async def withdraw_request(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    link = service.links.get(request.match_info["link_id"])
    if link is None:
        return error("no such link", 404)
    if link.state == "pending" and link.payment_hash is not None:
        await follow(service, link)
    if link.state != "open":
        return error(f"link is {link.state}")
    return web.json_response(
        {
            "tag": "withdrawRequest",
            "callback": f"{request.url.origin()}/lnurlw/{link.link_id}/callback",
            "k1": link.k1,
            "minWithdrawable": MIN_WITHDRAWABLE_MSAT,
            "maxWithdrawable": link.amount_msat,
            "defaultDescription": "lnchaos withdraw link",
        }
    )


async def callback(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    link = service.links.get(request.match_info["link_id"])
    if link is None or request.query.get("k1") != link.k1:
        return error("no such link or wrong k1", 404)
    if link.state != "open":
        return error(f"link is {link.state}")
    payment_request = request.query.get("pr", "")
    link.state = "pending"  # taken before any await: two callbacks never both pay
    try:
        invoice = decode(payment_request)  # locally, as wallets do: the node only pays
    except InvoiceError as err:
        link.state = "open"  # nothing was sent
        return error(f"invoice not understood: {err}")
    if not MIN_WITHDRAWABLE_MSAT <= invoice.amount_msat <= link.amount_msat:
        link.state = "open"
        return error("amount out of the link's bounds")
    link.payment_hash = invoice.payment_hash
    try:
        answer = await send_sync(service, payment_request)
    except (aiohttp.ClientError, TimeoutError) as err:
        if service.reopen_on_error:
            link.state = "open"  # THE BUG: an error is taken for a failed payment
            print(f"ambiguous send of {link.link_id}: {err!r}; re-opened", flush=True)
            return error(f"payment failed: {err}")
        await follow(service, link)
        print(f"ambiguous send of {link.link_id}: {err!r}; now {link.state}", flush=True)
        return done(link)
    if answer.get("payment_error"):
        link.state = "open"  # the node says it failed: the link may pay another invoice
        return error(f"payment failed: {answer['payment_error']}")
    link.state = "spent"
    return done(link)


def done(link: WithdrawLink) -> web.Response:
    if link.state == "spent":
        return web.json_response({"status": "OK"})
    return error("payment failed" if link.state == "open" else "payment pending")


async def send_sync(service: Service, payment_request: str) -> dict:
    """SendPaymentSync: one answer once the payment is final; a 5xx raises (ambiguous)."""
    url = f"{service.node_url}/v1/channels/transactions"
    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT_S)
    headers = {"Grpc-Metadata-macaroon": "00"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        async with session.post(url, json={"payment_request": payment_request}) as resp:
            resp.raise_for_status()
            return await resp.json()


async def follow(service: Service, link: WithdrawLink) -> None:
    """A pending link's payment, asked of the node: paid -> spent; failed or never started ->
    open again; in flight or the node unreachable -> still pending (never re-opened blind)."""
    assert link.payment_hash is not None
    try:
        truth = await service.node.lookup(link.payment_hash)
    except NodeUnavailable:
        return
    if truth.status == PaymentStatus.SUCCEEDED:
        link.state = "spent"
    elif truth.status in (PaymentStatus.FAILED, PaymentStatus.UNKNOWN):
        link.state = "open"


def create_app(node_url: str, reopen_on_error: bool) -> web.Application:
    app = web.Application()

    async def node_client(app: web.Application):  # type: ignore[no-untyped-def]
        node = LndRestNodeClient(node_url)
        app[SERVICE] = Service(node, node_url.rstrip("/"), reopen_on_error, {})
        yield
        await node.close()

    app.cleanup_ctx.append(node_client)
    app.router.add_post("/links", create_link)
    app.router.add_get("/lnurlw/{link_id}", withdraw_request)
    app.router.add_get("/lnurlw/{link_id}/callback", callback)
    app.router.add_get("/health", health)
    return app


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--node-url", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reopen-on-error", action="store_true")
    args = parser.parse_args()
    app = create_app(args.node_url, args.reopen_on_error)
    return asyncio.run(serve(app, args.port, name="withdraw service"))


if __name__ == "__main__":
    sys.exit(main())
