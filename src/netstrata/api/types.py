"""Domain objects produced by `api/` from validated manifests; everything below `api/` uses these.

They are frozen and hold exactly what the user wrote, normalised (strings stripped, protocol
names upper-cased) but not yet interpreted: namespace and cluster injection, named-port
resolution and every other semantic step happen in `policy/`. Absent vs empty matters (Cilium
reference §1.4), so optional lists are `None` when absent and `()` when written empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from netstrata.labels import LabelSet, Selector

PolicyKind = Literal[
    "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "NetworkPolicy"
]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a manifest object came from, for explanations and errors."""

    path: str = "<memory>"
    line: int | None = None


# ---------------------------------------------------------------- Cilium L7 rules (§1.5.1)


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    value: str | None = None
    mismatch: str | None = None
    """LOG, ADD, DELETE or REPLACE: the rule still matches on a mismatch; None fails the rule."""
    secret: tuple[str, str] | None = None
    """(namespace, name) of a Secret holding the value."""


@dataclass(frozen=True, slots=True)
class HTTPRule:
    """One `rules.http[]` entry; fields AND-ed, absent fields match anything."""

    method: str | None = None
    path: str | None = None
    host: str | None = None
    headers: tuple[str, ...] = ()
    header_matches: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class KafkaRule:
    """One `rules.kafka[]` entry."""

    role: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    client_id: str | None = None
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class DNSRule:
    """One `rules.dns[]` entry (exactly one of the two)."""

    match_name: str | None = None
    match_pattern: str | None = None


@dataclass(frozen=True, slots=True)
class L7Rules:
    """`toPorts[].rules`: exactly one member is not None."""

    http: tuple[HTTPRule, ...] | None = None
    kafka: tuple[KafkaRule, ...] | None = None
    dns: tuple[DNSRule, ...] | None = None
    l7proto: str | None = None
    l7: tuple[tuple[tuple[str, str], ...], ...] | None = None

    @property
    def parser(self) -> str | None:
        """`http`, `kafka`, `dns`, the l7proto name, or None when no member has entries."""
        if self.http is not None:
            return "http"
        if self.kafka is not None:
            return "kafka"
        if self.dns is not None:
            return "dns"
        if self.l7proto is not None:
            return self.l7proto
        return None


# ---------------------------------------------------------------- Cilium L4 (§1.5, §1.6)


@dataclass(frozen=True, slots=True)
class PortProtocol:
    """One `toPorts[].ports[]` entry. `port` is a decimal string or a (lower-cased) name."""

    port: str = "0"
    end_port: int = 0
    protocol: str = "ANY"
    """TCP, UDP, SCTP, ANY, VRRP, IGMP (upper-cased)."""

    @property
    def is_named(self) -> bool:
        return not self.port.isdigit()


@dataclass(frozen=True, slots=True)
class PortRule:
    ports: tuple[PortProtocol, ...] = ()
    rules: L7Rules | None = None
    server_names: tuple[str, ...] = ()
    has_terminating_tls: bool = False
    has_originating_tls: bool = False
    listener: str | None = None


@dataclass(frozen=True, slots=True)
class ICMPField:
    family: Literal["IPv4", "IPv6"] = "IPv4"
    type: int = 0


# ---------------------------------------------------------------- Cilium peers (§1.3)


@dataclass(frozen=True, slots=True)
class CIDRRule:
    """A `fromCIDR`/`toCIDR` prefix or a `*CIDRSet` entry."""

    cidr: str | None = None
    except_: tuple[str, ...] = ()
    cidr_group_ref: str | None = None
    cidr_group_selector: Selector | None = None


@dataclass(frozen=True, slots=True)
class FQDNSelector:
    match_name: str | None = None
    match_pattern: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceSelector:
    """`toServices[]`: by name (`k8sService`) or by label selector (`k8sServiceSelector`)."""

    name: str | None = None
    namespace: str | None = None
    selector: Selector | None = None


