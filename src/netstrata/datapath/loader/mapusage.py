"""How full the pinned maps of one datapath are (for `cilium_bpf_map_pressure` and friends).

Opens each pin by path, reads its `max_entries` from the kernel (`bpf_obj_get_info_by_fd`)
and counts its keys with a get_next_key walk. The walk costs one syscall per entry, so callers
sample it (the agent every few seconds, in a thread), never per packet or per scrape.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from netstrata.datapath.loader import _libbpf
from netstrata.datapath.loader.bpfmap import BpfMap
from netstrata.datapath.maps._layout import MAPS


@dataclass(frozen=True, slots=True)
class MapUsage:
    name: str
    entries: int
    capacity: int

    @property
    def pressure(self) -> float:
        return self.entries / self.capacity if self.capacity else 0.0


def map_usage(pin_dir: Path) -> list[MapUsage]:
    """Entries and capacity of every pinned key/value map under `pin_dir` (ringbuf skipped)."""
    lib = _libbpf.lib()
    out = []
    for spec in MAPS:
        path = pin_dir / spec.name
        if spec.key is None or spec.value is None or not path.exists():
            continue
        fd = lib.bpf_obj_get(os.fsencode(path))
        if fd < 0:
            continue
        bpf_map = BpfMap(spec.name, fd, spec.key, spec.value, owns_fd=True)
        try:
            info = _libbpf.MapInfo()
            size = ctypes.c_uint32(ctypes.sizeof(info))
            if lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) < 0:
                continue
            entries = sum(1 for _ in bpf_map.raw_keys())
            out.append(MapUsage(spec.name, entries, int(info.max_entries)))
        finally:
            bpf_map.close()
    return out


__all__ = ["MapUsage", "map_usage"]
