"""Whether a kernel lab can run on this machine, and if not, why (one answer for the demo,
`lab` commands and the tests that skip without it)."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil


def kernel_lab_missing() -> str | None:
    """Why a kernel lab cannot run here, or None: root, clang, libbpf, pyroute2 and bpffs."""
    if os.geteuid() != 0:
        return "it needs root: network namespaces, bpf(2), tc"
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
