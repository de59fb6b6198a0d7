"""veth pairs, addresses and routes over rtnetlink (pyroute2).

The host side of a veth lives in the root or a "node" namespace and must carry netstrata's
prefix; the pod side lives in the pod's own namespace and may have any name (`eth0`), since
deleting that namespace deletes it.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from netstrata.netns.namespaces import check_ours, ipr


@dataclass(frozen=True, slots=True)
class VethPair:
    """A veth pair: the host side in `host_netns`, the peer in `pod_netns`."""

    host_if: str
    host_ifindex: int
    """Index in `host_netns` (what `skb->ifindex` is in the tc programs)."""
    host_netns: str | None
    pod_if: str
    pod_netns: str


def ifindex(ifname: str, netns: str | None = None) -> int:
    """The index of `ifname` in `netns`. Raises LookupError if there is none."""
    with ipr(netns) as nl:
        found = nl.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no interface {ifname} in netns {netns or '(current)'}")
    return int(found[0])


def ifname_of(index: int, netns: str | None = None) -> str | None:
    with ipr(netns) as nl:
        try:
            links = nl.get_links(index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
    return str(links[0].get("ifname")) if links else None


def create_veth(host_if: str, pod_if: str, pod_netns: str, *,
                host_netns: str | None = None) -> VethPair:
    """Create a veth pair with the peer moved into `pod_netns`; both ends are left down."""
    check_ours(host_if, ifname=True)
    with ipr(host_netns) as nl:
        nl.link("add", ifname=host_if, kind="veth",
                peer={"ifname": pod_if, "net_ns_fd": pod_netns})
        index = int(nl.link_lookup(ifname=host_if)[0])
    return VethPair(host_if, index, host_netns, pod_if, pod_netns)


def delete_link(ifname: str, netns: str | None = None) -> bool:
    """Delete netstrata's interface `ifname` (its veth peer goes too); False if absent."""
    check_ours(ifname, ifname=True)
    with ipr(netns) as nl:
        found = nl.link_lookup(ifname=ifname)
        if not found:
            return False
        try:
            nl.link("del", index=found[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
    return True


def list_links(netns: str | None = None, prefix: str = "") -> list[str]:
    with ipr(netns) as nl:
        names = [str(link.get("ifname")) for link in nl.get_links()]
    return sorted(n for n in names if n.startswith(prefix))


def link_up(ifname: str, netns: str | None = None) -> None:
    with ipr(netns) as nl:
        nl.link("set", index=nl.link_lookup(ifname=ifname)[0], state="up")


def add_address(ifname: str, address: IPv4Interface | str, netns: str | None = None) -> None:
    """Add `10.0.0.1/32`-style `address` to `ifname`; already present is fine."""
    iface = IPv4Interface(address)
    with ipr(netns) as nl:
        try:
            nl.addr("add", index=nl.link_lookup(ifname=ifname)[0], address=str(iface.ip),
                    prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise


def add_route(dst: IPv4Network | str, netns: str | None = None, *, dev: str,
              gateway: IPv4Address | str | None = None, onlink: bool = False) -> None:
    """Add (or replace) a route to `dst` (`default` allowed) through `dev`.

    Without a gateway the route is scope link (the destination is on the wire).
    """
    with ipr(netns) as nl:
        index = nl.link_lookup(ifname=dev)[0]
        spec: dict[str, object] = {"dst": "0.0.0.0/0" if dst == "default" else str(dst),
                                   "oif": index}
        if gateway is not None:
            spec["gateway"] = str(gateway)
            if onlink:
                spec["flags"] = ["onlink"]
        else:
            spec["scope"] = "link"
        nl.route("replace", **spec)
