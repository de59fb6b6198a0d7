"""Reading a BPF ring buffer in bulk, straight from its memory mapping (no per-record callback).

libbpf's `ring_buffer__consume` calls back into Python once per record through ctypes, which
costs microseconds per record before any decoding. The ring's pages can be mapped by anyone
holding the map fd, as libbpf itself does (kernel/bpf/ringbuf.c):

    offset 0           one page, read-write: the consumer position (u64 at its start)
    offset 1 page      one page, read-only: the producer position
    offset 2 pages     the data area, `max_entries` bytes mapped *twice* back to back, so a
                       record that wraps past the end is still contiguous in the mapping

Every record starts with an 8-byte header: `u32 len` (bit 31 BUSY: reserved, not yet
committed; bit 30 DISCARD: skip it) and `u32 pg_off`; the record then takes `len + 8` bytes
rounded up to 8. Records between the consumer and producer positions are committed in order or
still busy; reading stops at the first busy one.

`read()` takes every committed record at once and unpacks them with one `struct.iter_unpack`
over the contiguous bytes when they are all of the expected size (what the datapath writes:
one record type), and walks them one by one otherwise. Records come out as plain tuples in the
field order of the record's struct spec; nothing is built per record beyond that tuple.

The map fd is pollable (readable while the producer is ahead of the consumer), so an asyncio
caller watches `fileno()` with `loop.add_reader`.

x86-64 and arm64 both keep the order this relies on for aligned 8-byte loads and stores made
through the mapping: the producer position is read before the data, the consumer position is
written after the records were copied out (`iter_unpack` copies).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from typing import Any, Final, final

from netstrata.datapath.loader import _libbpf
from netstrata.errors import DatapathError

HEADER_SIZE: Final = 8
"""BPF_RINGBUF_HDR_SZ."""
BUSY_BIT: Final = 1 << 31
DISCARD_BIT: Final = 1 << 30
_POS: Final = struct.Struct("=Q")
_HEADER: Final = struct.Struct("=I")


def record_stride(payload: int) -> int:
    """Bytes one record of `payload` bytes takes in the ring (header + payload, 8-aligned)."""
    return (payload + HEADER_SIZE + 7) & ~7


@final
class MmapRingReader:
    """Consumes one ring-buffer map whose records are all `record` (a `struct.Struct`)."""

    def __init__(self, map_fd: int, record: struct.Struct, *, name: str = "ringbuf") -> None:
        self.name = name
        self._fd = map_fd
        self._record = record
        self._size = _ring_size(map_fd, name)
        self._mask = self._size - 1
        self._stride = record_stride(record.size)
        # header skipped, payload, tail padding skipped: one unpack per record with no slicing
        self._framed = struct.Struct(
            f"={HEADER_SIZE}x{record.format.lstrip('=@<>!')}{self._stride - HEADER_SIZE - record.size}x"
        )
        page = mmap.PAGESIZE
        try:
            self._cons_map = mmap.mmap(
                map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
            )
            self._data_map = mmap.mmap(
                map_fd, page + 2 * self._size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
        except OSError as exc:
            raise DatapathError(
                f"cannot map ring buffer {name}", obj=name, errno_name=os.strerror(exc.errno or 0)
            ) from exc
        self._data = memoryview(self._data_map)
        self._page = page
        self.undecodable = 0
        """Records skipped because their size was not the record's (a layout mismatch)."""
        self.discarded = 0
        self._closed = False

    def fileno(self) -> int:
        """The map fd: readable while records wait."""
        return self._fd

    def pending_bytes(self) -> int:
        prod: int = _POS.unpack_from(self._data_map, 0)[0]
        cons: int = _POS.unpack_from(self._cons_map, 0)[0]
        return prod - cons

    def read(self, limit: int = 0) -> list[tuple[Any, ...]]:
        """Every committed record now in the ring (at most `limit` when > 0), oldest first."""
        if self._closed:
            raise DatapathError("ring buffer is closed", obj=self.name)
        cons = _POS.unpack_from(self._cons_map, 0)[0]
        prod = _POS.unpack_from(self._data_map, 0)[0]
        if prod == cons:
            return []
        stride, want = self._stride, self._record.size
        avail = prod - cons
        if limit > 0:
            avail = min(avail, limit * stride)
        start = self._page + (cons & self._mask)
        # Fast path: every header in the window says "committed record of our size". The
        # headers sit at a fixed stride, so one strided view reads them all at C speed.
        count = avail // stride
        if count and avail % stride == 0:
            heads = self._data[start : start + count * stride].cast("I")[:: stride // 4]
            if set(heads.tolist()) == {want}:
                out = list(self._framed.iter_unpack(self._data[start : start + count * stride]))
                _POS.pack_into(self._cons_map, 0, cons + count * stride)
                return out
        return self._walk(cons, cons + avail, limit)

    def _walk(self, cons: int, end: int, limit: int) -> list[tuple[Any, ...]]:
        """Record by record: stops at a busy record; skips discarded and odd-sized ones."""
        out: list[tuple[Any, ...]] = []
        want = self._record.size
        while cons < end and (limit <= 0 or len(out) < limit):
            at = self._page + (cons & self._mask)
            length = _HEADER.unpack_from(self._data, at)[0]
            if length & BUSY_BIT:
                break
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if length & DISCARD_BIT:
                self.discarded += 1
            elif size != want:
                self.undecodable += 1
            else:
                out.append(self._record.unpack_from(self._data, at + HEADER_SIZE))
            cons += record_stride(size)
        _POS.pack_into(self._cons_map, 0, cons)
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._data.release()
        self._data_map.close()
        self._cons_map.close()


def _ring_size(fd: int, name: str) -> int:
    info = _libbpf.MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    ret = _libbpf.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
    if ret < 0:
        raise DatapathError(
            f"cannot read ring buffer {name}'s size", obj=name, errno_name=_libbpf.errno_name(ret)
        )
    return int(info.max_entries)


__all__ = ["BUSY_BIT", "DISCARD_BIT", "HEADER_SIZE", "MmapRingReader", "record_stride"]
