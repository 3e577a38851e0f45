"""`--lnd-dir`: LND's files on disk (tls.cert, tls.key, the three macaroons where LND puts them),
REST over TLS with that certificate, and macaroons checked as LND checks them."""

from __future__ import annotations

import ipaddress
import re
import ssl
import stat
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from lnd_harness import ADMIN_TOKEN, node_app, run, server_process

from target.node.lnd_dir import MACAROON_SUBDIR, prepare_lnd_dir
from target.node.lnrpc.lightning_pb2 import GetInfoRequest
from target.node.lnrpc.lightning_pb2_grpc import LightningStub

NAMES = ("admin", "invoice", "readonly")


def test_lnd_dir_files_are_laid_out_as_lnd_lays_them(tmp_path: Path) -> None:
    lnd_dir = prepare_lnd_dir(tmp_path / "lnd", ["127.0.0.2"])
    root = tmp_path / "lnd"
    assert lnd_dir.cert_path == root / "tls.cert" and lnd_dir.key_path == root / "tls.key"
    cert = x509.load_pem_x509_certificate(lnd_dir.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("127.0.0.2") in ips
    assert stat.S_IMODE(lnd_dir.key_path.stat().st_mode) == 0o600
    macaroons = {}
    for name in NAMES:
        path = root / MACAROON_SUBDIR / f"{name}.macaroon"
        assert path == root / "data/chain/bitcoin/regtest" / f"{name}.macaroon"
        macaroons[name] = path.read_bytes()
        # v2 binary, location "lnd", identifier of LND's bakery version 3: as LND's files begin
        assert macaroons[name].hex().startswith("0201036c6e6402"), name
    assert len(set(macaroons.values())) == 3
    again = prepare_lnd_dir(root, [])  # a restart keeps the files
    assert again.macaroons == macaroons
    assert again.cert_path.read_bytes() == lnd_dir.cert_path.read_bytes()


def test_rest_over_tls_with_the_written_certificate_and_macaroons(tmp_path: Path) -> None:
    lnd_dir = prepare_lnd_dir(tmp_path / "lnd", [])
    other = prepare_lnd_dir(tmp_path / "other", [])  # another node's admin macaroon

    async def scenario() -> None:
        async with node_app(tmp=tmp_path, lnd_dir=lnd_dir) as node:
            assert node.url.startswith("https://127.0.0.1:")
            status, info = await node.get("/v1/getinfo")
            assert status == 200 and info["identity_pubkey"] == node.node.pubkey
            # LND's refusals: gRPC code 2 (Unknown), grpc-gateway's HTTP 500
            refusals = {
                "": "expected 1 macaroon, got 0",
                other.macaroons["admin"].hex(): (
                    "verification failed: signature mismatch after caveat verification"
                ),
                "zz": "encoding/hex: invalid byte: U+007A 'z'",
                lnd_dir.macaroons["readonly"].hex(): "permission denied",
            }
            for macaroon, message in refusals.items():
                headers = {"Grpc-Metadata-macaroon": macaroon} if macaroon else {}
                body = {"value_msat": "1000"}
                async with node.http.post(
                    node.url + "/v1/invoices", json=body, headers=headers
                ) as r:
                    answer = await r.json(content_type=None)
                    assert (r.status, answer) == (
                        500,
                        {"code": 2, "message": message, "details": []},
                    ), macaroon
            assert node.node.receiver._next_add_index == 1  # nothing added by a refused call
            invoice_mac = lnd_dir.macaroons["invoice"].hex()
            for path, allowed in (("/v1/invoices", True), ("/v2/router/send", False)):
                body = {"value_msat": "1000"} if allowed else {"payment_request": "x"}
                async with node.http.post(
                    node.url + path, json=body, headers={"Grpc-Metadata-macaroon": invoice_mac}
                ) as r:
                    assert (r.status == 200) is allowed, (path, await r.text())
            # a client that does not trust this certificate refuses the node
            async with aiohttp.ClientSession() as untrusting:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await untrusting.get(node.url + "/v1/getinfo")

    run(scenario())


def test_lnchaos_node_with_lnd_dir_serves_https_and_grpc(tmp_path: Path) -> None:
    """The command as a client meets it (uvloop's event loop under both faces): the files it
    wrote, REST over TLS, gRPC over TLS, the same node behind both."""
    lnd_path = tmp_path / "lnd"
    node = server_process(
        "lnchaos.cli",
        ["node", "--port", "0", "--admin-token", ADMIN_TOKEN, "--lnd-dir", str(lnd_path),
         "--grpc-port", "0", "--db", str(tmp_path / "node.sqlite")],
        tmp_path / "node.log",
    )  # fmt: skip
    with node.start(start_timeout_s=30):
        assert node.url.startswith("https://127.0.0.1:")
        found = re.search(r"gRPC on 127\.0\.0\.1:([0-9]+)", node.log_text())
        assert found, node.log_tail()
        macaroon = (lnd_path / MACAROON_SUBDIR / "admin.macaroon").read_bytes().hex()
        cert = (lnd_path / "tls.cert").read_bytes()
        tls = ssl.create_default_context(cadata=cert.decode())

        async def getinfo_both() -> tuple[str, str]:
            connector = aiohttp.TCPConnector(ssl=tls)
            async with aiohttp.ClientSession(connector=connector) as http:
                headers = {"Grpc-Metadata-macaroon": macaroon}
                async with http.get(node.url + "/v1/getinfo", headers=headers) as r:
                    assert r.status == 200
                    rest_pubkey = (await r.json())["identity_pubkey"]
            credentials = grpc.ssl_channel_credentials(cert)
            async with grpc.aio.secure_channel(f"127.0.0.1:{found[1]}", credentials) as channel:
                info = await LightningStub(channel).GetInfo(
                    GetInfoRequest(), metadata=[("macaroon", macaroon)], timeout=10
                )
            return rest_pubkey, info.identity_pubkey

        rest_pubkey, grpc_pubkey = run(getinfo_both())
        assert rest_pubkey == grpc_pubkey
