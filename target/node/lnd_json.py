"""LND's REST JSON, as grpc-gateway maps its protobuf messages (lnd's marshaler options:
proto field names, unpopulated fields emitted).

- int64/uint64 are JSON strings ("1000"); int32/uint32 are numbers; bools are bools;
- `bytes` fields are standard base64 in responses; requests may use standard or URL-safe
  base64, padded or not (as protojson accepts);
- enums are their names ("SUCCEEDED");
- errors are google.rpc.Status `{"code": <grpc code>, "message": ..., "details": []}` with the
  HTTP status grpc-gateway maps the code to; a streaming call that fails sends
  `{"error": <Status>}` as its (last) line.

Shapes follow lnrpc/lightning.swagger.json and lnrpc/routerrpc/router.swagger.json.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .invoices import Invoice
from .multipart import PartOutcome
from .network import FailureReason, Payment, PaymentStatus
from .receiving import InvoiceState, OwnInvoice

ZERO_PREIMAGE_HEX = "0" * 64
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
HEX66 = re.compile(r"^0[23][0-9a-fA-F]{64}$")  # a compressed public key: a node id


class Code(IntEnum):
    """gRPC status codes (google.golang.org/grpc/codes)."""

    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


# grpc-gateway's runtime.HTTPStatusFromCode.
HTTP_STATUS = {
    Code.CANCELED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.UNAUTHENTICATED: 401,
}


class LndError(Exception):
    """An error as LND's REST proxy answers it."""

    def __init__(self, code: Code, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def status(self) -> dict[str, Any]:
        return {"code": int(self.code), "message": self.message, "details": []}


def invalid(message: str) -> LndError:
    return LndError(Code.INVALID_ARGUMENT, message)


# ---- request decoding -------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hex_to_b64(value_hex: str | None) -> str:
    return b64(bytes.fromhex(value_hex)) if value_hex else ""


def decode_bytes(value: object, name: str) -> bytes:
    """A protobuf `bytes` field from JSON: standard or URL-safe base64, padding optional."""
    if not isinstance(value, str):
        raise invalid(f"{name}: bytes must be a base64 string")
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{name}: illegal base64 data") from None


def decode_int(value: object, name: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """An int64/uint64 field: a JSON number or a decimal string (grpc-gateway takes both)."""
    if isinstance(value, bool):
        raise invalid(f"{name}: invalid value for integer field")
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
        number = int(value.strip())
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise invalid(f"{name}: invalid value for integer field")
    if not minimum <= number <= maximum:
        raise invalid(f"{name}: must be between {minimum} and {maximum}")
    return number


def decode_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false", "1", "0"):
        return value in ("true", "1")
    raise invalid(f"{name}: invalid value for bool field")


def decode_str(value: object, name: str, *, max_len: int = 4096) -> str:
    if not isinstance(value, str):
        raise invalid(f"{name}: invalid value for string field")
    if len(value) > max_len:
        raise invalid(f"{name}: longer than {max_len}")
    return value


def check_fields(body: dict[str, Any], known: frozenset[str]) -> None:
    """protojson refuses unknown fields; known ones we do not simulate are accepted, ignored."""
    for key in body:
        if key not in known:
            raise invalid(f'proto: unknown field "{key}"')


def decode_fee_limit(value: object, amount_msat: int) -> int:
    """lnrpc.FeeLimit (SendPaymentSync's `fee_limit`), in msat: one of fixed (sat), fixed_msat,
    percent (of the amount); none at all: the amount itself, as LND's CalculateFeeLimit bounds
    it; an explicit zero: zero-fee routes only."""
    if value is None:
        return amount_msat
    if not isinstance(value, dict):
        raise invalid("fee_limit: must be an object")
    check_fields(value, FEE_LIMIT_FIELDS)
    given = {k: v for k, v in value.items() if v not in (None, 0, "0")}
    if len(given) > 1:
        raise invalid("fee_limit: only one of fixed, fixed_msat, percent")
    if "fixed" in given:
        return 1000 * decode_int(given["fixed"], "fee_limit.fixed")
    if "fixed_msat" in given:
        return decode_int(given["fixed_msat"], "fee_limit.fixed_msat")
    if "percent" in given:
        return amount_msat * decode_int(given["percent"], "fee_limit.percent") // 100
    return 0


@dataclass(frozen=True)
class RouteTerms:
    """What the node needs of an lnrpc.Route given to SendToRouteV2."""

    pub_key: str  # the final hop: the payee
    amount_msat: int  # what the final hop receives
    fee_msat: int  # all hops' fees
    payment_addr: str | None  # hex, from the final hop's MPP record (None: no record)
    total_msat: int  # the MPP record's total_amt_msat (0: no record)


def parse_route(route: object) -> RouteTerms:
    if not isinstance(route, dict):
        raise invalid("route: must be an object")
    hops = route.get("hops")
    if not isinstance(hops, list) or not hops or not all(isinstance(h, dict) for h in hops):
        raise invalid("route.hops: at least one hop is required")
    last = hops[-1]
    pub_key = decode_str(last.get("pub_key", ""), "pub_key")
    if not HEX66.match(pub_key):
        raise invalid("route.hops.pub_key: must be a 66-hex-character node id")
    amount_msat = _msat(last, "amt_to_forward")
    if amount_msat <= 0:
        raise invalid("route: the final hop must receive an amount")
    fee_msat = _msat(route, "total_fees") or sum(_msat(h, "fee") for h in hops)
    mpp = last.get("mpp_record")
    payment_addr, total_msat = None, 0
    if mpp:
        if not isinstance(mpp, dict):
            raise invalid("mpp_record: must be an object")
        payment_addr = decode_bytes(mpp.get("payment_addr", ""), "mpp_record.payment_addr").hex()
        total_msat = decode_int(mpp.get("total_amt_msat", 0), "mpp_record.total_amt_msat")
    return RouteTerms(pub_key.lower(), amount_msat, fee_msat, payment_addr, total_msat)


def _msat(obj: dict[str, Any], name: str) -> int:
    """`name_msat`, else `name` in sat (lnrpc gives both forms of route amounts)."""
    if obj.get(f"{name}_msat") not in (None, 0, "0"):
        return decode_int(obj[f"{name}_msat"], f"{name}_msat")
    return 1000 * decode_int(obj.get(name, 0), name)


def hash_from_path(value: str) -> str:
    """A payment hash in a URL path (`bytes` there: URL-safe base64; hex also accepted)."""
    if HEX64.match(value):
        return value.lower()
    raw = decode_bytes(value, "payment_hash")
    if len(raw) != 32:
        raise invalid("payment_hash: invalid hash length")
    return raw.hex()


# ---- response encoding ------------------------------------------------------------------------


def i64(value: int) -> str:
    return str(int(value))


def payment_status_name(status: PaymentStatus) -> str:
    return {
        PaymentStatus.IN_FLIGHT: "IN_FLIGHT",
        PaymentStatus.SUCCEEDED: "SUCCEEDED",
        PaymentStatus.FAILED: "FAILED",
    }.get(status, "UNKNOWN")


CHANNEL_ID = 1099511627776  # the one simulated channel (block 1, tx 0, output 0)


def _route(payment: Payment, fee_msat: int, destination: str) -> dict[str, Any]:
    hop = hop_json(destination, payment.amount_msat, fee_msat, CHANNEL_ID)
    return route_json([hop], payment.amount_msat, fee_msat)


def failure_json(code: str, htlc_msat: int, source_index: int = 1) -> dict[str, Any]:
    """lnrpc.Failure of a failed HTLC (`code`: a FailureCode name)."""
    return {
        "code": code,
        "channel_update": None,
        "htlc_msat": i64(htlc_msat),
        "onion_sha_256": "",
        "cltv_expiry": 0,
        "flags": 0,
        "failure_source_index": source_index,
        "height": 0,
    }


def hop_json(pub_key: str, amount_msat: int, fee_msat: int, chan_id: int) -> dict[str, Any]:
    """lnrpc.Hop: `amount_msat` forwarded to the next hop, `fee_msat` this hop's fee."""
    return {
        "chan_id": i64(chan_id),
        "chan_capacity": "100000000",
        "amt_to_forward": i64(amount_msat // 1000),
        "fee": i64(fee_msat // 1000),
        "expiry": 144,
        "amt_to_forward_msat": i64(amount_msat),
        "fee_msat": i64(fee_msat),
        "pub_key": pub_key,
        "tlv_payload": True,
        "mpp_record": None,
        "amp_record": None,
        "custom_records": {},
        "metadata": "",
        "blinding_point": "",
        "encrypted_data": "",
        "total_amt_msat": "0",
    }


def route_json(hops: list[dict[str, Any]], amount_msat: int, fee_msat: int) -> dict[str, Any]:
    """lnrpc.Route over `hops` delivering `amount_msat` for `fee_msat` in all."""
    total_msat = amount_msat + fee_msat
    return {
        "total_time_lock": 144 * len(hops),
        "total_fees": i64(fee_msat // 1000),
        "total_amt": i64(total_msat // 1000),
        "hops": hops,
        "total_fees_msat": i64(fee_msat),
        "total_amt_msat": i64(total_msat),
        "first_hop_amount_msat": i64(total_msat),
        "custom_channel_data": "",
    }


def htlc_attempt_json(outcome: PartOutcome, route: dict[str, Any]) -> dict[str, Any]:
    """lnrpc.HTLCAttempt of one part sent to a route (SendToRouteV2), once it ended."""
    payment = outcome.payment
    settled = outcome.succeeded
    amount_msat = decode_int(route.get("total_amt_msat", "0"), "route.total_amt_msat")
    return {
        "attempt_id": i64(outcome.attempt_id),
        "status": "SUCCEEDED" if settled else "FAILED",
        "route": route,
        "attempt_time_ns": i64(outcome.attempt_time_ns),
        "resolve_time_ns": i64(outcome.resolve_time_ns),
        "failure": None if settled else failure_json(outcome.failure_code, amount_msat),
        "preimage": hex_to_b64(payment.preimage) if settled and payment else "",
    }


def payment_json(payment: Payment) -> dict[str, Any]:
    """lnrpc.Payment. While in flight the fee is not known yet (0) and the preimage is zeros."""
    status = payment.status
    settled = status is PaymentStatus.SUCCEEDED
    fee_msat = payment.fee_msat if settled else 0
    preimage_hex = payment.preimage if settled and payment.preimage else ZERO_PREIMAGE_HEX
    htlcs: list[dict[str, Any]] = []
    no_route = status is PaymentStatus.FAILED and payment.failure_reason in (
        FailureReason.NO_ROUTE,
        FailureReason.INSUFFICIENT_BALANCE,
    )
    if not no_route:
        htlc_status = {
            PaymentStatus.SUCCEEDED: "SUCCEEDED",
            PaymentStatus.FAILED: "FAILED",
        }.get(status, "IN_FLIGHT")
        failure = None
        if status is PaymentStatus.FAILED:
            code = (
                "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
                if payment.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS
                else "TEMPORARY_CHANNEL_FAILURE"
            )
            failure = failure_json(code, payment.amount_msat)
        htlcs.append(
            {
                "attempt_id": i64(payment.payment_index),
                "status": htlc_status,
                "route": _route(payment, payment.outcome_fee_msat, payment.destination),
                "attempt_time_ns": i64(payment.created_ms * 1_000_000),
                "resolve_time_ns": i64((payment.resolved_ms or 0) * 1_000_000),
                "failure": failure,
                "preimage": hex_to_b64(payment.preimage) if settled else "",
            }
        )
    return {
        "payment_hash": payment.payment_hash,
        "value": i64(payment.amount_msat // 1000),
        "creation_date": i64(payment.created_ms // 1000),
        "fee": i64(fee_msat // 1000),
        "payment_preimage": preimage_hex,
        "value_sat": i64(payment.amount_msat // 1000),
        "value_msat": i64(payment.amount_msat),
        "payment_request": payment.payment_request,
        "status": payment_status_name(status),
        "fee_sat": i64(fee_msat // 1000),
        "fee_msat": i64(fee_msat),
        "creation_time_ns": i64(payment.created_ms * 1_000_000),
        "htlcs": htlcs,
        "payment_index": i64(payment.payment_index),
        "failure_reason": str(payment.failure_reason),
        "first_hop_custom_records": {},
    }


def invoice_json(invoice: OwnInvoice) -> dict[str, Any]:
    """lnrpc.Invoice."""
    settled = invoice.state is InvoiceState.SETTLED
    paid = invoice.state in (InvoiceState.SETTLED, InvoiceState.ACCEPTED)
    htlcs = []
    if paid:
        htlcs.append(
            {
                "chan_id": "1099511627776",
                "htlc_index": i64(invoice.add_index),
                "amt_msat": i64(invoice.amt_paid_msat),
                "accept_height": 800,
                "accept_time": i64(invoice.accepted_s),
                "resolve_time": i64(invoice.settled_s),
                "expiry_height": 800 + invoice.cltv_expiry,
                "state": "SETTLED" if settled else "ACCEPTED",
                "custom_records": {},
                "mpp_total_amt_msat": i64(invoice.amt_paid_msat),
                "amp": None,
            }
        )
    amt_paid_msat = invoice.amt_paid_msat if settled else 0
    return {
        "memo": invoice.memo,
        "r_preimage": hex_to_b64(invoice.preimage),
        "r_hash": hex_to_b64(invoice.payment_hash),
        "value": i64(invoice.amount_msat // 1000),
        "value_msat": i64(invoice.amount_msat),
        "settled": settled,
        "creation_date": i64(invoice.created_s),
        "settle_date": i64(invoice.settled_s),
        "payment_request": invoice.payment_request,
        "description_hash": hex_to_b64(invoice.description_hash),
        "expiry": i64(invoice.expiry_s),
        "fallback_addr": "",
        "cltv_expiry": i64(invoice.cltv_expiry),
        "route_hints": [],
        "private": invoice.private,
        "add_index": i64(invoice.add_index),
        "settle_index": i64(invoice.settle_index),
        "amt_paid": i64(amt_paid_msat),  # deprecated; LND puts msat here
        "amt_paid_sat": i64(amt_paid_msat // 1000),
        "amt_paid_msat": i64(amt_paid_msat),
        "state": str(invoice.state),
        "htlcs": htlcs,
        "features": {},
        "is_keysend": False,
        "payment_addr": hex_to_b64(invoice.payment_addr),
        "is_amp": False,
        "amp_invoice_state": {},
    }


def add_invoice_response(invoice: OwnInvoice) -> dict[str, Any]:
    """lnrpc.AddInvoiceResponse."""
    return {
        "r_hash": hex_to_b64(invoice.payment_hash),
        "payment_request": invoice.payment_request,
        "add_index": i64(invoice.add_index),
        "payment_addr": hex_to_b64(invoice.payment_addr),
    }


def payreq_json(invoice: Invoice) -> dict[str, Any]:
    """lnrpc.PayReq (hashes as hex strings there, payment_addr as bytes)."""
    return {
        "destination": invoice.payee,
        "payment_hash": invoice.payment_hash,
        "num_satoshis": i64(invoice.amount_msat // 1000),
        "timestamp": i64(invoice.created_s),
        "expiry": i64(invoice.expiry_s),
        "description": invoice.description or "",
        "description_hash": invoice.description_hash or "",
        "fallback_addr": "",
        "cltv_expiry": i64(invoice.min_final_cltv_expiry),
        "route_hints": [],
        "payment_addr": hex_to_b64(invoice.payment_addr),
        "num_msat": i64(invoice.amount_msat),
        "features": {
            "9": {"name": "tlv-onion", "is_required": False, "is_known": True},
            "14": {"name": "payment-addr", "is_required": True, "is_known": True},
        },
        "blinded_paths": [],
    }


def getinfo_json(
    pubkey: str,
    *,
    alias: str,
    block_height: int,
    peers: int,
    version: str = "0.18.0-beta",
    uris: list[str] | None = None,
) -> dict[str, Any]:
    """lnrpc.GetInfoResponse of the mock: one channel to the simulated network, regtest."""
    return {
        "version": f"{version} commit=lnchaos-mock",
        "commit_hash": "lnchaos",
        "identity_pubkey": pubkey,
        "alias": alias,
        "color": "#3399ff",
        "num_pending_channels": 0,
        "num_active_channels": 1,
        "num_inactive_channels": 0,
        "num_peers": peers,
        "block_height": block_height,
        "block_hash": "0" * 64,
        "best_header_timestamp": i64(int(time.time())),
        "synced_to_chain": True,
        "synced_to_graph": True,
        "testnet": False,
        "chains": [{"chain": "bitcoin", "network": "regtest"}],
        "uris": uris or [],
        "features": {},
        "require_htlc_interceptor": False,
        "store_final_htlc_resolutions": False,
    }


def amount_json(msat: int) -> dict[str, str]:
    """lnrpc.Amount."""
    msat = max(0, msat)
    return {"sat": i64(msat // 1000), "msat": i64(msat)}


def channel_balance_json(
    local_msat: int, remote_msat: int, unsettled_local_msat: int
) -> dict[str, Any]:
    """lnrpc.ChannelBalanceResponse."""
    return {
        "balance": i64(max(0, local_msat) // 1000),  # deprecated
        "pending_open_balance": "0",  # deprecated
        "local_balance": amount_json(local_msat),
        "remote_balance": amount_json(remote_msat),
        "unsettled_local_balance": amount_json(unsettled_local_msat),
        "unsettled_remote_balance": amount_json(0),
        "pending_open_local_balance": amount_json(0),
        "pending_open_remote_balance": amount_json(0),
    }


HOLD_INVOICE_FIELDS = frozenset(
    "memo hash value value_msat description_hash expiry fallback_addr cltv_expiry route_hints"
    " private".split()
)
SEND_TO_ROUTE_FIELDS = frozenset(
    ("payment_hash", "route", "skip_temp_err", "first_hop_custom_records")
)

# Field names of the request messages (lnrpc.Invoice, routerrpc.SendPaymentRequest).
INVOICE_FIELDS = frozenset(
    "memo r_preimage r_hash value value_msat settled creation_date settle_date payment_request"
    " description_hash expiry fallback_addr cltv_expiry route_hints private add_index"
    " settle_index amt_paid amt_paid_sat amt_paid_msat state htlcs features is_keysend"
    " payment_addr is_amp amp_invoice_state is_blinded blinded_path_config".split()
)
# lnrpc.SendRequest: SendPaymentSync (POST /v1/channels/transactions), the legacy synchronous send
# that older wallets still use (LNbits before 1.3, for one).
SEND_SYNC_FIELDS = frozenset(
    "dest dest_string amt amt_msat payment_hash payment_hash_string payment_request"
    " final_cltv_delta fee_limit outgoing_chan_id last_hop_pubkey cltv_limit dest_custom_records"
    " allow_self_payment dest_features payment_addr".split()
)
FEE_LIMIT_FIELDS = frozenset(("fixed", "fixed_msat", "percent"))
SEND_FIELDS = frozenset(
    "dest amt amt_msat payment_hash final_cltv_delta payment_addr payment_request"
    " timeout_seconds fee_limit_sat fee_limit_msat outgoing_chan_id outgoing_chan_ids"
    " last_hop_pubkey cltv_limit route_hints dest_custom_records allow_self_payment"
    " dest_features max_parts no_inflight_updates max_shard_size_msat amp time_pref"
    " cancelable first_hop_custom_records".split()
)


# LND's channeldb.FailureReason.Error(): what SendPaymentSync puts in payment_error.
FAILURE_ERRORS = {
    FailureReason.TIMEOUT: "timeout",
    FailureReason.NO_ROUTE: "no_route",
    FailureReason.ERROR: "error",
    FailureReason.INCORRECT_PAYMENT_DETAILS: "incorrect_payment_details",
    FailureReason.INSUFFICIENT_BALANCE: "insufficient_balance",
}


def send_response_json(payment_hash_hex: str, outcome: Payment | str) -> dict[str, Any]:
    """lnrpc.SendResponse of a final attempt, or of a refusal (its message): a success carries
    the preimage and the route; a failure or a refusal only `payment_error` and the hash."""
    payment_hash = hex_to_b64(payment_hash_hex)
    if isinstance(outcome, str):
        error = outcome
    elif outcome.status is PaymentStatus.SUCCEEDED:
        return {
            "payment_error": "",
            "payment_preimage": hex_to_b64(outcome.preimage or ZERO_PREIMAGE_HEX),
            "payment_route": _route(outcome, outcome.fee_msat, outcome.destination),
            "payment_hash": payment_hash,
        }
    else:
        error = FAILURE_ERRORS.get(outcome.failure_reason, "error")
    return {
        "payment_error": error,
        "payment_preimage": "",
        "payment_route": None,
        "payment_hash": payment_hash,
    }
