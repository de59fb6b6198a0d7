"""Named network namespaces, netlink handles into them, per-namespace sysctls.

Every name netstrata creates in a shared place (a namespace under /run/netns, an interface in
the root or node namespace) starts with `PREFIX`, so `cleanup()` finds all of it and nothing
else; the helpers refuse other names so the host's own interfaces are never touched.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2 import netns as _p2netns

from netstrata.netns._setns import NETNS_RUN_DIR, in_netns

log = logging.getLogger(__name__)

PREFIX: Final = "nst"
"""Prefix of every namespace and shared-namespace interface netstrata makes."""
IFNAMSIZ: Final = 15
"""Longest interface name the kernel accepts (IFNAMSIZ 16 including the NUL)."""


def check_ours(name: str, *, ifname: bool = False) -> str:
    """`name` if it carries netstrata's prefix (and fits an interface name); else ValueError."""
    if not name.startswith(PREFIX):
        raise ValueError(f"{name!r}: netstrata only manages names starting with {PREFIX!r}")
    if ifname and len(name) > IFNAMSIZ:
        raise ValueError(f"{name!r}: interface names are at most {IFNAMSIZ} characters")
    return name


def netns_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def create_netns(name: str, *, exist_ok: bool = False) -> None:
    """Create namespace `name` with its loopback up.

    Raises:
        FileExistsError: it exists and `exist_ok` is false.
    """
    check_ours(name)
    if netns_exists(name):
        if exist_ok:
            return
        raise FileExistsError(errno.EEXIST, "network namespace exists", name)
    _p2netns.create(name)
    with ipr(name) as nl:
        nl.link("set", index=nl.link_lookup(ifname="lo")[0], state="up")
    log.debug("created netns %s", name)


def delete_netns(name: str) -> None:
    """Remove namespace `name` (and with it every interface inside); absent is fine."""
    check_ours(name)
    if netns_exists(name):
        _p2netns.remove(name)
        log.debug("deleted netns %s", name)


def list_netns(prefix: str = PREFIX) -> list[str]:
    if not NETNS_RUN_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_RUN_DIR.iterdir() if p.name.startswith(prefix))


@contextmanager
def ipr(netns: str | None) -> Iterator[IPRoute]:
    """A netlink (rtnetlink) handle in `netns` (None: the caller's namespace)."""
    handle = IPRoute(netns=netns) if netns else IPRoute()
    try:
        yield handle
    finally:
        handle.close()


def sysctl(netns: str | None, key: str, value: str | int, *, missing_ok: bool = False) -> None:
    """Write `net.ipv4.ip_forward`-style `key` inside `netns`.

    /proc/sys/net resolves against the namespace of the thread that opens it, so the write
    happens inside `in_netns`.
    """
    path = Path("/proc/sys") / key.replace(".", "/")
    with in_netns(netns):
        try:
            path.write_text(f"{value}\n")
        except FileNotFoundError:
            if not missing_ok:
                raise
