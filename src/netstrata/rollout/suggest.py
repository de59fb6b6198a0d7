"""`policy suggest`: observed flows -> the minimal CiliumNetworkPolicy allow-lists that admit them.

Which flows count as legitimate traffic: verdict FORWARDED, REDIRECTED (allowed at L3/L4 and
sent to the proxy) and AUDIT (audit mode forwarded a would-be drop). DROPPED flows are left out
by default: traffic that enforcement already refused is not evidence that it should be allowed
(a scan, a misconfigured client); `include_dropped` takes them in for an operator who seeded
traffic under enforcement on purpose. ERROR flows, replies and L7 responses are never used.

Each flow's *subject* is the local endpoint whose policy the flow's direction names (the
destination for INGRESS, the source for EGRESS); each subject workload gets one policy. The
endpointSelector uses the subject's stable labels: `k8s:` labels minus the ones Kubernetes
stamps per pod or per revision (`pod-template-hash`, `controller-revision-hash`, ...) and minus
Cilium's derived `io.kubernetes.*`/`io.cilium.k8s.*` labels. Peers:

* pods: `fromEndpoints`/`toEndpoints` with their stable labels, plus
  `io.kubernetes.pod.namespace` when the peer lives in another namespace and
  `io.cilium.k8s.policy.cluster` when it lives in another cluster;
* reserved identities: `fromEntities`/`toEntities` (host, remote-node, kube-apiserver, ...);
* world and CIDR identities: `toFQDNs` (matchName) when the flow carries the name the client
  resolved, else a /32 (/128) `fromCIDR`/`toCIDR` of the observed address.

Ports are `port`/`protocol` pairs; when L7 records were seen for a port the rule carries
exactly the observed HTTP method + path (anchored, regex characters escaped, query included, as
Cilium matches the whole `:path`), Kafka apiKey + topic or DNS names. Output is deterministic:
policies, rules, peers and ports are sorted. Nothing here reads files; `suggest_policies` takes
flows and returns plain manifest dicts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from netstrata.observe.flow import (
    DNS,
    HTTP,
    SCTP,
    TCP,
    UDP,
    Endpoint,
    Flow,
    FlowType,
    Kafka,
    L7FlowType,
    TrafficDirection,
    Verdict,
)

LEGITIMATE: Final = frozenset({Verdict.FORWARDED, Verdict.REDIRECTED, Verdict.AUDIT})

UNSTABLE_LABEL_KEYS: Final = frozenset(
    {
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "batch.kubernetes.io/controller-uid",
        "controller-uid",
        "batch.kubernetes.io/job-completion-index",
    }
)
"""Labels Kubernetes sets per pod, per rollout or per job run: a selector on them would stop
matching after the next deployment."""

_DERIVED_PREFIXES: Final = ("io.kubernetes.", "io.cilium.k8s.", "io.cilium.")
_NS_KEY: Final = "io.kubernetes.pod.namespace"
_SA_KEY: Final = "io.cilium.k8s.policy.serviceaccount"
_CLUSTER_KEY: Final = "io.cilium.k8s.policy.cluster"
_ENTITIES: Final = {
    "host": "host",
    "remote-node": "remote-node",
    "kube-apiserver": "kube-apiserver",
    "health": "health",
    "ingress": "ingress",
    "init": "init",
}
_PROTO_NAMES: Final = {TCP: "TCP", UDP: "UDP", SCTP: "SCTP"}
_REGEX_SPECIALS: Final = frozenset(".^$*+?()[]{}|\\")


@dataclass(frozen=True, order=True, slots=True)
class Subject:
    """The workload a suggested policy selects."""

    cluster: str
    namespace: str
    selector: tuple[tuple[str, str], ...]
    name: str


Peer = tuple[str, Any]
"""(`endpoints`, matchLabels items) | (`entities`, name) | (`cidr`, prefix) | (`fqdn`, name)."""


@dataclass
class _PortRules:
    http: set[tuple[str, str]] = field(default_factory=set)
    kafka: set[tuple[str, str]] = field(default_factory=set)
    dns: set[str] = field(default_factory=set)


@dataclass
class SuggestStats:
    """What `suggest_policies` used and why it left flows out."""

    used: int = 0
    dropped_skipped: int = 0
    other_skipped: int = 0
    """Errors, replies, L7 responses, flows without a local subject or a usable L4."""


@dataclass
class _Collector:
    include_dropped: bool
    # subject -> direction -> peer -> (port, proto) -> L7 rules seen on that port
    rules: dict[Subject, dict[str, dict[Peer, dict[tuple[int, str], _PortRules]]]] = field(
        default_factory=dict
    )
    stats: SuggestStats = field(default_factory=SuggestStats)

    def add(self, flow: Flow) -> None:
        if not self._usable(flow):
            return
        ingress = flow.traffic_direction == TrafficDirection.INGRESS
        subject_ep, peer_ep = (
            (flow.destination, flow.source) if ingress else (flow.source, flow.destination)
        )
        subject = subject_of(subject_ep)
        port = _port_of(flow)
        if subject is None or port is None:
            self.stats.other_skipped += 1
            return
        peer_ip = (flow.ip.source if ingress else flow.ip.destination) if flow.ip else ""
        names = flow.source_names if ingress else flow.destination_names
        peer = peer_of(peer_ep, peer_ip, names, subject, ingress)
        if peer is None:
            self.stats.other_skipped += 1
            return
        direction = "ingress" if ingress else "egress"
        ports = self.rules.setdefault(subject, {}).setdefault(direction, {}).setdefault(peer, {})
        rules = ports.setdefault(port, _PortRules())
        _add_l7(rules, flow)
        self.stats.used += 1

    def _usable(self, flow: Flow) -> bool:
        if flow.verdict == Verdict.DROPPED and not self.include_dropped:
            self.stats.dropped_skipped += 1
            return False
        ok = flow.verdict in LEGITIMATE or flow.verdict == Verdict.DROPPED
        if flow.type == FlowType.L7:
            ok = ok and flow.l7 is not None and flow.l7.type == L7FlowType.REQUEST
        else:
            ok = ok and flow.is_reply is not True
        ok = ok and flow.traffic_direction in (TrafficDirection.INGRESS, TrafficDirection.EGRESS)
        if not ok:
            self.stats.other_skipped += 1
        return ok


def _add_l7(rules: _PortRules, flow: Flow) -> None:
    record = flow.l7.record if flow.l7 is not None else None
    if isinstance(record, HTTP) and record.method:
        parts = urlsplit(record.url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        rules.http.add((record.method, path))
    elif isinstance(record, Kafka) and record.api_key:
        rules.kafka.add((record.api_key, record.topic))
    elif isinstance(record, DNS) and record.query:
        rules.dns.add(record.query.rstrip("."))


def _port_of(flow: Flow) -> tuple[int, str] | None:
    l4 = flow.l4
    if isinstance(l4, TCP | UDP | SCTP) and l4.destination_port:
        return l4.destination_port, _PROTO_NAMES[type(l4)]
    return None


def _parse_labels(labels: Iterable[str]) -> list[tuple[str, str, str]]:
    out = []
    for text in labels:
        source, _, rest = text.partition(":")
        key, _, value = rest.partition("=")
        out.append((source, key, value))
    return out


def stable_labels(labels: Iterable[str]) -> dict[str, str]:
    """The `k8s:` labels of an endpoint that identify its workload across rollouts."""
    out: dict[str, str] = {}
    for source, key, value in _parse_labels(labels):
        if source != "k8s" or key in UNSTABLE_LABEL_KEYS or key.startswith(_DERIVED_PREFIXES):
            continue
        out[key] = value
    return out


def _label(labels: Iterable[str], key: str) -> str:
    return next((v for s, k, v in _parse_labels(labels) if s == "k8s" and k == key), "")


def subject_of(ep: Endpoint | None) -> Subject | None:
    """The local pod a flow's direction names, or None (world, host, unknown)."""
    if ep is None or not ep.namespace or any(x.startswith("reserved:") for x in ep.labels):
        return None
    selector = stable_labels(ep.labels)
    if not selector:
        sa = _label(ep.labels, _SA_KEY)
        if not sa:
            return None
        selector = {_SA_KEY: sa}
    name = (
        (ep.workloads[0].name if ep.workloads else "")
        or selector.get("app")
        or selector.get("app.kubernetes.io/name")
        or ep.pod_name
        or "-".join(sorted(selector.values()))
    )
    cluster = ep.cluster_name or _label(ep.labels, _CLUSTER_KEY)
    return Subject(cluster, ep.namespace, tuple(sorted(selector.items())), _dns_name(name))


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name or "workload"


