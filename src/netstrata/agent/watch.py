"""Waking the agent when a manifest is written: inotify through ctypes on libc, no dependency.

`FileWatcher(paths)` watches directories (and the directory of each plain file) for files
finished being written: IN_CLOSE_WRITE (a writer closed it), IN_MOVED_TO (an atomic rename
landed, as editors and `kubectl`-style tools save), IN_DELETE/IN_MOVED_FROM (a file left) and
IN_CREATE of a subdirectory (watched from then on). IN_MODIFY is deliberately not watched: a
file is read once its writer closed it, never half way through a write. A file that is
closed broken is still read, rejected with its line and field, and the previous policy stays
in force (agent/daemon.py) until the next close.

inotify can be missing (no libc symbol, `max_user_watches` or `max_user_instances`
exhausted): `open_watcher` then returns None and the caller polls, as it did before.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Final, final

log = logging.getLogger(__name__)

IN_MODIFY: Final = 0x002
IN_CLOSE_WRITE: Final = 0x008
IN_MOVED_FROM: Final = 0x040
IN_MOVED_TO: Final = 0x080
IN_CREATE: Final = 0x100
IN_DELETE: Final = 0x200
IN_DELETE_SELF: Final = 0x400
IN_ISDIR: Final = 0x40000000
IN_Q_OVERFLOW: Final = 0x4000
IN_NONBLOCK: Final = os.O_NONBLOCK
IN_CLOEXEC: Final = os.O_CLOEXEC

WATCH_MASK: Final = (
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF
)
_EVENT: Final = struct.Struct("=iIII")  # struct inotify_event: wd, mask, cookie, len (+ name)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_init1.restype = ctypes.c_int
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_add_watch.restype = ctypes.c_int
    return libc


@final
class FileWatcher:
    """One inotify instance over some directories; `wait_changed()` wakes on a finished file."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._libc = _libc()
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd: int = int(fd)
        self._dirs: dict[int, Path] = {}
        self.overflows = 0
        """Times the kernel's event queue overflowed (a change is then assumed)."""
        for path in paths:
            if path.is_dir():
                self._add_tree(path)
            else:
                self._add(path.parent)  # its directory only: an atomic save renames into it

    def fileno(self) -> int:
        return self._fd

    def _add(self, directory: Path) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOENT, errno.ENOTDIR):
                return  # gone meanwhile: nothing to watch there
            raise OSError(code, f"inotify_add_watch {directory}: {os.strerror(code)}")
        self._dirs[wd] = directory

    def _add_tree(self, directory: Path) -> None:
        self._add(directory)
        for sub in sorted(p for p in directory.rglob("*") if p.is_dir()):
            self._add(sub)

    def drain(self) -> bool:
        """Read every queued event; True if any says a file was finished, moved or removed."""
        changed = False
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return changed
            if not data:
                return changed
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + size].rstrip(b"\0")
                offset += _EVENT.size + size
                if mask & IN_Q_OVERFLOW:
                    self.overflows += 1
                    changed = True
                elif mask & IN_CREATE:
                    # a created file is still being written (its close comes later); a created
                    # directory is watched from now on, and may already hold files
                    if mask & IN_ISDIR and wd in self._dirs:
                        self._add_tree(self._dirs[wd] / os.fsdecode(name))
                        changed = True
                else:
                    changed = True

    async def wait_changed(self, within: float) -> bool:
        """Wait up to `within` seconds for a finished write; True if one came."""
        if self.drain():
            return True
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(self._fd, ready.set)
        try:
            async with asyncio.timeout(within):
                await ready.wait()
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(self._fd)
        return self.drain()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_watcher(paths: Iterable[Path]) -> FileWatcher | None:
    """A watcher over `paths`, or None (logged) where inotify cannot be used: poll instead."""
    try:
        return FileWatcher([p for p in paths if p.exists()])
    except (OSError, AttributeError) as exc:
        log.warning("no inotify (%s): manifests are polled", exc)
        return None


__all__ = [
    "IN_CLOSE_WRITE",
    "IN_MODIFY",
    "IN_MOVED_TO",
    "WATCH_MASK",
    "FileWatcher",
    "open_watcher",
]
