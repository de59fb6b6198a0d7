"""Loading the netstrata BPF object through the system libbpf (ctypes).

`BpfObject` compiles (cached), checks layouts, loads and pins; `BpfMap` and
`RingBufferReader` are the typed map and ring-buffer handles. Every call is synchronous.
"""

from netstrata.datapath.loader.bpfmap import BpfMap
from netstrata.datapath.loader.bpfobject import (
    BPFFS_ROOT,
    PROGRAMS,
    BpfObject,
    ensure_bpffs,
    is_bpffs,
)
from netstrata.datapath.loader.build import cache_dir, compile_source, find_clang
from netstrata.datapath.loader.ringbuf import RingBufferReader

__all__ = [
    "BPFFS_ROOT",
    "PROGRAMS",
    "BpfMap",
    "BpfObject",
    "RingBufferReader",
    "cache_dir",
    "compile_source",
    "ensure_bpffs",
    "find_clang",
    "is_bpffs",
]
