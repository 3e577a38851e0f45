"""The judge never leans on what it judges: the node (target/node/) imports only its own modules
and the shared package (target/common/); the shared package imports neither side; the wallet
(target/*.py) reaches the node only through its client module. Only the app factory and its
command line (app.py, cli.py, __main__.py) know both."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parents[2] / "target"
WIRING = {"target.app", "target.cli", "target.__main__"}
NODE_CLIENT = "target.node.client"


def module_name(path: Path) -> str:
    parts = path.relative_to(TARGET.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, absolute, including `from x import y` as x.y candidates."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from . import x` / `from .node import client` name modules too
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "target" or m.startswith("target.")}


def is_module(name: str) -> bool:
    path = TARGET.parent / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def target_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if is_module(m)}


def node_internals(imports: set[str]) -> set[str]:
    """What a wallet module may not import: any node module but the client."""
    return {
        m
        for m in imports
        if is_module(m) and m.startswith("target.node") and m not in (NODE_CLIENT, "target.node")
    }


def modules_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", modules_under(TARGET / "node"), ids=lambda p: p.name)
def test_the_node_imports_only_itself_and_the_shared_package(path: Path) -> None:
    bad = {
        m
        for m in target_imports(path)
        if not (m.startswith("target.node") or m.startswith("target.common") or m == "target")
    }
    assert not bad, f"{path.name} imports wallet modules: {sorted(bad)}"


@pytest.mark.parametrize("path", modules_under(TARGET / "common"), ids=lambda p: p.name)
def test_the_shared_package_imports_neither_side(path: Path) -> None:
    bad = {m for m in target_imports(path) if not m.startswith("target.common") and m != "target"}
    assert not bad, f"{path.name} imports {sorted(bad)}"


WALLET = [p for p in sorted(TARGET.glob("*.py")) if module_name(p) not in WIRING]


@pytest.mark.parametrize("path", WALLET, ids=lambda p: p.name)
def test_the_wallet_reaches_the_node_only_through_its_client(path: Path) -> None:
    bad = node_internals(imported_modules(path))
    assert not bad, f"{path.name} imports node internals: {sorted(bad)}"


def test_the_rule_sees_a_violation() -> None:
    """The checker itself has teeth: the imports it must refuse are seen, relative or absolute."""
    assert node_internals(imports_in("from .node.client import NodeClient\n", "target")) == set()
    for source in (
        "from .node.network import LightningNode\n",
        "from .node import network\n",
        "import target.node.lnd_rest\n",
    ):
        assert node_internals(imports_in(source, "target")), source
