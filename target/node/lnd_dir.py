"""LND's directory on disk, as LND lays it out, so a client configured for a real LND (the path of
`tls.cert` and of `admin.macaroon`) runs on the node unchanged:

    DIR/tls.cert, DIR/tls.key                                  (self-signed, ECDSA P-256, as LND)
    DIR/data/chain/bitcoin/regtest/{admin,invoice,readonly}.macaroon

Files already there are kept (LND keeps its certificate and macaroons across restarts too); a
missing certificate or macaroon set is made anew. The macaroons are real macaroons (libmacaroons'
v2 binary format, the identifier LND's bakery writes: version 3 and a protobuf MacaroonId with
the operations LND grants each file), so clients that parse them (Go's lndclient) can; the node
accepts exactly the three files' bytes (no third-party caveats, no macaroons baked later).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MACAROON_SUBDIR = Path("data/chain/bitcoin/regtest")
CERT_VALIDITY_DAYS = 425  # LND's default tlscertduration: 14 months
ROOT_KEY_BYTES = 32

# The operations (entity, actions) LND grants each macaroon file (lnd's rpcserver.go:
# readPermissions, writePermissions, invoicePermissions).
READ_OPS = {
    entity: ("read",)
    for entity in (
        "onchain",
        "offchain",
        "address",
        "message",
        "peers",
        "info",
        "invoices",
        "signer",
        "macaroon",
    )
}
WRITE_OPS = {
    "onchain": ("write",),
    "offchain": ("write",),
    "address": ("write",),
    "message": ("write",),
    "peers": ("write",),
    "info": ("write",),
    "invoices": ("write",),
    "signer": ("generate",),
    "macaroon": ("generate", "write"),
}
INVOICE_OPS = {
    "invoices": ("read", "write"),
    "address": ("read", "write"),
    "onchain": ("read",),
}


def _merge(*groups: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    merged: dict[str, set[str]] = {}
    for group in groups:
        for entity, actions in group.items():
            merged.setdefault(entity, set()).update(actions)
    return {entity: tuple(sorted(actions)) for entity, actions in sorted(merged.items())}


MACAROON_OPS = {
    "admin": _merge(READ_OPS, WRITE_OPS),
    "invoice": _merge(INVOICE_OPS),
    "readonly": _merge(READ_OPS),
}


@dataclass(frozen=True)
class LndDir:
    """The written directory: its paths, and each macaroon's bytes with what it grants."""

    root: Path
    macaroons: dict[str, bytes]  # "admin" | "invoice" | "readonly" -> the file's bytes

    @property
    def cert_path(self) -> Path:
        return self.root / "tls.cert"

    @property
    def key_path(self) -> Path:
        return self.root / "tls.key"

    def macaroon_path(self, name: str = "admin") -> Path:
        return self.root / MACAROON_SUBDIR / f"{name}.macaroon"

    def grants(self, macaroon: bytes) -> dict[str, tuple[str, ...]] | None:
        """The operations a macaroon allows; None when it is none of the three files."""
        for name, raw in self.macaroons.items():
            if hmac.compare_digest(raw, macaroon):
                return MACAROON_OPS[name]
        return None

    def ssl_context(self) -> ssl.SSLContext:
        """The server side of TLS with the directory's certificate (TLS 1.2 and up, as LND)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def prepare_lnd_dir(root: Path, hosts: list[str]) -> LndDir:
    """Make (or keep) DIR/tls.cert, DIR/tls.key and the three macaroons; `hosts` go into the
    certificate's names (127.0.0.1 and localhost always)."""
    root.mkdir(parents=True, exist_ok=True)
    lnd_dir = LndDir(root, {})
    if not (lnd_dir.cert_path.exists() and lnd_dir.key_path.exists()):
        _write_certificate(lnd_dir, hosts)
    macaroon_dir = root / MACAROON_SUBDIR
    paths = {name: lnd_dir.macaroon_path(name) for name in MACAROON_OPS}
    if not all(path.exists() for path in paths.values()):
        macaroon_dir.mkdir(parents=True, exist_ok=True)
        root_key = secrets.token_bytes(ROOT_KEY_BYTES)
        for name, path in paths.items():
            _write_private(path, bake(root_key, MACAROON_OPS[name]))
    return LndDir(root, {name: path.read_bytes() for name, path in paths.items()})


def _write_private(path: Path, data: bytes) -> None:
    """Written with mode 0600 from the start (LND writes its key and admin macaroon so)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


# ---- the certificate --------------------------------------------------------------------------


def _write_certificate(lnd_dir: LndDir, hosts: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1"}
    for host in hosts:
        try:
            addresses.add(str(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lnd autogenerated cert"),
            x509.NameAttribute(NameOID.COMMON_NAME, "lnchaos"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        # a self-signed CA, as LND's: clients pin it as their trust root
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        lnd_dir.key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    lnd_dir.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# ---- macaroons (libmacaroons v2 binary; LND's bakery identifier) ------------------------------

FIELD_EOS, FIELD_LOCATION, FIELD_IDENTIFIER, FIELD_SIGNATURE = 0, 1, 2, 6
BAKERY_VERSION_3 = 3


def bake(root_key: bytes, ops: dict[str, tuple[str, ...]], *, location: str = "lnd") -> bytes:
    """A macaroon as LND's bakery bakes one: no caveats, identifier = version 3 + MacaroonId."""
    identifier = bytes([BAKERY_VERSION_3]) + _macaroon_id(secrets.token_bytes(24), b"0", ops)
    # libmacaroons/gopkg.in/macaroon.v2: the signature key is derived from the root key
    derived = hmac.digest(b"macaroons-key-generator", root_key, hashlib.sha256)
    signature = hmac.digest(derived, identifier, hashlib.sha256)
    return b"".join(
        (
            b"\x02",
            _field(FIELD_LOCATION, location.encode()),
            _field(FIELD_IDENTIFIER, identifier),
            b"\x00",  # end of the header
            b"\x00",  # end of the (empty) caveat list
            _field(FIELD_SIGNATURE, signature),
        )
    )


def _macaroon_id(nonce: bytes, storage_id: bytes, ops: dict[str, tuple[str, ...]]) -> bytes:
    """lnd's macaroons/macaroonpb MacaroonId {nonce=1, storageId=2, ops=3 {entity=1, actions=2}}."""
    out = _proto_bytes(1, nonce) + _proto_bytes(2, storage_id)
    for entity, actions in ops.items():
        op = _proto_bytes(1, entity.encode())
        op += b"".join(_proto_bytes(2, a.encode()) for a in actions)
        out += _proto_bytes(3, op)
    return out


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(kind: int, data: bytes) -> bytes:
    return _varint(kind) + _varint(len(data)) + data


def _proto_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


__all__ = ["MACAROON_OPS", "LndDir", "bake", "prepare_lnd_dir"]