def peer_of(
    ep: Endpoint | None, ip: str, names: Iterable[str], subject: Subject, ingress: bool
) -> Peer | None:
    """How a suggested rule names the other side of a flow (see the module docstring)."""
    labels = ep.labels if ep is not None else ()
    parsed = _parse_labels(labels)
    reserved = {k for s, k, _ in parsed if s == "reserved"}
    entity = next((_ENTITIES[r] for r in sorted(reserved) if r in _ENTITIES), None)
    if entity is not None:
        return ("entities", entity)
    is_pod = (
        ep is not None
        and ep.namespace
        and not reserved
        and not any(s in ("cidr", "fqdn") for s, _, _ in parsed)
    )
    if is_pod:
        assert ep is not None
        selector = stable_labels(labels) or {_SA_KEY: _label(labels, _SA_KEY)}
        if ep.namespace != subject.namespace:
            selector[_NS_KEY] = ep.namespace
        cluster = ep.cluster_name or _label(labels, _CLUSTER_KEY)
        if cluster and subject.cluster and cluster != subject.cluster:
            selector[_CLUSTER_KEY] = cluster
        return ("endpoints", tuple(sorted(selector.items())))
    fqdns = sorted(n.rstrip(".") for n in names if n)
    if fqdns and not ingress:
        return ("fqdn", fqdns[0])
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return ("cidr", f"{addr}/{addr.max_prefixlen}")


