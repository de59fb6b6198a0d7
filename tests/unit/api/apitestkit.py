"""Helpers for the api tests: parse YAML text, find lines, pick out problems."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from netstrata.api import ManifestSet, parse_documents
from netstrata.api._yaml import load_documents
from netstrata.errors import ManifestError, ManifestProblem

SOURCE = "policies/test.yaml"


def parse(text: str, source: str = SOURCE) -> ManifestSet:
    return parse_documents(load_documents(textwrap.dedent(text), source))


def problems(text: str, source: str = SOURCE) -> list[ManifestProblem]:
    with pytest.raises(ManifestError) as info:
        parse(text, source)
    return info.value.problems


def only_problem(text: str) -> ManifestProblem:
    found = problems(text)
    assert len(found) == 1, "\n".join(p.render() for p in found)
    return found[0]


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line of the dedented text containing `needle`."""
    seen = 0
    for i, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError(f"{needle!r} not in text")


def cnp(spec: str, kind: str = "CiliumNetworkPolicy") -> str:
    """A policy manifest around an indented `spec` body (given at column 0)."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    ns = "  namespace: default\n" if kind == "CiliumNetworkPolicy" else ""
    return (f"apiVersion: cilium.io/v2\nkind: {kind}\nmetadata:\n  name: p\n{ns}"
            f"spec:\n{body}\n")


def shared_acceptance() -> Path | None:
    """The team's shared acceptance folder (NETSTRATA_SHARED, or `shared/` beside the checkout)."""
    root = Path(__file__).resolve().parents[3]
    env = os.environ.get("NETSTRATA_SHARED")
    for cand in ([Path(env)] if env else []) + [root.parent / "shared", root / "shared"]:
        if (cand / "acceptance").is_dir():
            return cand / "acceptance"
    return None
