"""Imports follow the data flow (DESIGN.md, STYLE.md): no package imports one above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "netstrata"

# package -> packages it must never import (directly, anywhere in its modules)
FORBIDDEN: dict[str, set[str]] = {
    "labels": {"api", "identity", "policy", "datapath", "proxy", "mesh", "agent", "lab", "cli", "observe"},
    "api": {"identity", "policy", "datapath", "proxy", "agent", "lab", "cli", "observe", "mesh"},
    "identity": {"policy", "datapath", "proxy", "agent", "lab", "cli"},
    "policy": {"datapath", "proxy", "agent", "lab", "cli", "netns", "observe", "asyncio"},
    "fqdn": {"datapath", "proxy", "agent", "lab", "cli"},
    "datapath": {"proxy", "agent", "lab", "cli"},
    "mesh": {"agent", "lab", "cli"},
}
NO_PYDANTIC_OUTSIDE = {"api"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if len(rel.parts) > 1:
            yield rel.parts[0], path


@pytest.mark.parametrize("package,path", list(_modules()), ids=lambda x: str(x))
def test_no_upward_imports(package: str, path: Path) -> None:
    banned = FORBIDDEN.get(package, set())
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "netstrata" and len(parts) > 1:
            assert parts[1] not in banned, f"{path.relative_to(SRC)} imports {name} (upward edge)"
        elif parts[0] in banned:
            assert False, f"{path.relative_to(SRC)} imports {name}"
        if parts[0] == "pydantic":
            assert package in NO_PYDANTIC_OUTSIDE, f"{path.relative_to(SRC)}: pydantic only in api/"
