"""The reference run of a lab: every cluster's policy engine plus the reference datapath.

This is what `netstrata policy check` and `policy trace` execute: no sockets, no kernel. A probe
is walked the way a packet would go: DNS lookup through kube-dns when the probe resolves a name
(learning toFQDNs IPs when the DNS proxy sees the answer), egress policy of the source endpoint,
the proxy for a redirected egress port, ingress policy of the destination endpoint, the proxy for
a redirected ingress port. Each step's decision, and the rule that made it, is recorded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from netstrata.agent.engine import (
    HOST,
    KUBE_APISERVER,
    REMOTE_NODE,
    WORLD,
    ClusterPolicyEngine,
    Endpoint,
    IdentityFacts,
    named_ports_of,
)
from netstrata.api import types as api
from netstrata.datapath.reference._lookup import LookupResult, policy_lookup
from netstrata.datapath.reference.l7 import l7_check
from netstrata.identity import IdentityAllocator
from netstrata.lab.topology import PlacedWorkload, Topology
from netstrata.labels import Label, LabelSet
from netstrata.mesh.trace import (
    MeshCall,
    MeshEndpoint,
    MeshTrace,
    cluster_trust_domain,
    istio_port_protocol,
    trace_mesh,
)
from netstrata.mesh.types import JwksFetcher, MeshConfig, MeshDecision, WorkloadPort
from netstrata.policy.rules import Catalog, InternalRule
from netstrata.policy.types import Direction, Proto, ResolvedPolicy

PodLabelFn = Callable[[api.Workload, Mapping[str, str]], LabelSet]

RESERVED_LABELS: Mapping[int, tuple[str, ...]] = {
    1: ("host",),
    2: ("world",),
    3: ("unmanaged",),
    4: ("health",),
    5: ("init",),
    6: ("remote-node",),
    7: ("kube-apiserver", "remote-node"),
    8: ("ingress",),
}


def reserved_identities() -> dict[int, LabelSet]:
    return {i: LabelSet(Label("reserved", n) for n in names) for i, names in RESERVED_LABELS.items()}


@dataclass(frozen=True, slots=True)
class Step:
    """One decision on the way of a probe."""

    layer: str
    """`l3l4`, `l7` or `mesh`."""
    direction: str
    allowed: bool
    rule: str | None
    detail: str
    audited: bool = False
    drop_reason: str | None = None
    entry: str | None = None
    """L3/L4: the MapState key and entry the lookup chose (`policy get` notation)."""


@dataclass
class ProbeOutcome:
    got: str
    layer: str | None = None
    rule: str | None = None
    direction: str | None = None
    drop_reason: str | None = None
    proxied: bool = False
    steps: list[Step] = field(default_factory=list)
    delivered: object | None = None
    """The L7 request as it reached the server (after proxy rewrites), when allowed."""
    mesh: MeshTrace | None = None
    """The mesh leg (stratum 3), when the lab has mesh settings and the connection got there."""
    observed_mesh: ObservedMesh | None = None
    """What a destination proxy of the kernel lab reported deciding (real traffic only)."""


@dataclass(frozen=True, slots=True)
class ObservedMesh:
    """The mesh facts of one real request, as the destination node proxy decided it: the
    decision (deciding rule, local reply) and the principal authorization was shown."""

    decision: MeshDecision
    peer_principal: str | None


@dataclass
class MeshSettings:
    """What the destination proxies of a lab know: meshConfig and each cluster's Istio objects."""

    config: MeshConfig = field(default_factory=MeshConfig)
    objects: dict[str, tuple[object, ...]] = field(default_factory=dict)
    """Istio objects (`api.istio` types) by cluster."""
    now: float = 0.0
    """Evaluation time, Unix seconds (JWT validity); callers pass a fixed one for repeatability."""
    jwks_fetcher: JwksFetcher | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """What a probe sends, protocol-agnostic. `l7` is an HTTPRequest/KafkaRequest/qname or None."""

    proto: int
    port: int
    parser: str | None = None
    l7: object | None = None


