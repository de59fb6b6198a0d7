"""The policy engine of one cluster's agents: workloads -> identities -> resolved policies.

Synchronous and pure (no sockets, no eBPF): the real agent drives it and pushes its results into
the kernel and the proxy; `policy check` and `policy trace` drive it and hand its results to the
reference datapath. Applying manifests is transactional: everything is validated and translated
first and a resolution failure (a conflict) leaves the previous state in force.

Multi-cluster: every engine sees the pod identities of every connected cluster (ClusterMesh
shares them through the kvstore); CIDR and FQDN identities stay local to the engine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netstrata.api import types as api
from netstrata.errors import PolicyConflictError
from netstrata.identity import LocalIdentityAllocator
from netstrata.labels import LabelSet
from netstrata.policy.peers import CIDRPeer
from netstrata.policy.resolve import EndpointInfo, NamedPorts, PolicyConfig, Resolver
from netstrata.policy.rules import (
    Catalog,
    InternalRule,
    translate_cilium,
    translate_network_policy,
)
from netstrata.policy.selector_cache import SelectorCache
from netstrata.policy.types import Proto, ResolvedPolicy

WORLD = 2
HOST = 1
REMOTE_NODE = 6
KUBE_APISERVER = 7


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A policy-enforced workload on some node of some cluster."""

    endpoint_id: int
    workload: api.Workload
    identity: int
    labels: LabelSet
    ips: tuple[str, ...]
    named_ports: NamedPorts

    @property
    def ref(self) -> str:
        return f"{self.workload.namespace}/{self.workload.name}"


@dataclass
class IdentityFacts:
    """Facts about identities that selectors and named ports need beyond labels."""

    ips: dict[int, set[str]] = field(default_factory=dict)
    ports: dict[int, dict[str, set[tuple[int, int]]]] = field(default_factory=dict)

    def endpoint_ips(self, identity: int) -> tuple[str, ...]:
        return tuple(sorted(self.ips.get(identity, ())))

    def named_ports(self, identity: int) -> NamedPorts:
        return {k: tuple(sorted(v)) for k, v in self.ports.get(identity, {}).items()}


def named_ports_of(workload: api.Workload) -> dict[str, tuple[tuple[int, int], ...]]:
    out: dict[str, set[tuple[int, int]]] = {}
    for p in workload.ports:
        if p.name:
            out.setdefault(p.name.lower(), set()).add((p.port, int(Proto[p.protocol.upper()])))
    return {k: tuple(sorted(v)) for k, v in out.items()}


@dataclass
class PolicyState:
    """What the engine last applied successfully."""

    rules: tuple[InternalRule, ...] = ()
    policies: dict[int, ResolvedPolicy] = field(default_factory=dict)
    revision: int = 0


class ClusterPolicyEngine:
    """Resolves the policy of every local endpoint of one cluster."""

    def __init__(self, config: PolicyConfig, identities: Mapping[int, LabelSet], facts: IdentityFacts,
                 local_identities: Iterable[tuple[int, LabelSet]] = ()) -> None:
        self.config = config
        self.facts = facts
        self.cache = SelectorCache(facts)
        for ident, labels in identities.items():
            self.cache.upsert_identity(ident, labels)
        for ident, labels in local_identities:
            self.cache.upsert_identity(ident, labels)
        self.state = PolicyState()
        self.endpoints: dict[int, Endpoint] = {}
        self._cidr_ids: dict[str, int] = {}
        self._local = LocalIdentityAllocator()

    # ------------------------------------------------------------------ identities

    def allocate_local(self, labels: LabelSet) -> int:
        """A node-local (CIDR/FQDN) identity for `labels`, known to the selector cache."""
        ident = self._local.lookup_by_labels(labels)
        if ident is None:
            ident = self._local.allocate(labels)
        if self.cache.identities.get(ident) != labels and ident > 255:
            self.cache.upsert_identity(ident, labels)
        return ident

    def cidr_identity(self, prefix: str) -> int:
        """The identity of a CIDR a policy references (/0 is world, as in Cilium)."""
        net = str(ipaddress.ip_network(prefix, strict=False))
        ident = self._cidr_ids.get(net)
        if ident is None:
            ident = self._local.lookup_cidr(net) or self._local.allocate_cidr(net)
            labels = self._local.lookup(ident)
            if labels is not None and ident > 255:
                self.cache.upsert_identity(ident, labels)
            self._cidr_ids[net] = ident
        return ident

    def cidr_prefixes(self) -> dict[str, int]:
        return dict(self._cidr_ids)

    def _ensure_cidr_identities(self, rules: Iterable[InternalRule]) -> None:
        for rule in rules:
            for el in rule.elements:
                for peer in el.peers:
                    if isinstance(peer, CIDRPeer):
                        self.cidr_identity(str(peer.network))
                        for e in peer.excepts:
                            self.cidr_identity(str(e))

    # ------------------------------------------------------------------ manifests

    def translate(self, cilium: Iterable[api.CiliumPolicy], k8s: Iterable[api.NetworkPolicy],
                  catalog: Catalog) -> list[InternalRule]:
        rules: list[InternalRule] = []
        for pol in cilium:
            rules.extend(translate_cilium(pol, self.config.cluster, catalog, self.config.default_local_cluster))
        for np in k8s:
            rules.append(translate_network_policy(np, self.config.cluster, self.config.default_local_cluster))
        return rules

    def apply_rules(self, rules: list[InternalRule]) -> dict[int, ResolvedPolicy]:
        """Resolve every endpoint under `rules`; on a conflict nothing changes (raises)."""
        self._ensure_cidr_identities(rules)
        resolver = Resolver(rules, self.cache, self.config, self.facts)
        resolver.revision = self.state.revision + 1
        new: dict[int, ResolvedPolicy] = {}
        by_identity: dict[tuple[int, tuple[object, ...], bool], ResolvedPolicy] = {}
        for ep in self.endpoints.values():
            info = EndpointInfo(ep.endpoint_id, ep.identity, ep.labels, ep.named_ports,
                                audit=_audit_annotation(ep.workload))
            sig = (ep.identity, tuple(sorted(ep.named_ports.items())), info.audit)
            try:
                shared = by_identity.get(sig)
                if shared is None:
                    shared = by_identity[sig] = resolver.resolve(info)
            except PolicyConflictError as exc:
                raise PolicyConflictError(f"endpoint {ep.ref}: {exc}") from exc
            new[ep.endpoint_id] = _for_endpoint(shared, ep.endpoint_id)
        self.state = PolicyState(tuple(rules), new, resolver.revision)
        self.resolver = resolver
        return new

    def add_endpoint(self, ep: Endpoint) -> None:
        self.endpoints[ep.endpoint_id] = ep


AUDIT_ANNOTATIONS: tuple[str, ...] = (
    "policy.netstrata.io/audit-mode",
    "netstrata.io/audit-mode",
    "policy.cilium.io/audit-mode",
)
"""Workload annotations that put one endpoint in audit mode (value `true` or `enabled`).
The first is the documented one; Cilium itself has no annotation (its per-endpoint switch is
`cilium endpoint config <id> PolicyAuditMode=Enabled`), the others are accepted spellings."""


def _audit_annotation(w: api.Workload) -> bool:
    ann = dict(w.annotations)
    return any(ann.get(k, "").strip().lower() in ("true", "enabled") for k in AUDIT_ANNOTATIONS)


def _for_endpoint(shared: ResolvedPolicy, endpoint_id: int) -> ResolvedPolicy:
    if shared.endpoint_id == endpoint_id:
        return shared
    from dataclasses import replace

    return replace(shared, endpoint_id=endpoint_id)
