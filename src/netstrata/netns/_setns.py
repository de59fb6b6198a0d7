"""Running code inside a named network namespace with setns(2) on one thread.

setns(CLONE_NEWNET) moves only the calling thread, and a socket stays in the namespace it was
created in whichever thread later uses it. So `socket_in_netns()` creates a socket on a short
worker thread and hands it back, `run_in_netns()` runs a function on such a thread, and
`in_netns()` moves the current thread for a `with` block and always moves it back.
Named namespaces are iproute2's: bind mounts under `/run/netns/<name>` (`ip netns`).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeVar

CLONE_NEWNET: Final = 0x40000000
NETNS_RUN_DIR: Final = Path("/run/netns")

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Move the current thread into namespace `name` (None: stay) for the block.

    Don't start threads inside the block expecting them to inherit the namespace: new threads
    start in the process's namespace.
    """
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def run_in_netns(name: str | None, fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` on a worker thread inside namespace `name`; returns or raises its outcome."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            with in_netns(name):
                result.append(fn(*args))
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    worker = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]


def socket_in_netns(name: str | None, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    """A socket that lives in namespace `name`, usable from any thread."""
    return run_in_netns(name, socket.socket, family, kind, proto)
