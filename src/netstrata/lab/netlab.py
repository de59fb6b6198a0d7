"""A lab topology built from network namespaces: nodes, pods, an underlay, hosts outside.

`plan_lab()` turns a `Topology` (the addressing `lab/topology.py` settles, shared with the
reference run) into a `LabPlan`: plain data naming every namespace, interface and pin
directory the lab will own. `build_lab()` makes it real; `destroy_lab()` removes it again and
needs nothing but the lab's name, so it also cleans up after a crash or `kill -9`.

Shape (nothing is created in the host's own namespace):

    pod netns ──veth── node netns ──veth──┐
    pod netns ──veth──┘  (tc programs on   ├── bridge in the underlay netns
                          the pod veths)   │   (172.31.0.0/16 on the nodes' uplinks)
    external / kube-apiserver netns ──veth─┘

* Nodes are `setup_node` namespaces (pods reach them through 169.254.1.1) with an uplink
  `ul0` carrying the node IP 172.31.<cluster>.<node>/16. Host-network workloads run in them.
* Pods keep the IPs the topology assigns; every node routes each remote pod /32 to that pod's
  node, so multi-node and multi-cluster traffic crosses the underlay unchanged (no tunnel, no
  NAT: the receiving node's programs see the sending pod's own address, as with Cilium's
  native routing).
* Hosts outside every cluster (kind `external`, `kube-apiserver`, and one `world` namespace
  for probe targets nobody owns) sit on the bridge with their /32 addresses and route pod
  IPs back through the pods' nodes.

Every name starts with `nstl<id>`, four hex digits derived from the lab name: test fixtures
use `nst<hex>`, so `lab down --all` (everything under `nstl`) never touches them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute  # type: ignore[import-untyped]

from netstrata.datapath.kernel import PIN_ROOT
from netstrata.errors import NetstrataError
from netstrata.lab.topology import Topology
from netstrata.netns import (
    add_address,
    cleanup,
    create_netns,
    create_veth,
    in_netns,
    link_up,
    list_links,
    list_netns,
    setup_node,
    sysctl,
    wire_pod,
)

log = logging.getLogger(__name__)

LAB_MARK: Final = "nstl"
"""Prefix of everything any lab creates ('l' is not a hex digit, unlike the test fixtures' tags)."""
UNDERLAY: Final = ipaddress.IPv4Network("172.31.0.0/16")
UPLINK_IF: Final = "ul0"
HOST_IF: Final = "eth0"
PIN_PREFIX: Final = "lab-"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class LabError(NetstrataError):
    """A lab cannot be built, found or reached; the message says which and why."""


def lab_prefix(name: str) -> str:
    """`nstl` + 4 hex digits of the name's SHA-1: short enough for interface names."""
    return LAB_MARK + hashlib.sha1(name.encode()).hexdigest()[:4]


def lab_pin_root(name: str) -> Path:
    """Where the lab's nodes pin their maps: `<bpffs>/netstrata/lab-<name>/<node>`."""
    return PIN_ROOT / f"{PIN_PREFIX}{name}"


def _safe(text: str) -> str:
    return _SAFE.sub("_", text)


def _pin_safe(text: str) -> str:
    """bpffs refuses names with a dot in them."""
    return _SAFE.sub("_", text).replace(".", "_")


@dataclass(frozen=True, slots=True)
class NodePlan:
    cluster: str
    name: str
    ip: str
    netns: str
    uplink: str
    """The uplink's end in the underlay namespace (its peer in the node is `ul0`)."""
    pin_dir: str

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.name}"


@dataclass(frozen=True, slots=True)
class PodPlan:
    ref: str
    cluster: str
    node: str
    """`NodePlan.key` of the node it runs on."""
    netns: str
    ips: tuple[str, ...]
    host_if: str
    """The host side of its veth, in the node namespace (where the tc programs sit)."""
    workload: str = ""
    """`namespace/name` of the workload (what `lab exec NS/POD` names)."""

    @property
    def ip(self) -> str:
        return self.ips[0]