class ReferenceLab:
    def __init__(self, topology: Topology, pod_identity_labels: PodLabelFn | None = None) -> None:
        self.topology = topology
        self.facts = IdentityFacts()
        self.identities: dict[int, LabelSet] = dict(reserved_identities())
        self.identity_of: dict[str, int] = {}
        self._label_fn = pod_identity_labels or default_pod_labels
        from netstrata.kvstore import EmbeddedKVStore

        self.kvstore = EmbeddedKVStore()
        self._allocators: dict[int, IdentityAllocator] = {}
        self.engines: dict[str, ClusterPolicyEngine] = {}
        self.fqdn_ips: dict[str, dict[str, int]] = {}
        self.catalogs: dict[str, Catalog] = {}
        self.manifests: dict[str, tuple[tuple[api.CiliumPolicy, ...], tuple[api.NetworkPolicy, ...]]] = {}
        self.secrets: dict[tuple[str, str], str] = {}
        """(namespace, name) -> Secret value the agent may read (headerMatches secrets)."""
        self.mesh: MeshSettings | None = None
        """Set to judge the mesh layer after L3/L4 and L7; None leaves it out of every walk."""
        self.rebuild_identities()

    # ------------------------------------------------------------------ identities and endpoints

    def _allocate(self, cluster_id: int, labels: LabelSet) -> int:
        """Allocate through the cluster's identity allocator (the embedded kvstore by default),
        exactly as an agent does; equal labels give equal identities."""
        alloc = self._allocators.get(cluster_id)
        if alloc is None:
            alloc = self._allocators[cluster_id] = IdentityAllocator(self.kvstore, cluster_id)
        ident = alloc.lookup_by_labels(labels)
        if ident is None:
            ident = alloc.allocate(labels)
        self.identities[ident] = labels
        return ident

    def rebuild_identities(self) -> None:
        """(Re)compute pod identities from current labels; keeps engines' caches current."""
        self.facts.ips.clear()
        self.facts.ports.clear()
        for p in self.topology.pods():
            w = p.workload
            ns_labels = self.topology.namespaces.get((w.cluster, w.namespace), {})
            labels = self._label_fn(w, ns_labels)
            # A lone cluster has no clustermesh id (0): identities from 256, as in Cilium.
            cid = 0 if len(self.topology.clusters) == 1 else self.topology.cluster_index(w.cluster)
            ident = self._allocate(cid, labels)
            self.identity_of[p.ref] = ident
            self.facts.ips.setdefault(ident, set()).update(p.ips)
            for name, pps in named_ports_of(w).items():
                self.facts.ports.setdefault(ident, {}).setdefault(name, set()).update(pps)
        live = set(self.identity_of.values()) | set(RESERVED_LABELS)
        for ident in [i for i in self.identities if i not in live]:
            del self.identities[ident]
        for engine in self.engines.values():
            self._sync_engine_identities(engine)

    def _sync_engine_identities(self, engine: ClusterPolicyEngine) -> None:
        for ident, labels in self.identities.items():
            engine.cache.upsert_identity(ident, labels)
        for ident in [i for i in engine.cache.identities if i < 0x01000000 and i not in self.identities]:
            engine.cache.remove_identity(ident)
        engine.cache.refresh()
        engine.endpoints.clear()
        for i, p in enumerate(self.topology.pods(), start=1):
            if p.workload.cluster != engine.config.cluster:
                continue
            ident = self.identity_of[p.ref]
            engine.add_endpoint(
                Endpoint(i, p.workload, ident, self.identities[ident], p.ips, named_ports_of(p.workload))
            )

    def engine(self, cluster: str) -> ClusterPolicyEngine:
        eng = self.engines.get(cluster)
        if eng is None:
            spec = self.topology.clusters[cluster]
            eng = ClusterPolicyEngine(spec.config, {}, self.facts)
            self.engines[cluster] = eng
            self._sync_engine_identities(eng)
        return eng

    def apply(self, cluster: str, cilium: tuple[api.CiliumPolicy, ...],
              k8s: tuple[api.NetworkPolicy, ...], catalog: Catalog) -> None:
        eng = self.engine(cluster)
        rules: list[InternalRule] = eng.translate(cilium, k8s, catalog)
        eng.apply_rules(rules)
        self.catalogs[cluster] = catalog
        self.manifests[cluster] = (cilium, k8s)

    def learn_fqdn(self, cluster: str, qname: str, ips: tuple[str, ...]) -> None:
        """What the DNS proxy does with an allowed answer (reference §6): label the answer's IPs
        `fqdn:<selector>` for every registered selector matching the name, then re-resolve."""
        from netstrata.fqdn import labels_for_name

        eng = self.engine(cluster)
        fqdn_labels = labels_for_name(qname, _fqdn_selectors(eng.state.rules))
        if not fqdn_labels:
            return
        labels = LabelSet([Label("reserved", "world"), *fqdn_labels])
        learned = self.fqdn_ips.setdefault(cluster, {})
        for ip in ips:
            owner = self.topology.owner_of_ip(ip)
            if owner is not None and owner.workload.kind == "pod":
                continue  # toFQDNs never applies to cluster IPs
            learned[ip] = eng.allocate_local(labels)
        self.reresolve()

    def forget_fqdn_ips(self, cluster: str, ips: Iterable[str]) -> bool:
        """Drop learned IPs whose DNS records expired, then re-resolve; True if any was held."""
        learned = self.fqdn_ips.get(cluster, {})
        gone = [ip for ip in ips if learned.pop(ip, None) is not None]
        if gone:
            self.reresolve()
        return bool(gone)

    def forget_fqdns(self) -> None:
        """Start from an empty DNS cache (a fresh agent) and drop identities learned from it."""
        if any(self.fqdn_ips.values()):
            self.fqdn_ips.clear()
            self.reresolve()

    def reresolve(self) -> None:
        for cluster, (cilium, k8s) in self.manifests.items():
            self.apply(cluster, cilium, k8s, self.catalogs[cluster])

    # ------------------------------------------------------------------ ipcache

    def ipcache(self, cluster: str, node: str | None, ip: str) -> int:
        """Identity of `ip` as an agent on `node` of `cluster` sees it (miss = world)."""
        owner = self.topology.owner_of_ip(ip)
        if owner is not None and owner.workload.kind == "pod":
            return self.identity_of[owner.ref]
        for (c, n), node_ip in self.topology.node_ips.items():
            if node_ip == ip:
                return HOST if (c == cluster and n == node) else REMOTE_NODE
        if self.topology.apiserver_ips.get(cluster) == ip:
            return KUBE_APISERVER
        eng = self.engine(cluster)
        learned = self.fqdn_ips.get(cluster, {})
        if ip in learned:
            return learned[ip]
        addr = ipaddress.ip_address(ip)
        best: tuple[int, int] | None = None
        for prefix, ident in eng.cidr_prefixes().items():
            net = ipaddress.ip_network(prefix)
            if addr in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, ident)
        return best[1] if best else WORLD

    # ------------------------------------------------------------------ policy walk

    def endpoint_policy(self, p: PlacedWorkload) -> ResolvedPolicy | None:
        if p.workload.kind != "pod":
            return None
        eng = self.engine(p.workload.cluster)
        for ep in eng.endpoints.values():
            if ep.workload is p.workload or (ep.ref == f"{p.workload.namespace}/{p.workload.name}"
                                            and ep.ips == p.ips):
                return eng.state.policies.get(ep.endpoint_id)
        return None

    def _l34(self, policy: ResolvedPolicy, direction: Direction, peer: int,
             req: Request) -> tuple[LookupResult, bool]:
        enforced = policy.ingress_enforced if direction == Direction.INGRESS else policy.egress_enforced
        result = policy_lookup(policy.entries, direction, peer, req.proto, req.port)
        del enforced
        audited = not result.allowed and policy.audit
        return result, audited

    def walk(self, src: PlacedWorkload, dst_ip: str, req: Request) -> ProbeOutcome:
        """Walk one connection/request from `src` to `dst_ip` and decide it."""
        out = ProbeOutcome("allowed", delivered=req.l7)
        dst = self.topology.owner_of_ip(dst_ip)
        src_cluster = src.workload.cluster
        src_node = src.workload.node
        for direction, subject, peer_ip, view in (
            (Direction.EGRESS, src, dst_ip, (src_cluster, src_node)),
            (Direction.INGRESS, dst, self._source_ip(src, dst), None),
        ):
            if subject is None:
                continue
            policy = self.endpoint_policy(subject)
            if policy is None:
                continue
            if view is None:
                view = (subject.workload.cluster, subject.workload.node)
            peer = self.ipcache(view[0], view[1], peer_ip)
            dname = direction.name.lower()
            enforced = policy.ingress_enforced if direction == Direction.INGRESS else policy.egress_enforced
            if not enforced:
                out.steps.append(Step("l3l4", dname, True, None,
                                      f"peer identity {peer}; not enforced (no policy selects {subject.ref})"))
                out.layer = out.layer or "l3l4"
                continue
            result, audited = self._l34(policy, direction, peer, req)
            rule = policy.cookies.get(result.entry.cookie) if result.entry else None
            entry = entry_text(result)
            if not result.allowed and not audited:
                reason = result.drop_reason.name if result.drop_reason else None
                out.steps.append(Step("l3l4", dname, False, rule, f"peer identity {peer}", drop_reason=reason,
                                      entry=entry))
                return ProbeOutcome("dropped", "l3l4", rule, dname, reason, out.proxied, out.steps)
            out.steps.append(Step("l3l4", dname, True, rule, f"peer identity {peer}", audited=audited,
                                  entry=entry))
            if audited:
                out.got = "audited"
                out.layer, out.rule = "l3l4", rule
                continue
            out.layer = out.layer or "l3l4"
            if rule and out.layer != "l7":
                out.rule = rule  # an L7 decision stays the one reported
            if result.proxy_port:
                out.proxied = True
                l7 = policy.find_l7(direction, req.proto, req.port)
                if l7 is not None and req.l7 is not None and req.parser == l7.parser:
                    verdict = l7_check(l7, peer, req.l7,
                                       lambda ns, name: self.secrets.get((ns, name)))
                    l7rule = policy.cookies.get(verdict.cookie) if verdict.cookie else None
                    if not verdict.allowed and policy.audit:
                        # netstrata's L7 audit (beyond Cilium): report, forward unchanged.
                        out.steps.append(Step("l7", dname, True, l7rule, f"{l7.parser} rules",
                                              audited=True))
                        out.got, out.layer, out.rule = "audited", "l7", l7rule or rule
                        continue
                    out.steps.append(Step("l7", dname, verdict.allowed, l7rule, f"{l7.parser} rules"))
                    if not verdict.allowed:
                        return ProbeOutcome("denied-l7", "l7", rule, dname, None, True, out.steps)
                    out.layer, out.rule = "l7", l7rule or rule
                    out.delivered = verdict.forwarded
                    req = Request(req.proto, req.port, req.parser, verdict.forwarded)
                elif l7 is not None and req.parser != l7.parser and policy.audit:
                    out.steps.append(Step("l7", dname, True, rule, f"not {l7.parser} traffic",
                                          audited=True))
                    out.got = "audited"
                elif l7 is not None and req.parser != l7.parser:
                    # The proxy cannot parse this protocol as the rules' L7 type: it refuses it.
                    out.steps.append(Step("l7", dname, False, rule, f"not {l7.parser} traffic"))
                    return ProbeOutcome("denied-l7", "l7", rule, dname, None, True, out.steps)
        return self._mesh_leg(src, dst, dst_ip, req, out)

    # ------------------------------------------------------------------ mesh (stratum 3)

    def mesh_endpoint(self, p: PlacedWorkload) -> MeshEndpoint | None:
        """`p` as the mesh sees it; None for what is not a workload (outside hosts, apiserver)."""
        w = p.workload
        if w.kind not in ("pod", "host-network"):
            return None
        ports = tuple(WorkloadPort(cp.port, istio_port_protocol(cp.protocol, cp.name, cp.app_protocol))
                      for cp in w.ports)
        return MeshEndpoint(
            namespace=w.namespace, name=w.name, cluster=w.cluster, service_account=w.service_account,
            labels=dict(w.labels), annotations=dict(w.annotations),
            namespace_labels=dict(self.topology.namespaces.get((w.cluster, w.namespace), {})),
            ip=p.ip, ports=ports, host_network=w.kind == "host-network")

    def mesh_config_for(self, cluster: str) -> MeshConfig:
        """The meshConfig of `cluster`'s proxies: the lab's, in that cluster's trust domain."""
        assert self.mesh is not None
        td = cluster_trust_domain(cluster, list(self.topology.clusters), self.mesh.config)
        return replace(self.mesh.config, trust_domain=td)

    def _mesh_leg(self, src: PlacedWorkload, dst: PlacedWorkload | None, dst_ip: str, req: Request,
                  out: ProbeOutcome) -> ProbeOutcome:
        """After the kernel and Cilium's proxy let a TCP connection through, the destination's
        mesh proxy decides (Istio captures TCP only)."""
        if self.mesh is None or dst is None or req.proto != int(Proto.TCP):
            return out
        destination = self.mesh_endpoint(dst)
        if destination is None:
            return out
        source = self.mesh_endpoint(src)
        clusters = list(self.topology.clusters)
        trace = trace_mesh(
            self.mesh.objects.get(dst.workload.cluster, ()), source, destination,  # type: ignore[arg-type]
            mesh_call(req), self.mesh_config_for(dst.workload.cluster),
            source_trust_domain=cluster_trust_domain(src.workload.cluster, clusters, self.mesh.config),
            source_ip=src.ip, now=self.mesh.now, jwks_fetcher=self.mesh.jwks_fetcher)
        out.mesh = trace
        if trace.decision is None:
            return out
        decided_by = trace.decision.decided_by
        allowed = trace.verdict != "denied"
        out.steps.append(Step("mesh", "ingress", allowed, decided_by, trace.reason,
                              audited=trace.verdict == "audited"))
        if not allowed:
            return ProbeOutcome("denied-mesh", "mesh", decided_by, "ingress", None, out.proxied, out.steps,
                                mesh=trace)
        if trace.verdict == "audited":
            out.got = "audited"
        if decided_by.startswith("ns["):  # a named rule decided: the mesh is the deciding layer
            out.layer, out.rule = "mesh", decided_by
        return out

    def _source_ip(self, src: PlacedWorkload, dst: PlacedWorkload | None) -> str:
        return src.ip




