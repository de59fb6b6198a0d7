"""Flows folded into a service map: workloads as nodes, who-talks-to-whom as edges.

What Hubble UI draws, as data: each node is a workload (a pod's workload, else the pod), or a
peer outside every cluster named by its reserved identity (`world`, `host`, `kube-apiserver`,
...) or, lacking one, by identity number or IP. Nodes belong to a group, `cluster/namespace`;
peers outside the clusters share the empty group. Each edge joins two nodes for one verdict
class, so an allowed and a denied connection between the same pair are two edges:

* `forwarded`: FORWARDED, REDIRECTED (to the proxy), TRACED, TRANSLATED;
* `dropped`: DROPPED or ERROR at L3/L4 (the kernel);
* `l7-denied`: DROPPED or ERROR on an L7 record (the proxy answered 403, REFUSED, ...);
* `audit`: AUDIT (would have been dropped; audit mode let it through).

Reply flows (`is_reply` true) are left out, as Hubble UI leaves them out: a reply travels the
edge of its request, and counting it would draw every edge twice, once backwards. Edges carry
the number of flows, the destination ports (`TCP/8080`) and up to `MAX_L7_SAMPLES` L7 request
texts (`GET /v1/ships`).

Pure and synchronous: flows in, a JSON-ready dict out (`to_json`). The web page lays it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from netstrata.observe.flow import (
    DNS,
    HTTP,
    RESERVED_IDENTITY_NAMES,
    SCTP,
    TCP,
    UDP,
    Endpoint,
    Flow,
    FlowType,
    ICMPv4,
    ICMPv6,
    Kafka,
    Verdict,
)

VerdictClass = Literal["forwarded", "dropped", "l7-denied", "audit"]

VERDICT_CLASSES: Final[tuple[VerdictClass, ...]] = ("forwarded", "dropped", "l7-denied", "audit")
MAX_L7_SAMPLES: Final = 5
"""L7 request texts kept per edge: enough to tell which calls an edge carries, bounded so one
chatty client cannot grow the map without end."""
OUTSIDE_GROUP: Final = ""
"""The group of peers that are no cluster's pods (world, host, remote nodes, CIDRs)."""


def verdict_class(flow: Flow) -> VerdictClass | None:
    """Which colour of edge a flow draws; None for verdicts that are not decisions."""
    if flow.verdict == Verdict.AUDIT:
        return "audit"
    if flow.verdict in (Verdict.DROPPED, Verdict.ERROR):
        return "l7-denied" if flow.type == FlowType.L7 else "dropped"
    if flow.verdict in (Verdict.FORWARDED, Verdict.REDIRECTED, Verdict.TRACED, Verdict.TRANSLATED):
        return "forwarded"
    return None


@dataclass(frozen=True, slots=True)
class MapNode:
    """One box on the map."""

    id: str
    """Stable key: `pod:CLUSTER/NS/WORKLOAD`, `reserved:world`, `identity:N` or `ip:A`."""
    name: str
    cluster: str = ""
    namespace: str = ""
    kind: Literal["pod", "reserved", "identity", "ip"] = "pod"
    identity: int = 0
    labels: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return f"{self.cluster}/{self.namespace}" if self.kind == "pod" else OUTSIDE_GROUP


def _workload_name(ep: Endpoint) -> str:
    return ep.workloads[0].name if ep.workloads and ep.workloads[0].name else ep.pod_name


def node_of(ep: Endpoint | None, ip: str, names: tuple[str, ...] = ()) -> MapNode:
    """The map node an endpoint belongs to (its workload, or what it is outside the cluster)."""
    ep = ep or Endpoint()
    if ep.pod_name:
        name = _workload_name(ep)
        return MapNode(
            f"pod:{ep.cluster_name}/{ep.namespace}/{name}",
            name,
            ep.cluster_name,
            ep.namespace,
            "pod",
            ep.identity,
            ep.labels,
        )
    if ep.identity in RESERVED_IDENTITY_NAMES and ep.identity != 0:
        reserved = RESERVED_IDENTITY_NAMES[ep.identity]
        # World peers reached by name (toFQDNs) are told apart by the name, as Hubble UI does.
        key = f"{reserved}:{names[0]}" if names and reserved.startswith("world") else reserved
        return MapNode(
            f"reserved:{key}", key, kind="reserved", identity=ep.identity, labels=ep.labels
        )
    if ep.identity:
        return MapNode(
            f"identity:{ep.identity}",
            f"ID:{ep.identity}",
            kind="identity",
            identity=ep.identity,
            labels=ep.labels,
        )
    return MapNode(f"ip:{ip}", ip or "unknown", kind="ip")


