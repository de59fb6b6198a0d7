"""Compile a `FlowFilter` into a predicate over `Flow`, with Hubble's server-side semantics.

Each matcher follows its counterpart in Cilium's `pkg/hubble/filters` (named in the docstrings):
what counts as "absent" (a missing endpoint never matches a pod, identity or cluster filter),
prefix vs. exact vs. regex matching, and the build-time errors (bad IP, bad port, bad regex,
HTTP filters combined with a non-L7 event-type filter). Build errors are `ValueError`s; the
caller that knows which flag produced the value re-raises with it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from netstrata.labels import SOURCE_ANY, SOURCE_UNSPEC, Label, LabelSet, Requirement, Selector
from netstrata.labels import split_source as _split_source
from netstrata.observe._filter_types import EventTypeFilter, FlowFilter
from netstrata.observe.flow import (
    DNS,
    HTTP,
    SCTP,
    TCP,
    UDP,
    Endpoint,
    EventKind,
    Flow,
    ICMPv4,
    ICMPv6,
    IPVersion,
    Verdict,
)

Predicate = Callable[[Flow], bool]

DEFAULT_NAMESPACE = "default"
DEFAULT_CLUSTER = "default"
"""Cilium's default cluster name: a node name without `cluster/` is read as `default/<node>`."""


# --- names and patterns ------------------------------------------------------------------------


def parse_namespaced_name(text: str) -> tuple[str, str]:
    """`ns/name` -> (ns, name); `name` -> ("default", name); `""` -> ("", "") (hubble k8s utils)."""
    parts = text.split("/")
    if len(parts) > 1:
        return parts[0], parts[1]
    if parts[0] == "":
        return "", ""
    return DEFAULT_NAMESPACE, parts[0]


def _by_namespaced_name(names: Sequence[str], get: Callable[[Flow], tuple[str, str]]) -> Predicate:
    """PodFilter/ServiceFilter: pod-name *prefix*, namespace exact (empty = any)."""
    wanted = []
    for name in names:
        if name == "":
            raise ValueError("invalid filter, name must not be empty")
        wanted.append(parse_namespaced_name(name))

    def match(flow: Flow) -> bool:
        ns, name = get(flow)
        if not ns and not name:
            return False
        return any((not p or name.startswith(p)) and (not n or n == ns) for n, p in wanted)

    return match


_FQDN_CHARS = re.compile(r"[-0-9_a-z.*]*")


def _fqdn_pattern_regex(pattern: str) -> str:
    """One `--fqdn` pattern as a regex (hubble patterns.go): `*` = `[-.0-9a-z]*`."""
    pattern = pattern.strip().removesuffix(".").lower()
    if pattern == "":
        raise ValueError("empty pattern")
    if pattern.endswith("."):
        raise ValueError("multiple trailing dots in pattern")
    if not _FQDN_CHARS.fullmatch(pattern):
        bad = next(c for c in pattern if not _FQDN_CHARS.fullmatch(c))
        raise ValueError(f"{bad!r}: invalid rune in pattern")
    return "".join(r"\." if c == "." else "[-.0-9a-z]*" if c == "*" else c for c in pattern)


def compile_fqdn_patterns(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("(?:" + "|".join(_fqdn_pattern_regex(p) for p in patterns) + ")")


_ANY_NAME = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)"


