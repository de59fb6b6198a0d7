"""Attaching BPF programs to an interface's tc clsact hooks over netlink (pyroute2).

One direct-action `bpf` filter per hook, always at priority 1, handle 1: attaching again
replaces the program atomically (no window without a program), which is how a restarted agent
swaps in freshly loaded programs while the pinned maps keep their state.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Final, Literal

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from netstrata.netns.namespaces import ipr

Hook = Literal["ingress", "egress"]

_PARENT: Final[dict[Hook, int]] = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
"""TC_H_CLSACT with TC_H_MIN_INGRESS / TC_H_MIN_EGRESS."""
_PRIO: Final = 1
_HANDLE: Final = 1


@dataclass(frozen=True, slots=True)
class TcFilter:
    hook: Hook
    name: str
    """The program name the kernel reports for the filter."""


def _ensure_clsact(nl: object, index: int) -> None:
    try:
        nl.tc("add", "clsact", index)  # type: ignore[attr-defined]
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def attach_bpf(ifname: str, prog_fd: int, hook: Hook, *, name: str,
               netns: str | None = None) -> None:
    """Attach (or replace) the program `prog_fd` at `hook` of `ifname` in `netns`."""
    with ipr(netns) as nl:
        index = nl.link_lookup(ifname=ifname)[0]
        _ensure_clsact(nl, index)
        nl.tc("replace-filter", "bpf", index, f":{_HANDLE}", fd=prog_fd, name=name,
              parent=_PARENT[hook], classid=1, direct_action=True, prio=_PRIO)


def detach_bpf(ifname: str, hook: Hook, *, netns: str | None = None) -> bool:
    """Remove netstrata's filter at `hook` of `ifname`; False if it (or the link) is gone."""
    with ipr(netns) as nl:
        found = nl.link_lookup(ifname=ifname)
        if not found:
            return False
        try:
            nl.tc("del-filter", "bpf", found[0], f":{_HANDLE}", parent=_PARENT[hook], prio=_PRIO)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                return False
            raise
    return True


def list_bpf(ifname: str, *, netns: str | None = None) -> list[TcFilter]:
    """The named bpf filters on both hooks of `ifname`."""
    out: list[TcFilter] = []
    with ipr(netns) as nl:
        index = nl.link_lookup(ifname=ifname)[0]
        for hook, parent in _PARENT.items():
            try:
                filters = nl.get_filters(index, parent=parent)
            except NetlinkError as exc:
                if exc.code == errno.EINVAL:  # no clsact qdisc
                    continue
                raise
            for f in filters:
                name = f.get_nested("TCA_OPTIONS", "TCA_BPF_NAME")
                if f.get_attr("TCA_KIND") == "bpf" and name:
                    out.append(TcFilter(hook, str(name)))
    return out
