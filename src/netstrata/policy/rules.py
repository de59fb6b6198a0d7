"""Internal rules: user policies after sanitizing and namespace/cluster injection.

Cilium turns every CNP/CCNP `spec` into rules whose selectors already carry the implied namespace
and cluster (reference §1.9), and turns Kubernetes NetworkPolicy into the same rule shape
(reference §1.4: the two kinds differ, e.g. `ingress: [{}]`). This module does both translations,
so resolution sees one vocabulary: a subject selector and, per direction, a list of elements with
peer selectors, port specs and optional L7 rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from netstrata.api import types as api
from netstrata.fqdn import selector_string
from netstrata.labels import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_NAMESPACE_LABELS_PREFIX,
    SOURCE_ANY,
    SOURCE_K8S,
    SOURCE_RESERVED,
    Requirement,
    Selector,
)
from netstrata.policy.peers import (
    WILDCARD,
    CIDRPeer,
    FQDNPeer,
    LabelPeer,
    NonePeer,
    PeerSelector,
    reserved_selector,
)
from netstrata.policy.types import Direction, Proto

# ANY / empty protocol expands to these (reference §1.5: never ICMP).
ANY_PROTOCOLS: tuple[Proto, ...] = (Proto.TCP, Proto.UDP, Proto.SCTP)

ICMP_PORT_PREFIX = 8  # ICMP type in the high byte of the port (reference §3.1)


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One protocol/port (range) of an element, ANY already expanded.

    `name` set: a named port, resolved per endpoint (ingress) or per peer identity (egress).
    `port == 0` and no name: every port of `proto`. ICMP: `port = type << 8`, `icmp=True`.
    """

    proto: int
    port: int = 0
    end_port: int = 0
    name: str | None = None
    icmp: bool = False


@dataclass(frozen=True, slots=True)
class PortGroup:
    """The ports of one `toPorts[]` entry and the L7 rules that apply to all of them."""

    ports: tuple[PortSpec, ...]
    parser: str | None = None
    l7_rules: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Element:
    """One ingress/egress(/Deny) element after injection.

    `peers` empty means the element selects nobody. `port_groups` None means L3-only (every
    protocol and port).
    """

    direction: Direction
    deny: bool
    peers: tuple[PeerSelector, ...]
    port_groups: tuple[PortGroup, ...] | None
    description: str
    """E.g. `CiliumNetworkPolicy default/rule1 ingress[0]` (what `rule` reports)."""
    policy_ref: tuple[str, str | None, str]
    """(kind, namespace, name) of the owning policy, for Hubble's `*_allowed_by`."""


@dataclass(frozen=True, slots=True)
class InternalRule:
    subject: Selector | None
    """None: a nodeSelector rule (host firewall), which selects no pod endpoint."""
    elements: tuple[Element, ...]
    has_ingress: bool
    has_egress: bool
    default_deny_ingress: bool
    default_deny_egress: bool
    origin: str
    log: str | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """Objects rules refer to by name: services (toServices) and CIDR groups (cidrGroupRef)."""

    services: tuple[api.Service, ...] = ()
    cidr_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cidr_group_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class _Injector:
    """Applies Cilium's implied-namespace and implied-cluster rules (reference §1.9)."""

    def __init__(self, kind: str, namespace: str | None, cluster: str, local_cluster_default: bool):
        self.kind = kind
        self.namespace = namespace
        self.cluster = cluster
        self.local_cluster_default = local_cluster_default

    def subject(self, sel: Selector) -> Selector:
        if self.kind == "CiliumClusterwideNetworkPolicy" or self.namespace is None:
            return sel
        kept = [r for r in sel.requirements if r.key != LABEL_NAMESPACE]
        kept.append(Requirement(SOURCE_K8S, LABEL_NAMESPACE, "In", (self.namespace,)))
        return Selector.make(kept)

    def peer(self, sel: Selector) -> Selector:
        if sel.all_ or sel.has_source(SOURCE_RESERVED):
            return sel
        extra: list[Requirement] = []
        has_ns = sel.has_key(LABEL_NAMESPACE) or sel.has_key_prefix(LABEL_NAMESPACE_LABELS_PREFIX)
        if not has_ns:
            if self.kind == "CiliumClusterwideNetworkPolicy" or self.namespace is None:
                extra.append(Requirement(SOURCE_K8S, LABEL_NAMESPACE, "Exists"))
            else:
                extra.append(Requirement(SOURCE_K8S, LABEL_NAMESPACE, "In", (self.namespace,)))
        if self.local_cluster_default and not sel.has_key(LABEL_CLUSTER):
            extra.append(Requirement(SOURCE_K8S, LABEL_CLUSTER, "In", (self.cluster,)))
        return sel.with_requirements(extra)

    def cluster_only(self) -> list[Requirement]:
        if self.local_cluster_default:
            return [Requirement(SOURCE_K8S, LABEL_CLUSTER, "In", (self.cluster,))]
        return []