def compile_node_name_patterns(patterns: Sequence[str]) -> re.Pattern[str]:
    """`--node-name` patterns: `node`, `cluster/node`, either side may be empty or wildcarded."""
    alts = []
    for pattern in patterns:
        if pattern == "":
            raise ValueError("empty pattern")
        parts = pattern.split("/")
        if len(parts) > 2:
            raise ValueError("too many slashes in pattern")
        cluster, node = ("", parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        alts.append((_fqdn_pattern_regex(cluster) if cluster else _ANY_NAME) + "/"
                    + (_fqdn_pattern_regex(node) if node else _ANY_NAME))
    return re.compile("(?:" + "|".join(alts) + ")")


# --- label selectors ---------------------------------------------------------------------------

_SET_TERM = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def _split_terms(text: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if c == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


def _requirement(key: str, op: str, values: tuple[str, ...] = ()) -> Requirement:
    key = key.strip()
    if not key:
        raise ValueError("empty label key in selector")
    source, name = _split_source(key, SOURCE_ANY)
    return Requirement(source, name, op, values)


def parse_label_selector(text: str) -> Selector:
    """Kubernetes selector syntax over `source:key` labels (hubble labels.go + labelparser.go).

    `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; a key without a source
    matches any source (Cilium rewrites it to `any:`).
    """
    reqs = []
    for term in _split_terms(text):
        if m := _SET_TERM.match(term):
            values = tuple(sorted({v.strip() for v in m.group(3).split(",") if v.strip()}))
            reqs.append(_requirement(m.group(1), "In" if m.group(2) == "in" else "NotIn", values))
        elif term.startswith("!"):
            reqs.append(_requirement(term[1:], "DoesNotExist"))
        elif "!=" in term:
            key, _, value = term.partition("!=")
            reqs.append(_requirement(key, "NotIn", (value.strip(),)))
        elif "=" in term:
            key, _, value = term.partition("=")
            reqs.append(_requirement(key, "In", (value.removeprefix("=").strip(),)))
        else:
            reqs.append(_requirement(term, "Exists"))
    return Selector.make(reqs)


def _labels(strings: Sequence[str]) -> LabelSet:
    return LabelSet(Label.parse(s, SOURCE_UNSPEC) for s in strings)


def _by_labels(selectors: Sequence[str], get: Callable[[Flow], Sequence[str]]) -> Predicate:
    compiled = [parse_label_selector(s) for s in selectors]
    return lambda flow: any(sel.matches(_labels(get(flow))) for sel in compiled)


# --- per-field matchers ------------------------------------------------------------------------


def _by_ips(values: Sequence[str], get: Callable[[Flow], str]) -> Predicate:
    exact: set[str] = set()
    nets = []
    for v in values:
        if "/" in v:
            try:
                nets.append(ipaddress.ip_network(v, strict=False))
            except ValueError as exc:
                raise ValueError(f"invalid IP prefix {v!r} in filter") from exc
        else:
            try:
                ipaddress.ip_address(v)
            except ValueError as exc:
                raise ValueError(f"invalid IP address {v!r} in filter") from exc
            exact.add(v)

    def match(flow: Flow) -> bool:
        ip = get(flow)
        if not ip:
            return False
        if ip in exact:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in nets)

    return match


def _ports(flow: Flow) -> tuple[int, int] | None:
    l4 = flow.l4
    if isinstance(l4, TCP | UDP | SCTP):
        return l4.source_port, l4.destination_port
    return None


def _parse_port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"invalid port {text!r}")
    return int(text)


def _by_port(values: Sequence[str], index: int) -> Predicate:
    wanted = {_parse_port(v) for v in values}

    def match(flow: Flow) -> bool:
        ports = _ports(flow)
        return ports is not None and ports[index] in wanted

    return match


_L4_PROTOCOLS: dict[str, tuple[type, ...]] = {
    "icmp": (ICMPv4, ICMPv6), "icmpv4": (ICMPv4,), "icmpv6": (ICMPv6,),
    "tcp": (TCP,), "udp": (UDP,), "sctp": (SCTP,), "vrrp": (), "igmp": (),
}
_L7_PROTOCOLS: dict[str, type] = {"dns": DNS, "http": HTTP, "kafka": object}


def _by_protocol(values: Sequence[str]) -> Predicate:
    l4: list[type] = []
    l7: list[str] = []
    for v in values:
        p = v.lower()
        if p in _L4_PROTOCOLS:
            l4.extend(_L4_PROTOCOLS[p])
        elif p in _L7_PROTOCOLS:
            l7.append(p)
        else:
            raise ValueError(f"unknown protocol: {v!r}")
    l4_types = tuple(l4)

    def match(flow: Flow) -> bool:
        if l4_types and isinstance(flow.l4, l4_types):
            return True
        rec = flow.l7.record if flow.l7 else None
        return rec is not None and type(rec).__name__.lower() in l7

    return match


def _by_event_type(types: Sequence[EventTypeFilter]) -> Predicate:
    def match(flow: Flow) -> bool:
        ev = flow.event_type
        if ev is None:
            return False
        return any((not t.type or t.type == ev.type)
                   and (not t.match_sub_type or t.sub_type == ev.sub_type) for t in types)

    return match


_STATUS_FULL = re.compile(r"^[1-5][0-9]{2}$")
_STATUS_PREFIX = re.compile(r"^[1-5][0-9]?\+$")


def _http(flow: Flow) -> HTTP | None:
    rec = flow.l7.record if flow.l7 else None
    return rec if isinstance(rec, HTTP) else None


def _by_http_status(values: Sequence[str]) -> Predicate:
    full, prefixes = set(), []
    for v in values:
        if _STATUS_FULL.match(v):
            full.add(v)
        elif _STATUS_PREFIX.match(v):
            prefixes.append(v[:-1])
        else:
            raise ValueError(f"invalid status code prefix: {v!r}")

    def match(flow: Flow) -> bool:
        http = _http(flow)
        if http is None or http.code == 0:
            return False
        code = f"{http.code:03d}"
        return code in full or any(code.startswith(p) for p in prefixes)

    return match


