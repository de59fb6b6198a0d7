"""Checked schema models -> `api.types` frozen dataclasses.

Conversion keeps what the user wrote and only normalises spelling: absent lists become None and
written-empty lists `()`, ports stay strings (named ports already lower-cased by the schema),
protocols are upper-cased, empty optional strings (`method: ""`, Cilium's "unset") become None.
Nothing is interpreted: no namespace or cluster is injected into selectors (policy/ does that).
Kubernetes' own defaults are applied where the API server would apply them (NetworkPolicy
`policyTypes`, port protocol TCP, namespace `default` for namespaced objects without one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from netstrata.api import _cilium_schema as cs
from netstrata.api import _k8s_schema as ks
from netstrata.api import types as t
from netstrata.api._schema_base import CLUSTER_ANNOTATION, CiliumSelector, ObjectMeta, pairs
from netstrata.labels import Selector

_T = TypeVar("_T")
_U = TypeVar("_U")

DEFAULT_NAMESPACE = "default"
DEFAULT_CLUSTER = "default"


def _opt(text: str | None) -> str | None:
    return text if text else None


def _sels(selectors: Sequence[CiliumSelector] | None) -> tuple[Selector, ...] | None:
    return None if selectors is None else tuple(s.to_selector() for s in selectors)


def _cluster(meta: ObjectMeta | None) -> str | None:
    return ((meta.annotations or {}).get(CLUSTER_ANNOTATION) if meta else None) or None


# ---------------------------------------------------------------- Cilium L7 / L4


def _http(rule: cs.HTTPRule) -> t.HTTPRule:
    return t.HTTPRule(
        method=_opt(rule.method),
        path=_opt(rule.path),
        host=_opt(rule.host),
        headers=tuple(rule.headers or ()),
        header_matches=tuple(
            t.HeaderMatch(
                name=h.name,
                value=h.value,
                mismatch=h.mismatch,
                secret=(h.secret.namespace or "", h.secret.name) if h.secret else None,
            )
            for h in rule.header_matches or ()
        ),
    )


def _kafka(rule: cs.KafkaRule) -> t.KafkaRule:
    return t.KafkaRule(
        role=_opt(rule.role.lower() if rule.role else None),
        api_key=_opt(rule.api_key.lower() if rule.api_key else None),
        api_version=_opt(rule.api_version),
        client_id=_opt(rule.client_id),
        topic=_opt(rule.topic),
    )


def _map(items: Sequence[_T] | None, fn: Callable[[_T], _U]) -> tuple[_U, ...] | None:
    """Absent stays None, written (even empty) becomes a tuple."""
    if items is None:
        return None
    return tuple(fn(x) for x in items)


def _l7(rules: cs.L7RulesSpec | None) -> t.L7Rules | None:
    if rules is None or rules.is_empty:
        return None
    return t.L7Rules(
        http=_map(rules.http, _http),
        kafka=_map(rules.kafka, _kafka),
        dns=_map(rules.dns, lambda d: t.DNSRule(_opt(d.match_name), _opt(d.match_pattern))),
        l7proto=_opt(rules.l7proto),
        l7=None if rules.l7 is None else tuple(tuple(sorted(m.items())) for m in rules.l7),
    )


def _port_rule(pr: cs.PortRuleSpec) -> t.PortRule:
    return t.PortRule(
        ports=tuple(
            t.PortProtocol(port=pp.port or "0", end_port=pp.end_port, protocol=pp.protocol)
            for pp in pr.ports or ()
        ),
        rules=_l7(pr.rules),
        server_names=tuple(pr.server_names or ()),
        has_terminating_tls=pr.terminating_tls is not None,
        has_originating_tls=pr.originating_tls is not None,
        listener=(f"{pr.listener.envoy_config.name}/{pr.listener.name}"
                  if pr.listener is not None else None),
    )


def _icmps(rules: Sequence[cs.ICMPRuleSpec] | None) -> tuple[t.ICMPField, ...] | None:
    if rules is None:
        return None
    return tuple(t.ICMPField(f.family, f.type) for r in rules for f in r.fields or ())


# ---------------------------------------------------------------- Cilium peers


def _cidr_rule(c: cs.CIDRRuleSpec) -> t.CIDRRule:
    return t.CIDRRule(
        cidr=c.cidr,
        except_=tuple(c.except_ or ()),
        cidr_group_ref=c.cidr_group_ref,
        cidr_group_selector=c.cidr_group_selector.to_selector() if c.cidr_group_selector else None,
    )


def _cidrs(
    plain: Sequence[str] | None, sets: Sequence[cs.CIDRRuleSpec] | None
) -> tuple[tuple[t.CIDRRule, ...] | None, Literal["CIDR", "CIDRSet"] | None]:
    """`*CIDR` and `*CIDRSet` share one field; at most one of them is non-empty (checked)."""
    if plain is None and sets is None:
        return None, None
    out = [t.CIDRRule(cidr=c) for c in plain or ()] + [_cidr_rule(c) for c in sets or ()]
    kind: Literal["CIDR", "CIDRSet"] = "CIDRSet" if sets and not plain else "CIDR"
    if plain is None:
        kind = "CIDRSet"
    return tuple(out), kind


def _group(g: cs.GroupsSpec) -> str:
    """An AWS group reference as one stable string (the operator resolves groups to CIDRs)."""
    aws = g.aws
    parts = []
    if aws.region:
        parts.append(f"region={aws.region}")
    if aws.security_groups_ids:
        parts.append("securityGroupsIds=" + ",".join(aws.security_groups_ids))
    if aws.security_groups_names:
        parts.append("securityGroupsNames=" + ",".join(aws.security_groups_names))
    if aws.labels:
        parts.append("labels=" + ",".join(f"{k}={v}" for k, v in sorted(aws.labels.items())))
    return "aws:" + ";".join(parts)


def _service(s: cs.ServiceSpec) -> t.ServiceSelector:
    if s.k8s_service is not None:
        return t.ServiceSelector(name=s.k8s_service.service_name,
                                 namespace=_opt(s.k8s_service.namespace))
    sel = s.k8s_service_selector
    assert sel is not None  # exactly one of the two (checked)
    return t.ServiceSelector(namespace=_opt(sel.namespace), selector=sel.selector.to_selector())


def _peer_rule(el: cs.IngressElement | cs.EgressElement) -> t.PeerRule:
    if isinstance(el, cs.IngressElement):
        cidrs, kind = _cidrs(el.from_cidr, el.from_cidr_set)
        entities, nodes, groups = el.from_entities, el.from_nodes, el.from_groups
        services = fqdns = None
    else:
        cidrs, kind = _cidrs(el.to_cidr, el.to_cidr_set)
        entities, nodes, groups = el.to_entities, el.to_nodes, el.to_groups
        services = _map(el.to_services, _service)
        fqdns = _map(el.to_fqdns,
                     lambda f: t.FQDNSelector(_opt(f.match_name), _opt(f.match_pattern)))
    return t.PeerRule(
        endpoints=_sels(el.endpoints),
        requires=_sels(el.requires),
        cidrs=cidrs,
        cidr_kind=kind,
        entities=None if entities is None else tuple(entities),
        nodes=_sels(nodes),
        groups=_map(groups, _group),
        services=services,
        fqdns=fqdns,
        to_ports=_map(el.to_ports, _port_rule),
        icmps=_icmps(el.icmps),
        auth_mode=el.authentication.mode if el.authentication else None,
    )


def cilium_rule(spec: cs.RuleSpec, origin: t.RuleOrigin) -> t.Rule:
    dd = spec.enable_default_deny
    return t.Rule(
        origin=origin,
        endpoint_selector=spec.endpoint_selector.to_selector() if spec.endpoint_selector else None,
        node_selector=spec.node_selector.to_selector() if spec.node_selector else None,
        ingress=tuple(_peer_rule(e) for e in spec.ingress or ()),
        ingress_deny=tuple(_peer_rule(e) for e in spec.ingress_deny or ()),
        egress=tuple(_peer_rule(e) for e in spec.egress or ()),
        egress_deny=tuple(_peer_rule(e) for e in spec.egress_deny or ()),
        default_deny_ingress=dd.ingress if dd else None,
        default_deny_egress=dd.egress if dd else None,
        labels=tuple(spec.labels or ()),
        description=spec.description or "",
        log=spec.log.value if spec.log else None,
    )


# ---------------------------------------------------------------- Kubernetes


def _np_peer(p: ks.NetworkPolicyPeer) -> t.NetworkPolicyPeer:
    return t.NetworkPolicyPeer(
        pod_selector=p.pod_selector.to_selector() if p.pod_selector else None,
        namespace_selector=p.namespace_selector.to_selector() if p.namespace_selector else None,
        ip_block=(t.IPBlock(p.ip_block.cidr, tuple(p.ip_block.except_ or ()))
                  if p.ip_block else None),
    )


def _np_ports(ports: Sequence[ks.NetworkPolicyPort] | None) -> tuple[t.NetworkPolicyPort, ...]:
    return tuple(t.NetworkPolicyPort(p.protocol, p.port, p.end_port) for p in ports or ())


def network_policy(doc: ks.NetworkPolicyDoc, source: t.SourceRef) -> t.NetworkPolicy:
    spec = doc.spec
    written = tuple(dict.fromkeys(spec.policy_types or ()))
    # API defaulting (SetDefaults_NetworkPolicy): Ingress always, Egress when egress has rules.
    types = written or (("Ingress", "Egress") if spec.egress else ("Ingress",))
    return t.NetworkPolicy(
        name=doc.metadata.name,
        namespace=doc.metadata.namespace or DEFAULT_NAMESPACE,
        pod_selector=spec.pod_selector.to_selector(),
        policy_types=types,
        ingress=tuple(t.NetworkPolicyRule(tuple(_np_peer(p) for p in r.from_ or ()),
                                          _np_ports(r.ports)) for r in spec.ingress or ()),
        egress=tuple(t.NetworkPolicyRule(tuple(_np_peer(p) for p in r.to or ()),
                                         _np_ports(r.ports)) for r in spec.egress or ()),
        source=source,
    )


def namespace(doc: ks.NamespaceDoc) -> t.Namespace:
    meta = doc.metadata
    return t.Namespace(name=meta.name, labels=pairs(meta.labels), cluster=_cluster(meta))


def pod(doc: ks.PodDoc) -> t.Workload:
    meta, spec = doc.metadata, doc.spec
    ports = tuple(
        t.ContainerPort(port=p.container_port, protocol=p.protocol, name=p.name)
        for c in spec.containers for p in c.ports or ()
    )
    ips: tuple[str, ...] = ()
    if doc.status is not None:
        ips = tuple(p.ip for p in doc.status.pod_ips or ())
        if not ips and doc.status.pod_ip:
            ips = (doc.status.pod_ip,)
    return t.Workload(
        name=meta.name,
        namespace=meta.namespace or DEFAULT_NAMESPACE,
        cluster=_cluster(meta) or DEFAULT_CLUSTER,
        node=spec.node_name,
        labels=pairs(meta.labels),
        service_account=spec.service_account_name or spec.service_account or "default",
        ports=ports,
        kind="host-network" if spec.host_network else "pod",
        ips=ips,
        annotations=pairs(meta.annotations),
    )


def workload(doc: ks.WorkloadDoc) -> t.Workload:
    meta, spec = doc.metadata, doc.spec
    name = spec.name or (meta.name if meta else None)
    assert name is not None  # checked by check_workload
    return t.Workload(
        name=name,
        namespace=spec.namespace or (meta.namespace if meta else None) or DEFAULT_NAMESPACE,
        cluster=spec.cluster or _cluster(meta) or DEFAULT_CLUSTER,
        node=spec.node,
        labels=pairs(spec.labels if spec.labels is not None else (meta.labels if meta else None)),
        service_account=spec.service_account or "default",
        ports=tuple(t.ContainerPort(p.port, p.protocol, p.name, p.app_protocol)
                    for p in spec.ports or ()),
        kind=spec.kind,
        ips=tuple(spec.ips or ()),
        fqdn=spec.fqdn,
        annotations=pairs(spec.annotations if spec.annotations is not None
                          else (meta.annotations if meta else None)),
    )


def service(doc: ks.ServiceDoc) -> t.Service:
    meta, spec = doc.metadata, doc.spec
    return t.Service(
        name=meta.name,
        namespace=meta.namespace or DEFAULT_NAMESPACE,
        cluster=_cluster(meta) or DEFAULT_CLUSTER,
        selector=None if spec.selector is None else pairs(spec.selector),
        ports=tuple(t.ServicePort(p.port, p.target_port, p.protocol, p.name)
                    for p in spec.ports or ()),
        labels=pairs(meta.labels),
        annotations=pairs(meta.annotations),
        cluster_ip=spec.cluster_ip,
    )


def cidr_group(doc: cs.CIDRGroupDoc) -> t.CIDRGroup:
    return t.CIDRGroup(name=doc.metadata.name, cidrs=tuple(doc.spec.external_cidrs),
                       labels=pairs(doc.metadata.labels))
