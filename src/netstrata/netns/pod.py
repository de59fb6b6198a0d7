"""A node namespace and pods wired to it by veth pairs, routed like Calico/Cilium pods.

Each pod has a /32 address on `eth0` and reaches everything through the link-local gateway
169.254.1.1, which the node answers ARP for because the address sits on the node's loopback
(arp_ignore 0 replies for any local address). The node routes each pod /32 to that pod's host
veth and forwards between them, so pod-to-pod traffic always crosses two host veths: one tc
hook for the sender's egress policy, one for the receiver's ingress policy.
IPv6 is switched off on both ends: the datapath is IPv4-only and would drop (and report) every
router solicitation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final

from netstrata.netns import links
from netstrata.netns.namespaces import (
    PREFIX,
    check_ours,
    create_netns,
    delete_netns,
    list_netns,
    sysctl,
)

log = logging.getLogger(__name__)

GATEWAY: Final = IPv4Address("169.254.1.1")
POD_IF: Final = "eth0"


@dataclass(frozen=True, slots=True)
class PodLink:
    """How one pod is wired: its namespace, address and the host side of its veth."""

    pod_netns: str
    ip: IPv4Address
    host_if: str
    host_ifindex: int
    node_netns: str | None
    pod_if: str = POD_IF


def setup_node(node_netns: str) -> None:
    """Create the node namespace: loopback up with the pods' gateway address, forwarding on."""
    create_netns(node_netns, exist_ok=True)
    links.add_address("lo", f"{GATEWAY}/32", node_netns)
    sysctl(node_netns, "net.ipv4.ip_forward", 1)
    sysctl(node_netns, "net.ipv6.conf.all.disable_ipv6", 1, missing_ok=True)


def _disable_ipv6(netns: str | None, ifname: str) -> None:
    sysctl(netns, f"net.ipv6.conf.{ifname}.disable_ipv6", 1, missing_ok=True)


def wire_pod(pod_netns: str, ip: IPv4Address | str, host_if: str, *,
             node_netns: str | None) -> PodLink:
    """Create `pod_netns` and connect it to the node by a veth whose host side is `host_if`."""
    check_ours(host_if, ifname=True)
    addr = IPv4Address(ip)
    create_netns(pod_netns)
    try:
        pair = links.create_veth(host_if, POD_IF, pod_netns, host_netns=node_netns)
        _disable_ipv6(pod_netns, POD_IF)
        _disable_ipv6(node_netns, host_if)
        links.add_address(POD_IF, f"{addr}/32", pod_netns)
        links.link_up(POD_IF, pod_netns)
        links.add_route(f"{GATEWAY}/32", pod_netns, dev=POD_IF)
        links.add_route("default", pod_netns, dev=POD_IF, gateway=GATEWAY)
        links.link_up(host_if, node_netns)
        links.add_route(f"{addr}/32", node_netns, dev=host_if)
    except BaseException:
        delete_netns(pod_netns)
        raise
    log.debug("wired pod %s (%s) to %s", pod_netns, addr, host_if)
    return PodLink(pod_netns, addr, host_if, pair.host_ifindex, node_netns)


def unwire_pod(link: PodLink) -> None:
    """Delete the pod's namespace and the host side of its veth."""
    delete_netns(link.pod_netns)
    links.delete_link(link.host_if, link.node_netns)


def cleanup(prefix: str = PREFIX) -> list[str]:
    """Delete every namespace and root-namespace interface whose name starts with `prefix`.

    Returns what was removed. `prefix` must itself start with netstrata's prefix.
    """
    check_ours(prefix)
    removed = []
    for name in list_netns(prefix):
        delete_netns(name)
        removed.append(f"netns {name}")
    for ifname in links.list_links(None, prefix):
        if links.delete_link(ifname):
            removed.append(f"link {ifname}")
    return removed