def _escape_path(path: str) -> str:
    """An anchored regex matching exactly `path` (Cilium full-matches the path regex)."""
    return "^" + "".join("\\" + c if c in _REGEX_SPECIALS else c for c in path) + "$"


def _to_ports(ports: Mapping[tuple[int, str], _PortRules]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (port, proto), seen in sorted(ports.items()):
        entry: dict[str, Any] = {"ports": [{"port": str(port), "protocol": proto}]}
        if seen.http:
            entry["rules"] = {
                "http": [{"method": m, "path": _escape_path(p)} for m, p in sorted(seen.http)]
            }
        elif seen.kafka:
            entry["rules"] = {
                "kafka": [
                    {"apiKey": k, **({"topic": t} if t else {})} for k, t in sorted(seen.kafka)
                ]
            }
        elif seen.dns:
            entry["rules"] = {"dns": [{"matchName": n} for n in sorted(seen.dns)]}
        out.append(entry)
    return out


_PEER_FIELDS: Final = {
    ("ingress", "endpoints"): "fromEndpoints",
    ("egress", "endpoints"): "toEndpoints",
    ("ingress", "entities"): "fromEntities",
    ("egress", "entities"): "toEntities",
    ("ingress", "cidr"): "fromCIDR",
    ("egress", "cidr"): "toCIDR",
    ("egress", "fqdn"): "toFQDNs",
}


def _peer_value(kind: str, value: Any) -> Any:
    if kind == "endpoints":
        return {"matchLabels": dict(value)}
    if kind == "fqdn":
        return {"matchName": value}
    return value


def _rule(
    direction: str, peers: Mapping[Peer, dict[tuple[int, str], _PortRules]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (kind, value), ports in sorted(peers.items(), key=lambda kv: (kv[0][0], repr(kv[0][1]))):
        out.append(
            {
                _PEER_FIELDS[(direction, kind)]: [_peer_value(kind, value)],
                "toPorts": _to_ports(ports),
            }
        )
    return out


def _policy(subject: Subject, name: str, directions: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "description": f"suggested by netstrata from observed flows: what {subject.name} was "
        f"seen to send and receive",
        "endpointSelector": {"matchLabels": dict(subject.selector)},
    }
    for direction in ("ingress", "egress"):
        if direction in directions:
            spec[direction] = _rule(direction, directions[direction])
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": name, "namespace": subject.namespace},
        "spec": spec,
    }


def suggest_policies(
    flows: Iterable[Flow], *, include_dropped: bool = False
) -> tuple[list[dict[str, Any]], SuggestStats]:
    """One CiliumNetworkPolicy per observed workload (sorted by namespace and name).

    Subjects in several clusters get the cluster label in their selector, so one policy set
    applied everywhere still selects each workload where it was seen.
    """
    col = _Collector(include_dropped)
    for flow in flows:
        col.add(flow)
    clusters = {s.cluster for s in col.rules}
    taken: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for subject, directions in sorted(col.rules.items()):
        selected = subject
        if len(clusters) > 1 and subject.cluster:
            labels = {**dict(subject.selector), _CLUSTER_KEY: subject.cluster}
            selected = Subject(
                subject.cluster, subject.namespace, tuple(sorted(labels.items())), subject.name
            )
        name = base = f"{subject.name}-allow"
        n = 2
        while (subject.namespace, name) in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add((subject.namespace, name))
        out.append(_policy(selected, name, directions))
    out.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
    return out, col.stats


__all__ = [
    "LEGITIMATE",
    "UNSTABLE_LABEL_KEYS",
    "Subject",
    "SuggestStats",
    "peer_of",
    "stable_labels",
    "subject_of",
    "suggest_policies",
]
