"""Public names of `netstrata.policy.l7` and `netstrata.fqdn` resolve; no I/O imports."""

from __future__ import annotations

import ast
from pathlib import Path

import netstrata.fqdn as fqdn
import netstrata.policy.l7 as l7

SRC = Path(l7.__file__).resolve().parents[2]


def test_all_names_resolve():
    for module in (l7, fqdn):
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_matchers_are_pure():
    banned = {"socket", "asyncio", "time", "selectors", "threading", "netstrata.proxy",
              "netstrata.datapath"}
    files = [*(SRC / "policy" / "l7").glob("*.py"), SRC / "fqdn" / "matchpattern.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not any(name == b or name.startswith(b + ".") for b in banned), \
                    f"{path.name} imports {name}"
