"""End-to-end tests drive the `netstrata` command against real labs: root, clang, libbpf,
pyroute2 and curl are needed; without them every test here is skipped with the reason."""

from __future__ import annotations

import shutil

import pytest

from netstrata.lab.preflight import kernel_lab_missing


def _missing() -> str | None:
    missing = kernel_lab_missing()
    if missing:
        return f"lab end-to-end tests skipped: {missing}"
    if shutil.which("curl") is None:
        return "curl is not installed (the lab's HTTP client)"
    return None


MISSING = _missing()


@pytest.fixture(autouse=True)
def _require_lab() -> None:
    if MISSING:
        pytest.skip(MISSING)
