"""The node's policy routing that makes the transparent proxy redirect deliver locally.

The tc programs pick the proxy's socket with `bpf_sk_assign` and mark the packet TO_PROXY
(`bpf/proxy.h`); the packet still carries its original destination, a pod or an outside
address that is not local to the node. This rule and table make the stack deliver such
packets locally instead of forwarding them, as Cilium's table 2004 does:

    ip rule add fwmark 0x200/0xf00 lookup 2004
    ip route add local 0.0.0.0/0 dev lo table 2004

Reverse-path filtering is turned off in the node namespace: a packet bounced to the ingress
of the destination pod's veth (an ingress redirect) arrives on a device its source is not
routed through, and strict rp_filter would drop it.

Early demux is turned off in the node namespace too: it attaches a node socket to a packet
before routing when the tuple matches, and the proxy's accepted socket of an ingress redirect
has exactly the tuple of the client's packets (the original destination as its local
address); those packets must first reach the destination's veth, where the programs hand them
to the proxy, but the stack would drop them on forwarding (`ip_forward` refuses a packet that
carries a socket).

Numbers come from `ProxyRedirect`, the mirror of `enum nst_proxy` (one source for C and
Python). Installing is idempotent; the rule and route go away with the namespace.
"""

from __future__ import annotations

import errno
import logging

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from netstrata.datapath.maps import ProxyRedirect
from netstrata.netns import ipr, sysctl

log = logging.getLogger(__name__)

_RULE_PRIORITY = 90
"""Before the main table (32766), so a marked packet never takes a pod route."""


def install_proxy_routing(netns: str | None) -> None:
    """Add the TO_PROXY fwmark rule and the local table in `netns` (None: our own namespace,
    for an agent that already lives in its node's namespace)."""
    table = int(ProxyRedirect.ROUTE_TABLE)
    with ipr(netns) as nl:
        lo = nl.link_lookup(ifname="lo")[0]
        try:
            nl.rule("add", table=table, priority=_RULE_PRIORITY,
                    fwmark=int(ProxyRedirect.MARK_TO_PROXY), fwmask=int(ProxyRedirect.MARK_MASK))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        nl.route("replace", dst="0.0.0.0/0", type="local", table=table, oif=lo, scope="host")
    for conf in ("all", "default", "lo"):
        sysctl(netns, f"net.ipv4.conf.{conf}.rp_filter", 0)
    sysctl(netns, "net.ipv4.ip_early_demux", 0)
    log.debug("proxy routing installed in %s", netns or "this namespace")
