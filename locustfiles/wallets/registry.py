"""Which adapter `--wallet-api NAME` means: a built-in name, an installed package's entry point
(group `lnchaos.wallet_apis`), or `package.module:Class`.

A package registers its adapter in its own pyproject.toml:

    [project.entry-points."lnchaos.wallet_apis"]
    mywallet = "mywallet_lnchaos.adapter:MyWalletApi"

and `--wallet-api mywallet` then drives it, as `--wallet-api mywallet_lnchaos.adapter:MyWalletApi`
would without the entry point. A built-in name wins over an entry point of the same name (an
installed package cannot replace what the suite's own names mean).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from typing import Any

from locustfiles.wallets.base import ACCOUNTING, CALLS_BY_ACCOUNTING, CONTRACT_VERSION, JUDGED_BY

ENTRY_POINT_GROUP = "lnchaos.wallet_apis"
BUILT_IN = {
    "lnchaos": "locustfiles.wallets.lnchaos:LnchaosWalletApi",
    "lnbits": "locustfiles.wallets.lnbits:LNbitsWalletApi",
    "lnurlw": "locustfiles.wallets.lnurlw:LnurlWithdrawApi",
    "cashu": "locustfiles.wallets.cashu:CashuMintApi",
}
DEFAULT = "lnchaos"
# package.module:Class (dotted names of identifiers)
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class AdapterError(ValueError):
    """`--wallet-api` names no usable adapter; the message says why."""


def installed() -> dict[str, str]:
    """Every adapter name the suite knows, built-in first: name -> `package.module:Class`."""
    names = dict(BUILT_IN)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(entry.name, entry.value)
    return names


def is_spec(name: str) -> bool:
    """`package.module:Class`, as opposed to a registered name."""
    return bool(_SPEC.match(name))


class AdapterNames(list):  # type: ignore[type-arg]
    """`--wallet-api`'s choices: the installed names (the web UI's form lists them), and any
    `package.module:Class` besides (argparse asks `value in choices`)."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (list.__contains__(self, value) or is_spec(value))


def choices() -> AdapterNames:
    return AdapterNames(installed())


def spec_of(name: str) -> str:
    """The `package.module:Class` a name stands for."""
    if is_spec(name):
        return name
    names = installed()
    if name not in names:
        known = ", ".join(names)
        raise AdapterError(
            f"--wallet-api {name!r}: no such adapter (installed: {known}; or give "
            "package.module:Class)"
        )
    return names[name]


def find(name: str) -> type:
    """The class a name or spec stands for, not yet checked against the contract."""
    spec = spec_of(name)
    module_name, _, attribute = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise AdapterError(f"--wallet-api {name!r}: cannot import {module_name}: {err}") from None
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise AdapterError(f"--wallet-api {name!r}: {module_name} has no {attribute}")
    if not isinstance(found, type):
        raise AdapterError(f"--wallet-api {name!r}: {spec} is not a class")
    return found


def load(name: str) -> type:
    """The adapter class of a name or spec, checked against the contract."""
    found = find(name)
    problem = contract_problem(found)
    if problem:
        raise AdapterError(f"--wallet-api {name!r} ({spec_of(name)}): {problem}")
    return found


def missing_calls(cls: type) -> list[str]:
    """The calls of the class's accounting model (base.CALLS_BY_ACCOUNTING; a balance when it
    names none it knows) that the class does not have."""
    calls = CALLS_BY_ACCOUNTING.get(
        getattr(cls, "accounting", None), CALLS_BY_ACCOUNTING["balance"]
    )
    return [call for call in calls if not callable(getattr(cls, call, None))]


def contract_problem(cls: type) -> str | None:
    """What the class lacks of the contract (locustfiles/wallets/base.py), else None. The
    calls' answers are adapter-check's to judge (lnchaos/adapter_check.py)."""
    version = getattr(cls, "contract", None)
    if version != CONTRACT_VERSION:
        return (
            f"written for contract {version!r}, this suite speaks contract {CONTRACT_VERSION} "
            "(set `contract = 1` on the class after reading docs/adapters.md)"
        )
    missing = missing_calls(cls)
    if missing:
        return f"lacks {', '.join(missing)}"
    for attribute, allowed in (("judged_by", JUDGED_BY), ("accounting", ACCOUNTING)):
        if getattr(cls, attribute, None) not in allowed:
            return f"{attribute} must be one of {', '.join(allowed)}"
    if not isinstance(getattr(cls, "idempotent", None), bool):
        return "idempotent must be True or False"
    if cls.judged_by == "node" and not callable(getattr(cls, "judge", None)):
        return "judged_by 'node' needs `judge`: the class of its end-of-run judge"
    return None
