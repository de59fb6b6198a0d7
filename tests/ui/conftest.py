"""The service-map page in real headless Chromium. Without chromium, chromedriver or selenium
every test here is skipped with the reason; the lab test also needs what a kernel lab needs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from browserkit import chromium_missing

# The lab test reuses the lab test helpers (tests/datapath/labkit.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datapath"))

MISSING = chromium_missing()


@pytest.fixture(autouse=True)
def _require_chromium() -> None:
    if MISSING:
        pytest.skip(MISSING)