@dataclass(frozen=True, slots=True)
class HostPlan:
    """A namespace outside every cluster: an external host, a kube-apiserver, the world."""

    ref: str
    kind: str
    netns: str
    ips: tuple[str, ...]
    uplink: str


@dataclass(frozen=True, slots=True)
class LabPlan:
    name: str
    prefix: str
    underlay: str
    bridge: str
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    hosts: tuple[HostPlan, ...] = ()
    host_network: Mapping[str, str] = field(default_factory=dict)
    """Host-network workload ref -> the key of the node whose namespace it runs in."""

    def node(self, key: str) -> NodePlan:
        for n in self.nodes:
            if n.key == key:
                return n
        raise KeyError(key)

    def node_ips(self) -> dict[tuple[str, str], str]:
        return {(n.cluster, n.name): n.ip for n in self.nodes}

    def netns_of(self, ref: str) -> str:
        """The namespace a workload's traffic starts in (pods, host-network, hosts)."""
        for p in self.pods:
            if p.ref == ref:
                return p.netns
        if ref in self.host_network:
            return self.node(self.host_network[ref]).netns
        for h in self.hosts:
            if h.ref == ref:
                return h.netns
        raise KeyError(ref)

    def namespaces(self) -> list[str]:
        return [self.underlay, *(n.netns for n in self.nodes), *(p.netns for p in self.pods),
                *(h.netns for h in self.hosts)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabPlan:
        return cls(
            d["name"], d["prefix"], d["underlay"], d["bridge"],
            tuple(NodePlan(**n) for n in d["nodes"]),
            tuple(PodPlan(**{**p, "ips": tuple(p["ips"])}) for p in d["pods"]),
            tuple(HostPlan(**{**h, "ips": tuple(h["ips"])}) for h in d.get("hosts", ())),
            dict(d.get("host_network", {})),
        )


# ---------------------------------------------------------------------------------- planning


def _all_nodes(topology: Topology) -> list[tuple[str, str, str]]:
    """(cluster, node, ip) of every declared or used node, without touching `topology`
    (the reference run shares it and assigns node IPs lazily)."""
    out: dict[tuple[str, str], str] = dict(topology.node_ips)
    for spec in topology.clusters.values():
        for j, node in enumerate(spec.nodes, start=1):
            out.setdefault((spec.name, node), f"172.31.{spec.cluster_id}.{j}")
    return [(c, n, ip) for (c, n), ip in sorted(out.items(), key=lambda kv: kv[1])]


def plan_lab(name: str, topology: Topology, extra_ips: Iterable[str] = ()) -> LabPlan:
    """Every namespace, interface and address the lab needs; `extra_ips` are probe targets
    that no workload owns (a `world` host answers for them)."""
    prefix = lab_prefix(name)
    nodes = []
    for k, (cluster, node_name, ip) in enumerate(_all_nodes(topology), start=1):
        nodes.append(NodePlan(cluster, node_name, ip,
                              f"{prefix}-node-{_safe(cluster)}-{_safe(node_name)}", f"{prefix}u{k}",
                              str(lab_pin_root(name) / _pin_safe(f"{cluster}_{node_name}"))))
    by_ip = {n.ip: n for n in nodes}
    pods: list[PodPlan] = []
    hosts: list[HostPlan] = []
    host_network: dict[str, str] = {}
    owned: set[str] = set()
    for k, p in enumerate(topology.pods(), start=1):
        w = p.workload
        node = by_ip[p.node_ip or ""]
        pods.append(PodPlan(p.ref, w.cluster, node.key,
                            f"{prefix}-pod{k}-{_safe(w.namespace)}.{_safe(w.name)}",
                            tuple(p.ips), f"{prefix}p{k}", f"{w.namespace}/{w.name}"))
        owned.update(p.ips)
    for p in topology.workloads.values():
        if p.workload.kind == "host-network":
            host_network[p.ref] = by_ip[p.node_ip or ""].key
        elif p.workload.kind in ("external", "kube-apiserver"):
            ips = tuple(ip for ip in p.ips if ":" not in ip and ip not in owned)
            if ips:
                hosts.append(HostPlan(p.ref, p.workload.kind,
                                      f"{prefix}-ext{len(hosts) + 1}-{_safe(p.workload.name)}",
                                      ips, f"{prefix}h{len(hosts) + 1}"))
                owned.update(ips)
    leftover = sorted({ip for ip in extra_ips if ":" not in ip and ip not in owned
                       and ip not in by_ip}, key=ipaddress.IPv4Address)
    if leftover:
        hosts.append(HostPlan("world", "world", f"{prefix}-world", tuple(leftover),
                              f"{prefix}h{len(hosts) + 1}"))
    return LabPlan(name, prefix, f"{prefix}-underlay", f"{prefix}br", tuple(nodes), tuple(pods),
                   tuple(hosts), host_network)


# ---------------------------------------------------------------------------------- building


def _quiet_ipv6(netns: str) -> None:
    """IPv4 only: the datapath would drop (and report) every IPv6 router solicitation."""
    for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
        sysctl(netns, key, 1, missing_ok=True)


@contextmanager
def _nl(netns: str) -> Iterator[IPRoute]:
    """A netlink handle opened from inside `netns` (setns on this thread).

    Cheaper than `netns.ipr(netns)`, whose library forks a helper process per socket (~7 ms);
    a lab opens hundreds of these.
    """
    with in_netns(netns):
        handle = IPRoute()
    try:
        yield handle
    finally:
        handle.close()


def _route(netns: str, dst: str, dev: str, *, gateway: str | None = None,
           src: str | None = None) -> None:
    """Add or replace `dst` via `dev`: on the wire when no gateway, else through `gateway`
    (on-link: the underlay /16 is reachable on the device even without an address in it)."""
    with _nl(netns) as nl:
        spec: dict[str, object] = {"dst": dst, "oif": nl.link_lookup(ifname=dev)[0]}
        if gateway is None:
            spec["scope"] = "link"
        else:
            spec["gateway"] = gateway
            spec["flags"] = ["onlink"]
        if src is not None:
            spec["prefsrc"] = src
        nl.route("replace", **spec)


def _enslave(underlay: str, ifname: str, bridge: str) -> None:
    with _nl(underlay) as nl:
        nl.link("set", index=nl.link_lookup(ifname=ifname)[0],
                master=nl.link_lookup(ifname=bridge)[0], state="up")


def _build_underlay(plan: LabPlan) -> None:
    create_netns(plan.underlay)
    _quiet_ipv6(plan.underlay)
    with _nl(plan.underlay) as nl:
        nl.link("add", ifname=plan.bridge, kind="bridge")
        nl.link("set", index=nl.link_lookup(ifname=plan.bridge)[0], state="up")


def _build_node(plan: LabPlan, node: NodePlan) -> None:
    create_netns(node.netns)
    _quiet_ipv6(node.netns)
    setup_node(node.netns)
    for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
        sysctl(node.netns, key, 0, missing_ok=True)
    create_veth(node.uplink, UPLINK_IF, node.netns, host_netns=plan.underlay)
    _enslave(plan.underlay, node.uplink, plan.bridge)
    add_address(UPLINK_IF, f"{node.ip}/{UNDERLAY.prefixlen}", node.netns)
    link_up(UPLINK_IF, node.netns)


def _build_pod(plan: LabPlan, pod: PodPlan) -> None:
    node = plan.node(pod.node)
    wire_pod(pod.netns, pod.ip, pod.host_if, node_netns=node.netns)
    for extra in pod.ips[1:]:
        add_address("eth0", f"{extra}/32", pod.netns)
    for ip in pod.ips:
        # the node's own traffic to its pods (host-network workloads, pings) leaves with the
        # node IP, the address the pods' ipcache knows as host
        _route(node.netns, f"{ip}/32", pod.host_if, src=node.ip)


def _build_host(plan: LabPlan, host: HostPlan) -> None:
    create_netns(host.netns)
    _quiet_ipv6(host.netns)
    create_veth(host.uplink, HOST_IF, host.netns, host_netns=plan.underlay)
    _enslave(plan.underlay, host.uplink, plan.bridge)
    for ip in host.ips:
        add_address(HOST_IF, f"{ip}/32", host.netns)
    link_up(HOST_IF, host.netns)
    _route(host.netns, str(UNDERLAY), HOST_IF, src=host.ips[0])


def _node_routes(plan: LabPlan, node: NodePlan) -> None:
    for pod in plan.pods:
        if pod.node != node.key:
            for ip in pod.ips:
                _route(node.netns, f"{ip}/32", UPLINK_IF, gateway=plan.node(pod.node).ip,
                       src=node.ip)
    for host in plan.hosts:
        for ip in host.ips:
            if ipaddress.IPv4Address(ip) not in UNDERLAY:
                _route(node.netns, f"{ip}/32", UPLINK_IF, src=node.ip)


def _host_routes(plan: LabPlan, host: HostPlan) -> None:
    for pod in plan.pods:
        for ip in pod.ips:
            _route(host.netns, f"{ip}/32", HOST_IF, gateway=plan.node(pod.node).ip,
                   src=host.ips[0])


def build_lab(plan: LabPlan) -> None:
    """Create every namespace, link, address and route of `plan`.

    Raises:
        LabError: a namespace of this lab already exists, or building failed (whatever was
            made is removed again).
    """
    if list_netns(plan.prefix):
        raise LabError(f"lab {plan.name!r} (prefix {plan.prefix}) already has namespaces; "
                       "run `netstrata lab down` first")
    try:
        _build_underlay(plan)
        for node in plan.nodes:
            _build_node(plan, node)
        for pod in plan.pods:
            _build_pod(plan, pod)
        for host in plan.hosts:
            _build_host(plan, host)
        for node in plan.nodes:
            _node_routes(plan, node)
        for host in plan.hosts:
            _host_routes(plan, host)
    except Exception as exc:
        destroy_lab(plan.name)
        raise LabError(f"building lab {plan.name!r} failed: {exc}") from exc
    log.info("lab %s built: %d nodes, %d pods, %d hosts", plan.name, len(plan.nodes),
             len(plan.pods), len(plan.hosts))


# -------------------------------------------------------------------------------- tearing down


def destroy_lab(name: str) -> list[str]:
    """Remove every namespace, link and pin of lab `name` (programs go with their links).

    Needs only the name: safe after a crash, a `kill -9`, or on a lab that never finished
    building. Returns what was removed.
    """
    removed = cleanup(lab_prefix(name))
    pins = lab_pin_root(name)
    if pins.exists():
        shutil.rmtree(pins, ignore_errors=True)
        removed.append(f"pins {pins}")
    return removed


def destroy_all_labs() -> list[str]:
    """`lab down --all`: every lab namespace, root-namespace link and lab pin directory."""
    removed = cleanup(LAB_MARK)
    if PIN_ROOT.is_dir():
        for pins in sorted(PIN_ROOT.glob(f"{PIN_PREFIX}*")):
            shutil.rmtree(pins, ignore_errors=True)
            removed.append(f"pins {pins}")
    return removed


def leftovers(name: str | None = None) -> dict[str, list[str]]:
    """What a lab (or every lab) still holds: namespaces, root links, pinned files."""
    prefix = lab_prefix(name) if name else LAB_MARK
    roots = [lab_pin_root(name)] if name else sorted(PIN_ROOT.glob(f"{PIN_PREFIX}*")) \
        if PIN_ROOT.is_dir() else []
    pins = [str(p) for root in roots if root.exists() for p in sorted(root.rglob("*"))]
    pins += [str(r) for r in roots if r.exists()]
    return {"netns": list_netns(prefix), "links": list_links(None, prefix), "pins": pins}