def mesh_call(req: Request) -> MeshCall:
    """What the destination's mesh proxy sees of `req` (gRPC told apart by its content-type)."""
    from netstrata.policy.l7 import HTTPRequest

    if req.parser == "http" and isinstance(req.l7, HTTPRequest):
        r = req.l7
        ctype = next((v for k, v in r.headers if k.lower() == "content-type"), "")
        proto = "grpc" if ctype.startswith("application/grpc") else "http"
        return MeshCall(req.port, proto, r.method, r.host, r.path, tuple(r.headers))
    return MeshCall(req.port, "tcp")


def entry_text(result: LookupResult) -> str | None:
    """The deciding MapState key and entry, as `policy get` prints them."""
    key, entry = result.key, result.entry
    if key is None or entry is None:
        return None
    proto = {0: "ANY", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}.get(key.proto, str(key.proto))
    if key.proto in (1, 58):
        port = f"type {key.port >> 8}"
    elif key.port_prefix == 0:
        port = "ANY"
    elif key.port_prefix == 16:
        port = str(key.port)
    else:
        port = f"{key.port}-{key.port + (1 << (16 - key.port_prefix)) - 1}"
    action = "Deny" if entry.deny else (f"Redirect to proxy port {entry.proxy_port}" if entry.proxy_port else "Allow")
    ident = "ANY" if key.identity == 0 else str(key.identity)
    return f"{key.direction.name.capitalize()} identity {ident} {proto}/{port}: {action} (precedence {entry.precedence})"


