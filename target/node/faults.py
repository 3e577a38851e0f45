"""The node's fault settings: what the simulated network does to payments and to its HTTP routes,
and their command-line options (one per field, for `lnchaos target` and `lnchaos node`)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..common.errors import bad_request


@dataclass
class FaultSettings:
    """What the simulated network does to outgoing payments; changeable at run time."""

    timeout_rate: float = 0.01  # the payment outlives the caller's deadline
    failure_rate: float = 0.0  # a definite failure
    late_settle_rate: float = 0.5  # of timed-out payments, the share that settles late
    latency_ms_median: float = 5.0  # lognormal route latency
    latency_spike_rate: float = 0.0  # share of payments with an extra latency spike
    latency_spike_ms: float = 200.0
    inflight_hold_ms: float = 1500.0  # a timed-out payment stays in flight this long
    load_coupling: float = 0.0  # extra timeout chance per payment in flight
    fee_base_msat: int = 1000
    fee_ppm: int = 1000
    # The edge workload (docs/edge-workload.md): fees up to the caller's limit, long holds.
    fee_at_limit_rate: float = 0.0  # share of payments charged exactly the caller's fee limit
    fee_to_limit_rate: float = 0.0  # share whose fee is drawn uniformly up to that limit
    long_hold_rate: float = 0.0  # of timed-out payments, the share held long_hold_ms instead
    long_hold_ms: float = 12_000.0
    # HTTP faults of the node's LND REST routes only, drawn per request (docs/lnd-rest.md).
    http_latency_rate: float = 0.0  # share of requests delayed by http_latency_ms
    http_latency_ms: float = 200.0
    http_error_rate: float = 0.0  # share answered with a 5xx LND-shaped error
    http_reset_rate: float = 0.0  # share whose connection is reset
    http_stall_rate: float = 0.0  # share that stall http_stall_ms, then close
    http_stall_ms: float = 2000.0
    http_fault_after_rate: float = 0.5  # of faulted requests, the share hit after the node acted

    _RATES = (
        "timeout_rate", "failure_rate", "late_settle_rate", "latency_spike_rate",
        "http_latency_rate", "http_error_rate", "http_reset_rate", "http_stall_rate",
        "http_fault_after_rate", "fee_at_limit_rate", "fee_to_limit_rate", "long_hold_rate",
    )  # fmt: skip
    _LIMITS_MS = (
        "latency_ms_median", "latency_spike_ms", "inflight_hold_ms", "http_latency_ms",
        "http_stall_ms", "long_hold_ms",
    )  # fmt: skip

    def validate(self) -> None:
        for name in self._RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise bad_request("invalid_fault", f"{name} must be within [0, 1]", field=name)
        if self.timeout_rate + self.failure_rate > 1.0:
            raise bad_request("invalid_fault", "timeout_rate + failure_rate must be at most 1")
        if self.fee_at_limit_rate + self.fee_to_limit_rate > 1.0:
            raise bad_request(
                "invalid_fault", "fee_at_limit_rate + fee_to_limit_rate must be at most 1"
            )
        if self.http_error_rate + self.http_reset_rate + self.http_stall_rate > 1.0:
            raise bad_request(
                "invalid_fault", "http_error_rate + http_reset_rate + http_stall_rate must be <= 1"
            )
        for name in self._LIMITS_MS:
            if not 0.0 <= getattr(self, name) <= 60_000.0:
                raise bad_request("invalid_fault", f"{name} must be within [0, 60000]", field=name)
        if not 0.0 <= self.load_coupling <= 1.0:
            raise bad_request("invalid_fault", "load_coupling must be within [0, 1]")
        if not 0 <= self.fee_base_msat <= 10_000_000 or not 0 <= self.fee_ppm <= 100_000:
            raise bad_request("invalid_fault", "fee_base_msat or fee_ppm out of range")

    def as_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def updated(self, changes: dict[str, object]) -> FaultSettings:
        """A copy with `changes` applied; unknown keys and wrong types are a 400."""
        known = {f.name: f.type for f in dataclasses.fields(self)}
        values = self.as_dict()
        for key, value in changes.items():
            if key not in known:
                raise bad_request("unknown_fault", f"unknown fault setting '{key}'", field=key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad_request("invalid_fault", f"'{key}' must be a number", field=key)
            if known[key] == "int":
                if not isinstance(value, int):
                    raise bad_request("invalid_fault", f"'{key}' must be an integer", field=key)
            values[key] = float(value) if known[key] == "float" else value
        result = FaultSettings(**values)
        result.validate()
        return result


def add_fault_options(parser: argparse.ArgumentParser) -> None:
    """One option per fault setting, named after its field (`--timeout-rate`, ...)."""
    defaults = FaultSettings()
    group = parser.add_argument_group("faults (changeable at run time: PUT /admin/faults)")
    for f in dataclasses.fields(FaultSettings):
        kind = int if f.type == "int" else float
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            default=getattr(defaults, f.name),
            help=f"default {getattr(defaults, f.name)}",
        )


def faults_from(args: argparse.Namespace) -> FaultSettings:
    names = [f.name for f in dataclasses.fields(FaultSettings)]
    return FaultSettings(**{name: getattr(args, name) for name in names})
