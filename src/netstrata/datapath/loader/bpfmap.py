"""One BPF map, typed by the `_layout.py` codecs of its key and value.

Plain synchronous calls (bpf(2) through libbpf): async callers wrap them in
`asyncio.to_thread`. Every failure becomes a `DatapathError` naming the map and the errno.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar, final

from netstrata.datapath.loader import _libbpf
from netstrata.datapath.maps._layout import StructSpec
from netstrata.errors import DatapathError

K = TypeVar("K")
V = TypeVar("V")

_BATCH_UNSUPPORTED = (_libbpf.ENOTSUPP, errno.EOPNOTSUPP, errno.ENOTSUP)


@final
class BpfMap(Generic[K, V]):
    """A map fd plus the codecs of its key and value structs."""

    def __init__(self, name: str, fd: int, key: StructSpec[K], value: StructSpec[V],
                 *, owns_fd: bool = False) -> None:
        self.name = name
        self.fd = fd
        self.key = key
        self.value = value
        self._owns_fd = owns_fd
        self._batch: bool | None = None  # unknown until the first batch call

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def _fail(self, what: str, ret: int) -> DatapathError:
        return DatapathError(f"{what} on map {self.name} failed: {_libbpf.errno_name(ret)}",
                             errno_name=_libbpf.errno_name(ret), obj=self.name)

    def update(self, key: K, value: V, flags: int = _libbpf.BPF_ANY) -> None:
        kb, vb = self.key.encode(key), self.value.encode(value)
        ret = _libbpf.lib().bpf_map_update_elem(self.fd, kb, vb, flags)
        if ret < 0:
            raise self._fail(f"update {key!r}", ret)

    def lookup(self, key: K) -> V | None:
        buf = ctypes.create_string_buffer(self.value.size)
        ret = _libbpf.lib().bpf_map_lookup_elem(self.fd, self.key.encode(key), buf)
        if ret == -errno.ENOENT:
            return None
        if ret < 0:
            raise self._fail(f"lookup {key!r}", ret)
        return self.value.decode(buf.raw)

    def delete(self, key: K) -> bool:
        """True if the key was there."""
        ret = _libbpf.lib().bpf_map_delete_elem(self.fd, self.key.encode(key))
        if ret == -errno.ENOENT:
            return False
        if ret < 0:
            raise self._fail(f"delete {key!r}", ret)
        return True

    def raw_keys(self) -> Iterator[bytes]:
        """Every key, encoded (get_next_key walk; a concurrent delete may restart it)."""
        lib = _libbpf.lib()
        cur: bytes | None = None
        nxt = ctypes.create_string_buffer(self.key.size)
        while True:
            ret = lib.bpf_map_get_next_key(self.fd, cur, nxt)
            if ret == -errno.ENOENT:
                return
            if ret < 0:
                raise self._fail("iterate", ret)
            cur = nxt.raw
            yield cur

    def keys(self) -> list[K]:
        return [self.key.decode(k) for k in self.raw_keys()]

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of (key, value); keys deleted during the walk are skipped."""
        out = []
        lib = _libbpf.lib()
        buf = ctypes.create_string_buffer(self.value.size)
        for kb in list(self.raw_keys()):
            ret = lib.bpf_map_lookup_elem(self.fd, kb, buf)
            if ret == -errno.ENOENT:
                continue
            if ret < 0:
                raise self._fail("lookup during iterate", ret)
            out.append((self.key.decode(kb), self.value.decode(buf.raw)))
        return out

    def update_many(self, pairs: Sequence[tuple[K, V]]) -> None:
        """Insert or overwrite every pair (see `update_raw`)."""
        if pairs:
            self.update_raw(b"".join(self.key.encode(k) for k, _ in pairs),
                            b"".join(self.value.encode(v) for _, v in pairs))

    def update_raw(self, keys: bytes, values: bytes) -> None:
        """Insert or overwrite encoded entries (keys and values concatenated, in order).

        One BPF_MAP_UPDATE_BATCH where the map type has it: each element is replaced in
        place, so a key that was there is never absent. Where bpf(2) answers ENOTSUPP (map
        types or kernels without batch ops) this falls back to one update per element; the
        answer is remembered per map.
        """
        ks, vs = self.key.size, self.value.size
        count = len(keys) // ks
        if len(keys) != count * ks or len(values) != count * vs:
            raise ValueError(f"map {self.name}: {len(keys)} key bytes and {len(values)} value "
                             f"bytes are not whole {ks}/{vs}-byte entries of one count")
        if not count:
            return
        lib = _libbpf.lib()
        if self._batch is not False:
            n = ctypes.c_uint32(count)
            opts = _libbpf.MapBatchOpts(ctypes.sizeof(_libbpf.MapBatchOpts), 0, 0)
            ret = lib.bpf_map_update_batch(self.fd, keys, values, ctypes.byref(n),
                                           ctypes.byref(opts))
            if ret == 0:
                self._batch = True
                return
            if -ret not in _BATCH_UNSUPPORTED:
                raise self._fail(f"batch update of {count} entries ({n.value} written)", ret)
            self._batch = False
        for i in range(count):
            ret = lib.bpf_map_update_elem(self.fd, keys[i * ks:(i + 1) * ks],
                                          values[i * vs:(i + 1) * vs], _libbpf.BPF_ANY)
            if ret < 0:
                raise self._fail(f"update of entry {i} of {count}", ret)

    def delete_many(self, keys: Iterable[K]) -> int:
        """Delete every key that is there; returns how many were (see `delete_raw`)."""
        return self.delete_raw(b"".join(self.key.encode(k) for k in keys))

    def delete_raw(self, keys: bytes) -> int:
        """Delete every encoded key (concatenated) that is there; returns how many were.

        BPF_MAP_DELETE_BATCH where the map type has it; a batch stops at the first missing key
        (ENOENT, with the count done so far), so the rest is resubmitted past it.
        """
        ks = self.key.size
        if len(keys) % ks:
            raise ValueError(f"map {self.name}: {len(keys)} key bytes are not whole {ks}-byte keys")
        if self._batch is False or not keys:
            return self._delete_each([keys[i:i + ks] for i in range(0, len(keys), ks)])
        deleted = 0
        opts = _libbpf.MapBatchOpts(ctypes.sizeof(_libbpf.MapBatchOpts), 0, 0)
        view = memoryview(keys)
        while view:
            left = len(view) // ks
            count = ctypes.c_uint32(left)
            ret = _libbpf.lib().bpf_map_delete_batch(self.fd, bytes(view), ctypes.byref(count),
                                                     ctypes.byref(opts))
            if ret == 0:
                self._batch = True
                return deleted + left
            if -ret in _BATCH_UNSUPPORTED:
                self._batch = False
                return deleted + self._delete_each(
                    [bytes(view[i:i + ks]) for i in range(0, len(view), ks)])
            if ret != -errno.ENOENT:
                raise self._fail(f"batch delete of {left} entries", ret)
            deleted += count.value
            view = view[(count.value + 1) * ks:]
        return deleted

    def _delete_each(self, encoded: list[bytes]) -> int:
        lib = _libbpf.lib()
        n = 0
        for kb in encoded:
            ret = lib.bpf_map_delete_elem(self.fd, kb)
            if ret == 0:
                n += 1
            elif ret != -errno.ENOENT:
                raise self._fail("delete", ret)
        return n

    def clear(self) -> int:
        """Delete every entry; returns how many."""
        lib = _libbpf.lib()
        n = 0
        for kb in list(self.raw_keys()):
            if lib.bpf_map_delete_elem(self.fd, kb) == 0:
                n += 1
        return n