def default_pod_labels(w: api.Workload, ns_labels: Mapping[str, str]) -> LabelSet:
    """Identity labels of a pod (reference §1.9, §2.3): its labels plus Cilium's derived labels."""
    try:
        from netstrata.identity import identity_labels_for_pod

        return identity_labels_for_pod(dict(w.labels), w.namespace, dict(ns_labels), w.service_account, w.cluster)
    except ImportError:
        pass
    labels = [Label("k8s", k, v) for k, v in w.labels]
    labels.append(Label("k8s", "io.kubernetes.pod.namespace", w.namespace))
    labels.append(Label("k8s", "io.cilium.k8s.policy.serviceaccount", w.service_account))
    labels.append(Label("k8s", "io.cilium.k8s.policy.cluster", w.cluster))
    for k, v in ns_labels.items():
        labels.append(Label("k8s", f"io.cilium.k8s.namespace.labels.{k}", v))
    return LabelSet(labels)


__all__ = ["MeshSettings", "ProbeOutcome", "ReferenceLab", "Request", "Step", "Proto", "entry_text", "mesh_call"]


def _fqdn_selectors(rules: tuple[InternalRule, ...]) -> list[api.FQDNSelector]:
    from netstrata.policy.peers import FQDNPeer

    found = {p.selector for r in rules for el in r.elements for p in el.peers
             if isinstance(p, FQDNPeer) and p.selector is not None}
    return sorted(found, key=lambda s: (s.match_name or "", s.match_pattern or ""))

