"""Kernel datapath tests: real programs, real maps, real namespaces.

They need root, bpffs (mounted here if missing), clang, libbpf and pyroute2; without any of
them every test in this directory is skipped with the reason. Each test makes its own
namespaces and pin directory, with a random suffix, and removes them afterwards.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "kernel datapath tests need root (bpf(2), netns, tc)"
    if shutil.which("clang") is None:
        return "clang is not installed (the BPF programs are compiled at first use)"
    if ctypes.util.find_library("bpf") is None:
        return "libbpf is not installed (libbpf1 / libbpf-dev)"
    if importlib.util.find_spec("pyroute2") is None:
        return "pyroute2 is not installed (netlink for veths, routes and tc)"
    from netstrata.datapath.loader import ensure_bpffs
    from netstrata.errors import DatapathError

    try:
        ensure_bpffs()
    except DatapathError as exc:
        return f"no bpffs: {exc}"
    return None


MISSING = _missing()


@pytest.fixture(autouse=True)
def _require_kernel_datapath() -> None:
    if MISSING:
        pytest.skip(MISSING)


@pytest.fixture(scope="session")
def bpf_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compile once per session into a private cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NETSTRATA_CACHE_DIR", str(tmp_path_factory.mktemp("bpfcache")))
    yield
    mp.undo()


@pytest.fixture
def tag() -> str:
    """A short random tag that makes this test's names unique (ifnames stay <= 15 chars)."""
    return secrets.token_hex(3)


@pytest.fixture
def pin_dir(tag: str, bpf_cache: None) -> Iterator[Path]:
    from netstrata.datapath.kernel import default_pin_dir

    path = default_pin_dir(f"test-{tag}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pods(tag: str, pin_dir: Path) -> Iterator[Any]:
    from datapathkit import Pods

    from netstrata.datapath.kernel import KernelDatapath
    from netstrata.netns import cleanup, setup_node, wire_pod

    prefix = f"nst{tag}"
    node = f"{prefix}-node"
    try:
        setup_node(node)
        a = wire_pod(f"{prefix}-a", "10.201.0.1", f"{prefix}a", node_netns=node)
        b = wire_pod(f"{prefix}-b", "10.201.0.2", f"{prefix}b", node_netns=node)
        dp = KernelDatapath(pin_dir, netns=node)
    except BaseException:
        cleanup(prefix)
        raise
    wired = Pods(node, a, b, dp)
    try:
        yield wired
    finally:
        try:
            wired.dp.teardown()  # a test may have replaced it (restart)
        finally:
            cleanup(prefix)
