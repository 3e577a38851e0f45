"""The LND releases the node can answer as (`--lnd-version`), and what differs between them on
the calls the node serves, from LND's release notes (docs/release-notes/release-notes-0.X.0.md).
docs/lnd.md tables the same differences; one home for them here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LndVersion:
    name: str  # "0.21"
    release: str  # what getinfo's `version` begins with
    # lnrpc.SendPaymentSync (REST POST /v1/channels/transactions): deprecated in 0.19 and 0.20,
    # removed in 0.21 (release notes 0.21.0, "Removed the deprecated payment RPCs", PR 10814)
    send_payment_sync: bool
    # Payment status INITIATED (0.18.0, PR 7175/8177): reported only with
    # routerrpc.usestatusinitiated, which is off by default, so in-flight payments read
    # IN_FLIGHT on every version unless that flag is set
    status_initiated: bool


VERSIONS = {
    v.name: v
    for v in (
        LndVersion("0.17", "0.17.5-beta", send_payment_sync=True, status_initiated=False),
        LndVersion("0.18", "0.18.5-beta", send_payment_sync=True, status_initiated=True),
        LndVersion("0.19", "0.19.3-beta", send_payment_sync=True, status_initiated=True),
        LndVersion("0.20", "0.20.3-beta", send_payment_sync=True, status_initiated=True),
        LndVersion("0.21", "0.21.2-beta", send_payment_sync=False, status_initiated=True),
    )
}
NEWEST = "0.21"

__all__ = ["NEWEST", "VERSIONS", "LndVersion"]
