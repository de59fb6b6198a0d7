"""Helpers for the lab tests: the shared acceptance cases, reference/kernel comparison."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from netstrata.lab.preflight import kernel_lab_missing  # noqa: F401  (re-exported for tests)

ROOT = Path(__file__).resolve().parents[2]


def acceptance_dir() -> Path:
    """`shared/acceptance` beside the checkout (or inside it, or $NETSTRATA_SHARED)."""
    env = os.environ.get("NETSTRATA_SHARED")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared", ROOT / "shared"]:
        if (cand / "acceptance").is_dir():
            return cand / "acceptance"
    pytest.skip(
        "shared acceptance cases not found (a shared/ folder beside the checkout, "
        "or NETSTRATA_SHARED)"
    )
    raise AssertionError  # unreachable


def paired(reference: dict[str, Any], kernel: dict[str, Any]):  # type: ignore[no-untyped-def]
    """(case id, reference probe, kernel probe) for every probe of every case, in order."""
    assert [c["id"] for c in reference["cases"]] == [c["id"] for c in kernel["cases"]]
    for rc, kc in zip(reference["cases"], kernel["cases"], strict=True):
        assert len(rc["probes"]) == len(kc["probes"]), rc["id"]
        for rp, kp in zip(rc["probes"], kc["probes"], strict=True):
            assert (rp["from"], rp["to"], rp["port"]) == (kp["from"], kp["to"], kp["port"])
            yield rc["id"], rp, kp


def verdict(p: dict[str, Any]) -> tuple[Any, ...]:
    """What both runs must agree on: the verdict, and for a drop its side and reason."""
    return (p["got"], p.get("direction"), p.get("drop_reason"))



