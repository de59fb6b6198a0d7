"""Reading a BPF ring buffer through libbpf's `ring_buffer__*`.

`poll(timeout_ms)` blocks (epoll inside libbpf) and is a plain sync call; an asyncio caller can
instead watch `fileno()` with `loop.add_reader` and call `poll(0)` when it is readable. Records
are copied out inside libbpf's callback and decoded afterwards, so a decode error never crosses
the C boundary. The ring is bounded in the kernel; `max_records` bounds one call's list.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from typing import Generic, TypeVar, final

from netstrata.datapath.loader import _libbpf
from netstrata.errors import DatapathError

T = TypeVar("T")


@final
class RingBufferReader(Generic[T]):
    """Consumes one ring-buffer map; records are decoded with `decode`."""

    def __init__(self, map_fd: int, decode: Callable[[bytes], T], *, name: str = "ringbuf") -> None:
        self.name = name
        self._decode = decode
        self._pending: list[bytes] = []
        self._dropped_undecodable = 0
        self._cb = _libbpf.SAMPLE_FN(self._on_sample)  # must outlive the ring_buffer
        handle = _libbpf.lib().ring_buffer__new(map_fd, self._cb, None, None)
        if not handle:
            code = _libbpf.last_errno()
            raise DatapathError(f"cannot open ring buffer {name}", obj=name,
                                errno_name=_libbpf.errno_name(code))
        self._rb: int | None = handle

    def _on_sample(self, _ctx: int | None, data: int, size: int) -> int:
        self._pending.append(ctypes.string_at(data, size))
        return 0

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records are waiting."""
        if self._rb is None:
            raise DatapathError("ring buffer is closed", obj=self.name)
        return int(_libbpf.lib().ring_buffer__epoll_fd(self._rb))

    def poll(self, timeout_ms: int = 0) -> list[T]:
        """Records available now, waiting up to `timeout_ms` for the first (0: don't wait)."""
        if self._rb is None:
            raise DatapathError("ring buffer is closed", obj=self.name)
        lib = _libbpf.lib()
        ret = lib.ring_buffer__poll(self._rb, timeout_ms) if timeout_ms else \
            lib.ring_buffer__consume(self._rb)
        if ret < 0 and ret != -errno.EINTR:
            raise DatapathError(f"reading ring buffer {self.name} failed: {_libbpf.errno_name(ret)}",
                                obj=self.name, errno_name=_libbpf.errno_name(ret))
        raw, self._pending = self._pending, []
        out = []
        for record in raw:
            try:
                out.append(self._decode(record))
            except ValueError:
                self._dropped_undecodable += 1
        return out

    @property
    def undecodable(self) -> int:
        """Records skipped because they did not decode (a layout mismatch)."""
        return self._dropped_undecodable

    def close(self) -> None:
        if self._rb is not None:
            _libbpf.lib().ring_buffer__free(self._rb)
            self._rb = None
