"""A lab topology as plain data: clusters, nodes, workloads, services, DNS records.

Both ways of running a case read this: the reference run (`policy check`) simulates it in Python
and the kernel lab (`lab check`) builds it from network namespaces. Addressing is deterministic so
the two agree on every IP:

* cluster i (1-based, by `id` when given), node j (1-based): node IP 172.31.<i>.<j>,
  pod CIDR 10.<i>.<j>.0/24, pods from .10 in workload order;
* kube-apiserver of cluster i: 172.31.<i>.250; service ClusterIPs: 10.96.<i>.<k>;
* external hosts keep the IPs their case gives them (documentation ranges stand in for real ones).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netstrata.api import types as api
from netstrata.policy.resolve import PolicyConfig


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str
    cluster_id: int
    nodes: tuple[str, ...]
    config: PolicyConfig


@dataclass(frozen=True, slots=True)
class PlacedWorkload:
    """A workload with its addressing settled."""

    ref: str
    """The id probes use (`name`, or `name@cluster`, or an explicit `id`)."""
    workload: api.Workload
    ips: tuple[str, ...]
    node_ip: str | None

    @property
    def ip(self) -> str:
        return self.ips[0]


@dataclass(frozen=True, slots=True)
class GlobalService:
    service: api.Service
    clusters: tuple[str, ...]
    """Clusters where this service exists (one for a plain service)."""
    backends_in: tuple[str, ...]
    cluster_ips: dict[str, str]
    """Cluster name -> ClusterIP there."""


@dataclass
class Topology:
    clusters: dict[str, ClusterSpec] = field(default_factory=dict)
    workloads: dict[str, PlacedWorkload] = field(default_factory=dict)
    namespaces: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    """(cluster, namespace) -> namespace labels."""
    services: list[GlobalService] = field(default_factory=list)
    dns_records: dict[str, tuple[str, ...]] = field(default_factory=dict)
    node_ips: dict[tuple[str, str], str] = field(default_factory=dict)
    apiserver_ips: dict[str, str] = field(default_factory=dict)

    def cluster_index(self, cluster: str) -> int:
        return self.clusters[cluster].cluster_id

    def node_ip(self, cluster: str, node: str) -> str:
        key = (cluster, node)
        if key not in self.node_ips:
            spec = self.clusters[cluster]
            nodes = list(spec.nodes)
            if node not in nodes:
                nodes.append(node)
                self.clusters[cluster] = ClusterSpec(spec.name, spec.cluster_id, tuple(nodes), spec.config)
            j = nodes.index(node) + 1
            self.node_ips[key] = f"172.31.{spec.cluster_id}.{j}"
        return self.node_ips[key]

    def add_workload(self, ref: str, w: api.Workload) -> PlacedWorkload:
        if w.kind == "external":
            placed = PlacedWorkload(ref, w, w.ips or ("203.0.113.250",), None)
        elif w.kind == "kube-apiserver":
            cid = self.cluster_index(w.cluster)
            ip = self.apiserver_ips.setdefault(w.cluster, f"172.31.{cid}.250")
            placed = PlacedWorkload(ref, w, (ip,), None)
        else:
            node = w.node or self.clusters[w.cluster].nodes[0]
            node_ip = self.node_ip(w.cluster, node)
            if w.kind == "host-network":
                placed = PlacedWorkload(ref, w, (node_ip,), node_ip)
            else:
                cid = self.cluster_index(w.cluster)
                j = int(node_ip.rsplit(".", 1)[1])
                used = sum(
                    1 for p in self.workloads.values()
                    if p.workload.kind == "pod" and p.node_ip == node_ip
                )
                placed = PlacedWorkload(ref, w, w.ips or (f"10.{cid}.{j}.{10 + used}",), node_ip)
        self.workloads[ref] = placed
        self.namespaces.setdefault((w.cluster, w.namespace), {"kubernetes.io/metadata.name": w.namespace})
        return placed

    def add_service(self, svc: api.Service, clusters: tuple[str, ...], backends_in: tuple[str, ...]) -> None:
        ips = {}
        for c in clusters:
            k = sum(1 for s in self.services if c in s.clusters) + 1
            ips[c] = f"10.96.{self.cluster_index(c)}.{k}"
        self.services.append(GlobalService(svc, clusters, backends_in, ips))

    def owner_of_ip(self, ip: str) -> PlacedWorkload | None:
        for p in self.workloads.values():
            if ip in p.ips and p.workload.kind != "host-network":
                return p
        return None

    def pods(self) -> list[PlacedWorkload]:
        return [p for p in self.workloads.values() if p.workload.kind == "pod"]


def mask_ip(ip: str, bits: int) -> str:
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
