"""Kernel datapath tests: real programs, real maps, real namespaces.

They need root, bpffs (mounted here if missing), clang, libbpf and pyroute2; without any of
them every test in this directory is skipped with the reason. Each test makes its own
namespaces and pin directory, with a random suffix, and removes them afterwards.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netstrata.lab.preflight import kernel_lab_missing

MISSING = kernel_lab_missing()


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