@dataclass(frozen=True, slots=True)
class PeerRule:
    """One element of `ingress`, `ingressDeny`, `egress` or `egressDeny`.

    Peer fields are None when absent and `()` when written as an empty list. `cidr_kind` says
    whether `cidrs` came from `*CIDR` or `*CIDRSet` (only for explanations).
    """

    endpoints: tuple[Selector, ...] | None = None
    requires: tuple[Selector, ...] | None = None
    cidrs: tuple[CIDRRule, ...] | None = None
    cidr_kind: Literal["CIDR", "CIDRSet"] | None = None
    entities: tuple[str, ...] | None = None
    nodes: tuple[Selector, ...] | None = None
    groups: tuple[str, ...] | None = None
    services: tuple[ServiceSelector, ...] | None = None
    fqdns: tuple[FQDNSelector, ...] | None = None
    to_ports: tuple[PortRule, ...] | None = None
    icmps: tuple[ICMPField, ...] | None = None
    auth_mode: str | None = None

    @property
    def has_l3(self) -> bool:
        """True when any L3 peer field is present (even as an empty list)."""
        return any(
            f is not None
            for f in (self.endpoints, self.cidrs, self.entities, self.nodes, self.groups,
                      self.services, self.fqdns)
        )


@dataclass(frozen=True, slots=True)
class RuleOrigin:
    """Which manifest, and which `spec`/`specs[i]`, a rule came from."""

    kind: PolicyKind
    name: str
    namespace: str | None
    spec_index: int | None = None
    """None for `spec`, i for `specs[i]`."""
    source: SourceRef = field(default_factory=SourceRef)

    def describe(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        spec = "" if self.spec_index is None else f" specs[{self.spec_index}]"
        return f"{self.kind} {ns}{self.name}{spec}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One Cilium rule (a `spec` or one of `specs`), before injection."""

    origin: RuleOrigin
    endpoint_selector: Selector | None = None
    node_selector: Selector | None = None
    ingress: tuple[PeerRule, ...] = ()
    ingress_deny: tuple[PeerRule, ...] = ()
    egress: tuple[PeerRule, ...] = ()
    egress_deny: tuple[PeerRule, ...] = ()
    default_deny_ingress: bool | None = None
    """`enableDefaultDeny.ingress`; None = not written (defaults to true)."""
    default_deny_egress: bool | None = None
    labels: tuple[str, ...] = ()
    description: str = ""
    log: str | None = None


@dataclass(frozen=True, slots=True)
class CiliumPolicy:
    """A CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy with its rules."""

    kind: Literal["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"]
    name: str
    namespace: str | None
    rules: tuple[Rule, ...]
    source: SourceRef = field(default_factory=SourceRef)


# ---------------------------------------------------------------- Kubernetes NetworkPolicy


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicyPeer:
    """One `from[]`/`to[]` entry: podSelector and/or namespaceSelector, or ipBlock."""

    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None
    """None = all ports of the protocol; str = a named port."""
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyRule:
    """One ingress/egress rule. `peers` None or () both mean every peer (k8s semantics)."""

    peers: tuple[NetworkPolicyPeer, ...] = ()
    ports: tuple[NetworkPolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    name: str
    namespace: str
    pod_selector: Selector
    policy_types: tuple[Literal["Ingress", "Egress"], ...]
    """As written, or defaulted by the API rules (Ingress, plus Egress when egress is set)."""
    ingress: tuple[NetworkPolicyRule, ...] = ()
    egress: tuple[NetworkPolicyRule, ...] = ()
    source: SourceRef = field(default_factory=SourceRef)


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str | None = None
    app_protocol: str | None = None


WorkloadKind = Literal["pod", "host-network", "external", "kube-apiserver"]


@dataclass(frozen=True, slots=True)
class Workload:
    """A pod (or a compact workload entry), a host-network pod, or a host outside every cluster."""

    name: str
    namespace: str = "default"
    cluster: str = "default"
    node: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    service_account: str = "default"
    ports: tuple[ContainerPort, ...] = ()
    kind: WorkloadKind = "pod"
    ips: tuple[str, ...] = ()
    fqdn: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def label_set(self) -> LabelSet:
        return LabelSet.from_mapping(dict(self.labels))


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    target_port: int | str | None = None
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    namespace: str = "default"
    cluster: str = "default"
    selector: tuple[tuple[str, str], ...] | None = None
    ports: tuple[ServicePort, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    cluster_ip: str | None = None


@dataclass(frozen=True, slots=True)
class CIDRGroup:
    """A CiliumCIDRGroup: named prefixes that `cidrGroupRef`/`cidrGroupSelector` refer to."""

    name: str
    cidrs: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