def _regexes(values: Sequence[str]) -> list[re.Pattern[str]]:
    out = []
    for v in values:
        try:
            out.append(re.compile(v))
        except re.error as exc:
            raise ValueError(f"{v}: {exc}") from exc
    return out


def _by_http_path(values: Sequence[str]) -> Predicate:
    pats = _regexes(values)

    def match(flow: Flow) -> bool:
        http = _http(flow)
        if http is None or not http.url:
            return False
        path = urlsplit(http.url).path
        return any(p.search(path) for p in pats)

    return match


def _by_http_url(values: Sequence[str]) -> Predicate:
    pats = _regexes(values)

    def match(flow: Flow) -> bool:
        http = _http(flow)
        return http is not None and bool(http.url) and any(p.search(http.url) for p in pats)

    return match


def _by_tcp_flags(wanted: Sequence[object]) -> Predicate:
    names = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")

    def match(flow: Flow) -> bool:
        flags = flow.l4.flags if isinstance(flow.l4, TCP) else None
        if flags is None:
            return False
        return any(all(getattr(flags, n) for n in names if getattr(w, n)) for w in wanted)

    return match


def _by_reply(values: Sequence[bool]) -> Predicate:
    def match(flow: Flow) -> bool:
        # Hubble treats an unknown is_reply on a DROPPED flow as "not a reply".
        if flow.is_reply is None and flow.verdict != Verdict.DROPPED:
            return False
        return bool(flow.is_reply) in values

    return match


def _endpoint_ns_pod(get: Callable[[Flow], Endpoint | None]) -> Callable[[Flow], tuple[str, str]]:
    def inner(flow: Flow) -> tuple[str, str]:
        ep = get(flow)
        return (ep.namespace, ep.pod_name) if ep else ("", "")
    return inner


def _by_workload(wanted: Sequence[object], get: Callable[[Flow], Endpoint | None]) -> Predicate:
    def match(flow: Flow) -> bool:
        ep = get(flow)
        workloads = ep.workloads if ep else ()
        return any((not w.name or w.name == have.name) and (not w.kind or w.kind == have.kind)  # type: ignore[attr-defined]
                   for have in workloads for w in wanted)
    return match


def _src(flow: Flow) -> Endpoint | None:
    return flow.source


def _dst(flow: Flow) -> Endpoint | None:
    return flow.destination


def _svc(which: str) -> Callable[[Flow], tuple[str, str]]:
    def inner(flow: Flow) -> tuple[str, str]:
        svc = getattr(flow, which)
        return (svc.namespace, svc.name) if svc else ("", "")
    return inner


def _check_http_compatible(ff: FlowFilter) -> None:
    uses_http = (ff.http_status_code or ff.http_method or ff.http_path or ff.http_url
                 or ff.http_header)
    if uses_http and ff.event_type and not any(
            t.type == EventKind.ACCESS_LOG for t in ff.event_type):
        raise ValueError("filtering by http fields requires the event type filter to only "
                         "match 'l7' events")


