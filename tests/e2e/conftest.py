"""End-to-end tests drive the `netstrata` command against real labs: root, clang, libbpf,
pyroute2 and curl are needed; without them every test here is skipped with the reason."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil

import pytest


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "lab end-to-end tests need root (network namespaces, bpf(2), tc)"
    if shutil.which("clang") is None:
        return "clang is not installed (the BPF programs are compiled at first use)"
    if ctypes.util.find_library("bpf") is None:
        return "libbpf is not installed (libbpf1 / libbpf-dev)"
    if importlib.util.find_spec("pyroute2") is None:
        return "pyroute2 is not installed"
    if shutil.which("curl") is None:
        return "curl is not installed (the lab's HTTP client)"
    return None


MISSING = _missing()


@pytest.fixture(autouse=True)
def _require_lab() -> None:
    if MISSING:
        pytest.skip(MISSING)
