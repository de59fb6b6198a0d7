"""Locate the team's shared acceptance cases (a `shared/` folder beside the checkout, or inside it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path | None:
    env = os.environ.get("NETSTRATA_SHARED")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared", ROOT / "shared"]:
        if (cand / "acceptance").is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def acceptance() -> Path:
    d = shared_dir()
    if d is None:
        pytest.skip("shared acceptance cases not found (expected a shared/ folder beside the checkout, "
                    "or NETSTRATA_SHARED)")
    return d / "acceptance"