def _field_predicates(ff: FlowFilter) -> list[Predicate]:
    """One predicate per non-empty field, in Hubble's `DefaultFilters` order."""
    p: list[Predicate] = []
    if ff.uuid:
        uuids = set(ff.uuid)
        p.append(lambda f: f.uuid in uuids)
    if ff.event_type:
        p.append(_by_event_type(ff.event_type))
    if ff.verdict:
        verdicts = set(ff.verdict)
        p.append(lambda f: f.verdict in verdicts)
    if ff.drop_reason_desc:
        reasons = set(ff.drop_reason_desc)
        p.append(lambda f: f.drop_reason in reasons)
    if ff.reply:
        p.append(_by_reply(ff.reply))
    if ff.encrypted:
        enc = set(ff.encrypted)
        p.append(lambda f: (f.ip.encrypted if f.ip else False) in enc)
    if ff.source_identity:
        ids = set(ff.source_identity)
        p.append(lambda f: f.source is not None and f.source.identity in ids)
    if ff.destination_identity:
        dids = set(ff.destination_identity)
        p.append(lambda f: f.destination is not None and f.destination.identity in dids)
    if ff.protocol:
        p.append(_by_protocol(ff.protocol))
    if ff.source_ip:
        p.append(_by_ips(ff.source_ip, lambda f: f.ip.source if f.ip else ""))
    if ff.destination_ip:
        p.append(_by_ips(ff.destination_ip, lambda f: f.ip.destination if f.ip else ""))
    if ff.source_ip_xlated:
        p.append(_by_ips(ff.source_ip_xlated, lambda f: f.ip.source_xlated if f.ip else ""))
    if ff.source_pod:
        p.append(_by_namespaced_name(ff.source_pod, _endpoint_ns_pod(_src)))
    if ff.destination_pod:
        p.append(_by_namespaced_name(ff.destination_pod, _endpoint_ns_pod(_dst)))
    if ff.source_workload:
        p.append(_by_workload(ff.source_workload, _src))
    if ff.destination_workload:
        p.append(_by_workload(ff.destination_workload, _dst))
    if ff.source_service:
        p.append(_by_namespaced_name(ff.source_service, _svc("source_service")))
    if ff.destination_service:
        p.append(_by_namespaced_name(ff.destination_service, _svc("destination_service")))
    if ff.source_fqdn:
        sre = compile_fqdn_patterns(ff.source_fqdn)
        p.append(lambda f: any(sre.fullmatch(n) for n in f.source_names))
    if ff.destination_fqdn:
        dre = compile_fqdn_patterns(ff.destination_fqdn)
        p.append(lambda f: any(dre.fullmatch(n) for n in f.destination_names))
    if ff.dns_query:
        qres = _regexes(ff.dns_query)
        p.append(lambda f: isinstance(r := (f.l7.record if f.l7 else None), DNS)
                 and any(q.search(r.query) for q in qres))
    if ff.source_label:
        p.append(_by_labels(ff.source_label, lambda f: f.source.labels if f.source else ()))
    if ff.destination_label:
        p.append(_by_labels(ff.destination_label,
                            lambda f: f.destination.labels if f.destination else ()))
    if ff.node_labels:
        p.append(_by_labels(ff.node_labels, lambda f: f.node_labels))
    if ff.source_port:
        p.append(_by_port(ff.source_port, 0))
    if ff.destination_port:
        p.append(_by_port(ff.destination_port, 1))
    p.extend(_http_predicates(ff))
    if ff.tcp_flags:
        p.append(_by_tcp_flags(ff.tcp_flags))
    if ff.node_name:
        nre = compile_node_name_patterns(ff.node_name)
        p.append(lambda f: bool(f.node_name) and nre.fullmatch(
            f.node_name if "/" in f.node_name else f"{DEFAULT_CLUSTER}/{f.node_name}") is not None)
    p.extend(_cluster_predicates(ff))
    if ff.ip_version:
        versions = set(ff.ip_version)
        p.append(lambda f: (f.ip.ip_version if f.ip else IPVersion.IP_NOT_USED) in versions)
    if ff.traffic_direction:
        dirs = set(ff.traffic_direction)
        p.append(lambda f: f.traffic_direction in dirs)
    if ff.since_ns is not None:
        since = ff.since_ns
        p.append(lambda f: f.time_ns >= since)
    if ff.until_ns is not None:
        until = ff.until_ns
        p.append(lambda f: f.time_ns <= until)
    return p


def _http_predicates(ff: FlowFilter) -> list[Predicate]:
    _check_http_compatible(ff)
    p: list[Predicate] = []
    if ff.http_status_code:
        p.append(_by_http_status(ff.http_status_code))
    if ff.http_method:
        methods = {m.lower() for m in ff.http_method}
        p.append(lambda f: (h := _http(f)) is not None and bool(h.method)
                 and h.method.lower() in methods)
    if ff.http_path:
        p.append(_by_http_path(ff.http_path))
    if ff.http_url:
        p.append(_by_http_url(ff.http_url))
    if ff.http_header:
        pairs = {(h.key, h.value) for h in ff.http_header}
        p.append(lambda f: (h := _http(f)) is not None
                 and any((x.key, x.value) in pairs for x in h.headers))
    return p


def _cluster_predicates(ff: FlowFilter) -> list[Predicate]:
    p: list[Predicate] = []
    for names, get in ((ff.source_cluster_name, _src), (ff.destination_cluster_name, _dst)):
        if not names:
            continue
        if "" in names:
            raise ValueError("invalid filter, name must not be empty")
        p.append(_by_cluster(set(names), get))
    return p


def _by_cluster(wanted: set[str], get: Callable[[Flow], Endpoint | None]) -> Predicate:
    def match(flow: Flow) -> bool:
        ep = get(flow)
        return (ep.cluster_name if ep else "") in wanted
    return match


def compile_filter(ff: FlowFilter) -> Predicate:
    """All fields AND-ed. Raises ValueError for a value Hubble would reject."""
    preds = _field_predicates(ff)
    return lambda flow: all(pred(flow) for pred in preds)
