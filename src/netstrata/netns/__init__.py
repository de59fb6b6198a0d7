"""Network namespaces, veth pairs, addresses, routes and tc hooks (pyroute2 + setns).

Everything netstrata creates in a shared namespace carries `PREFIX`, so `cleanup()` finds it
and the host's own interfaces are never touched. All calls are synchronous (netlink).
"""

from netstrata.netns._setns import in_netns, netns_path, run_in_netns, socket_in_netns
from netstrata.netns.links import (
    VethPair,
    add_address,
    add_route,
    create_veth,
    delete_link,
    ifindex,
    ifname_of,
    link_up,
    list_links,
)
from netstrata.netns.namespaces import (
    IFNAMSIZ,
    PREFIX,
    check_ours,
    create_netns,
    delete_netns,
    ipr,
    list_netns,
    netns_exists,
    sysctl,
)
from netstrata.netns.pod import GATEWAY, PodLink, cleanup, setup_node, unwire_pod, wire_pod
from netstrata.netns.tc import Hook, TcFilter, attach_bpf, detach_bpf, list_bpf

__all__ = [
    "GATEWAY",
    "IFNAMSIZ",
    "PREFIX",
    "Hook",
    "PodLink",
    "TcFilter",
    "VethPair",
    "add_address",
    "add_route",
    "attach_bpf",
    "check_ours",
    "cleanup",
    "create_netns",
    "create_veth",
    "delete_link",
    "delete_netns",
    "detach_bpf",
    "ifindex",
    "ifname_of",
    "in_netns",
    "ipr",
    "link_up",
    "list_bpf",
    "list_links",
    "list_netns",
    "netns_exists",
    "netns_path",
    "run_in_netns",
    "setup_node",
    "socket_in_netns",
    "sysctl",
    "unwire_pod",
    "wire_pod",
]