_CLUSTER_RESERVED = ("host", "remote-node", "init", "ingress", "health", "unmanaged", "kube-apiserver")


def entity_peers(name: str, cluster: str) -> list[PeerSelector]:
    """Peer selectors for one entity name (reference §1.7); single-stack world."""
    if name == "all":
        return [WILDCARD]
    if name == "none":
        return [NonePeer()]
    if name in ("world", "world-ipv4", "world-ipv6"):
        return [reserved_selector("world")]
    if name == "cluster":
        peers: list[PeerSelector] = [reserved_selector(n) for n in _CLUSTER_RESERVED]
        peers.append(LabelPeer(Selector.from_k8s({f"k8s:{LABEL_CLUSTER}": cluster})))
        return peers
    if name == "cluster-mesh":
        peers = [reserved_selector(n) for n in _CLUSTER_RESERVED]
        peers.append(LabelPeer(Selector.from_k8s(None, [(f"k8s:{LABEL_CLUSTER}", "Exists", ())])))
        return peers
    return [reserved_selector(name)]


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _cidr_peers(rules: Iterable[api.CIDRRule], catalog: Catalog) -> list[PeerSelector]:
    peers: list[PeerSelector] = []
    for r in rules:
        if r.cidr is not None:
            peers.append(CIDRPeer(_network(r.cidr), tuple(_network(e) for e in r.except_)))
        elif r.cidr_group_ref is not None:
            excepts = tuple(_network(e) for e in r.except_)
            for c in catalog.cidr_groups.get(r.cidr_group_ref, ()):
                peers.append(CIDRPeer(_network(c), excepts))
        elif r.cidr_group_selector is not None:
            for name, labels in catalog.cidr_group_labels.items():
                from netstrata.labels import LabelSet

                if r.cidr_group_selector.matches(LabelSet.from_mapping(labels)):
                    peers.extend(CIDRPeer(_network(c)) for c in catalog.cidr_groups.get(name, ()))
    return peers


def _service_peers(
    services: Iterable[api.ServiceSelector], inj: _Injector, catalog: Catalog
) -> list[PeerSelector]:
    from netstrata.labels import LabelSet

    peers: list[PeerSelector] = []
    for ss in services:
        ns = ss.namespace or inj.namespace or "default"
        for svc in catalog.services:
            if svc.namespace != ns or svc.selector is None:
                continue
            if ss.name is not None and svc.name != ss.name:
                continue
            if ss.selector is not None and not ss.selector.matches(LabelSet.from_mapping(dict(svc.labels))):
                continue
            reqs = [Requirement(SOURCE_ANY, k, "In", (v,)) for k, v in svc.selector]
            reqs.append(Requirement(SOURCE_K8S, LABEL_NAMESPACE, "In", (ns,)))
            reqs.extend(inj.cluster_only())
            peers.append(LabelPeer(Selector.make(reqs)))
    return peers