def port_text(flow: Flow) -> str:
    """`TCP/8080`, `UDP/53`, `ICMPv4`: what an edge's port list shows."""
    l4 = flow.l4
    if isinstance(l4, TCP | UDP | SCTP):
        return f"{type(l4).__name__}/{l4.destination_port}"
    if isinstance(l4, ICMPv4 | ICMPv6):
        return type(l4).__name__
    return ""


def l7_text(flow: Flow) -> str:
    """`GET /path`, `DNS example.com.`, `Kafka produce orders`; "" for L3/L4 flows."""
    record = flow.l7.record if flow.l7 is not None else None
    if isinstance(record, HTTP):
        return f"{record.method} {record.url}"
    if isinstance(record, DNS):
        return f"DNS {record.query}"
    if isinstance(record, Kafka):
        return f"Kafka {record.api_key} {record.topic}".rstrip()
    return ""


@dataclass(slots=True)
class MapEdge:
    """Flows from one node to another that got one verdict class."""

    source: str
    destination: str
    verdict: VerdictClass
    count: int = 0
    ports: set[str] = field(default_factory=set)
    l7: list[str] = field(default_factory=list)
    last_ns: int = 0

    def add(self, flow: Flow) -> None:
        self.count += 1
        self.last_ns = max(self.last_ns, flow.time_ns)
        if port := port_text(flow):
            self.ports.add(port)
        text = l7_text(flow)
        if text and text not in self.l7 and len(self.l7) < MAX_L7_SAMPLES:
            self.l7.append(text)


class ServiceMap:
    """Nodes and edges of the flows added so far."""

    def __init__(self) -> None:
        self.nodes: dict[str, MapNode] = {}
        self.edges: dict[tuple[str, str, VerdictClass], MapEdge] = {}
        self.flows = 0
        """Flows drawn (replies and non-decisions are not)."""

    def add(self, flow: Flow) -> None:
        """Fold one flow in (a no-op for replies and verdicts that are not decisions)."""
        cls = verdict_class(flow)
        if cls is None or flow.is_reply:
            return
        src_ip = flow.ip.source if flow.ip else ""
        dst_ip = flow.ip.destination if flow.ip else ""
        src = node_of(flow.source, src_ip, flow.source_names)
        dst = node_of(flow.destination, dst_ip, flow.destination_names)
        # Identity labels may arrive with a later flow (enrichment after a sync): keep them.
        for node in (src, dst):
            known = self.nodes.get(node.id)
            if known is None or (node.labels and not known.labels):
                self.nodes[node.id] = node
        key = (src.id, dst.id, cls)
        edge = self.edges.get(key)
        if edge is None:
            edge = self.edges[key] = MapEdge(src.id, dst.id, cls)
        edge.add(flow)
        self.flows += 1

    def extend(self, flows: Iterable[Flow]) -> ServiceMap:
        for flow in flows:
            self.add(flow)
        return self

    def to_json(self) -> dict[str, object]:
        """Nodes, groups and edges, sorted so equal maps serialise equally."""
        groups = sorted({n.group for n in self.nodes.values()})
        nodes = [
            {
                "id": n.id,
                "name": n.name,
                "cluster": n.cluster,
                "namespace": n.namespace,
                "kind": n.kind,
                "identity": n.identity,
                "labels": list(n.labels),
                "group": n.group,
            }
            for n in sorted(self.nodes.values(), key=lambda n: (n.group, n.name, n.id))
        ]
        edges = [
            {
                "source": e.source,
                "destination": e.destination,
                "verdict": e.verdict,
                "count": e.count,
                "ports": sorted(e.ports),
                "l7": list(e.l7),
                "last_ns": e.last_ns,
            }
            for _, e in sorted(self.edges.items())
        ]
        return {"groups": groups, "nodes": nodes, "edges": edges, "flows": self.flows}


def service_map(flows: Iterable[Flow]) -> ServiceMap:
    """The map of these flows."""
    return ServiceMap().extend(flows)


__all__ = [
    "MAX_L7_SAMPLES",
    "OUTSIDE_GROUP",
    "VERDICT_CLASSES",
    "MapEdge",
    "MapNode",
    "ServiceMap",
    "VerdictClass",
    "l7_text",
    "node_of",
    "port_text",
    "service_map",
    "verdict_class",
]