def _element_peers(el: api.PeerRule, direction: Direction, inj: _Injector, catalog: Catalog) -> tuple[PeerSelector, ...] | None:
    """Peers of an element; None when no L3 field is present (an L3 wildcard if ports exist)."""
    if not el.has_l3:
        return None
    peers: list[PeerSelector] = []
    for sel in el.endpoints or ():
        peers.append(LabelPeer(inj.peer(sel)))
    for ent in el.entities or ():
        peers.extend(entity_peers(ent, inj.cluster))
    peers.extend(_cidr_peers(el.cidrs or (), catalog))
    for node_sel in el.nodes or ():
        # Node identities are not split per node here: a node selector selects the node
        # identities (host, remote-node). TODO(issue 3): per-node identities with node labels.
        del node_sel
        peers.extend([reserved_selector("remote-node"), reserved_selector("host")])
    peers.extend(FQDNPeer(selector_string(f), f) for f in el.fqdns or ())
    peers.extend(_service_peers(el.services or (), inj, catalog))
    return tuple(dict.fromkeys(peers))


def _port_specs(pp: api.PortProtocol) -> list[PortSpec]:
    proto_name = pp.protocol.upper() or "ANY"
    protos = ANY_PROTOCOLS if proto_name == "ANY" else (Proto[proto_name],)
    if pp.is_named:
        return [PortSpec(p, name=pp.port.lower()) for p in protos]
    port = int(pp.port)
    end = pp.end_port if pp.end_port and pp.end_port > port else 0
    return [PortSpec(p, port, end) for p in protos]


def _port_groups(el: api.PeerRule) -> tuple[PortGroup, ...] | None:
    if el.icmps is not None:
        specs = [
            PortSpec(Proto.ICMPV6 if f.family == "IPv6" else Proto.ICMP, f.type << 8, icmp=True)
            for f in el.icmps
        ]
        return (PortGroup(tuple(specs)),)
    if el.to_ports is None:
        return None
    groups = []
    for pr in el.to_ports:
        specs = [s for pp in pr.ports for s in _port_specs(pp)]
        if not pr.ports:
            specs = [PortSpec(p) for p in ANY_PROTOCOLS]
        parser = pr.rules.parser if pr.rules is not None else None
        rules: tuple[object, ...] = ()
        if pr.rules is not None and parser is not None:
            rules = tuple(getattr(pr.rules, parser, None) or ())
        groups.append(PortGroup(tuple(specs), parser, rules))
    return tuple(groups)


def translate_cilium(
    policy: api.CiliumPolicy, cluster: str, catalog: Catalog, local_cluster_default: bool = True
) -> list[InternalRule]:
    out = []
    namespace = policy.namespace
    if policy.kind == "CiliumNetworkPolicy" and not namespace:
        namespace = "default"  # as kubectl applies a namespaced object without a namespace
    for rule in policy.rules:
        inj = _Injector(policy.kind, namespace, cluster, local_cluster_default)
        subject = inj.subject(rule.endpoint_selector) if rule.endpoint_selector is not None else None
        elements: list[Element] = []
        ref = (policy.kind, policy.namespace, policy.name)
        for field_name, direction, deny in (
            ("ingress", Direction.INGRESS, False),
            ("ingress_deny", Direction.INGRESS, True),
            ("egress", Direction.EGRESS, False),
            ("egress_deny", Direction.EGRESS, True),
        ):
            wire = {"ingress_deny": "ingressDeny", "egress_deny": "egressDeny"}.get(field_name, field_name)
            for i, el in enumerate(getattr(rule, field_name)):
                peers = _element_peers(el, direction, inj, catalog)
                groups = _port_groups(el)
                if peers is None:
                    peers = (WILDCARD,) if groups is not None else ()
                desc = f"{rule.origin.describe()} {wire}[{i}]"
                elements.append(Element(direction, deny, peers, groups, desc, ref))
        out.append(
            InternalRule(
                subject=subject,
                elements=tuple(elements),
                has_ingress=bool(rule.ingress or rule.ingress_deny),
                has_egress=bool(rule.egress or rule.egress_deny),
                default_deny_ingress=rule.default_deny_ingress is not False,
                default_deny_egress=rule.default_deny_egress is not False,
                origin=rule.origin.describe(),
                log=rule.log,
            )
        )
    return out


def _namespace_selector(sel: Selector) -> list[Requirement]:
    """A k8s namespaceSelector rewritten onto Cilium's derived namespace-label keys."""
    reqs = [
        Requirement(SOURCE_K8S, LABEL_NAMESPACE_LABELS_PREFIX + r.key, r.operator, r.values)
        for r in sel.requirements
    ]
    reqs.append(Requirement(SOURCE_K8S, LABEL_NAMESPACE, "Exists"))
    return reqs


def _np_peer(peer: api.NetworkPolicyPeer, namespace: str, inj: _Injector) -> PeerSelector | None:
    if peer.ip_block is not None:
        return CIDRPeer(
            _network(peer.ip_block.cidr),
            tuple(_network(e) for e in peer.ip_block.except_),
            match_endpoint_ips=True,
        )
    reqs: list[Requirement] = []
    if peer.pod_selector is not None:
        reqs.extend(peer.pod_selector.requirements)
    if peer.namespace_selector is not None:
        reqs.extend(_namespace_selector(peer.namespace_selector))
    else:
        reqs.append(Requirement(SOURCE_K8S, LABEL_NAMESPACE, "In", (namespace,)))
    reqs.extend(inj.cluster_only())
    return LabelPeer(Selector.make(reqs))


def _np_ports(ports: Sequence[api.NetworkPolicyPort]) -> tuple[PortGroup, ...] | None:
    if not ports:
        return None
    specs: list[PortSpec] = []
    for p in ports:
        proto = Proto[(p.protocol or "TCP").upper()]
        if p.port is None:
            specs.append(PortSpec(proto))
        elif isinstance(p.port, str) and not p.port.isdigit():
            specs.append(PortSpec(proto, name=p.port.lower()))
        else:
            port = int(p.port)
            end = p.end_port if p.end_port and p.end_port > port else 0
            specs.append(PortSpec(proto, port, end))
    return (PortGroup(tuple(specs)),)


def translate_network_policy(
    np: api.NetworkPolicy, cluster: str, local_cluster_default: bool = True
) -> InternalRule:
    """Kubernetes NetworkPolicy semantics: an empty `from`/`to` means every peer, world included."""
    inj = _Injector("NetworkPolicy", np.namespace, cluster, local_cluster_default)
    subject = Selector.make(
        [*np.pod_selector.requirements,
         Requirement(SOURCE_K8S, LABEL_NAMESPACE, "In", (np.namespace,))]
    )
    ref = ("NetworkPolicy", np.namespace, np.name)
    elements: list[Element] = []
    for direction, rules, wire in (
        (Direction.INGRESS, np.ingress if "Ingress" in np.policy_types else (), "ingress"),
        (Direction.EGRESS, np.egress if "Egress" in np.policy_types else (), "egress"),
    ):
        for i, rule in enumerate(rules):
            if rule.peers:
                peers = tuple(p for p in (_np_peer(x, np.namespace, inj) for x in rule.peers) if p)
            else:
                peers = (WILDCARD,)
            desc = f"NetworkPolicy {np.namespace}/{np.name} {wire}[{i}]"
            elements.append(Element(direction, False, peers, _np_ports(rule.ports), desc, ref))
    return InternalRule(
        subject=subject,
        elements=tuple(elements),
        has_ingress="Ingress" in np.policy_types,
        has_egress="Egress" in np.policy_types,
        default_deny_ingress=True,
        default_deny_egress=True,
        origin=f"NetworkPolicy {np.namespace}/{np.name}",
    )
