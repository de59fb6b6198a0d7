"""Turn datapath and proxy decisions into Hubble flows, filled in the way Cilium's parsers fill them.

L3/L4 (`flow_from_l34`, Cilium `pkg/hubble/parser/threefour`):

* `drop`: verdict DROPPED, `drop_reason` + `drop_reason_desc`, event `{type: 1, sub_type:
  reason}`; `is_reply` unknown (the datapath does not know), so the compact arrow is `<>`.
* `policy-verdict`: event `{type: 5}`, `policy_match_type` from the deciding key. Verdict:
  AUDIT when audit mode turned a denial into an allow (no drop reason then: the packet passed),
  DROPPED with the reason when denied, REDIRECTED when sent to the L7 proxy, else FORWARDED.
  Allowed verdicts are first packets of connections, so `is_reply` is false; denied ones
  unknown.
* `trace`: event `{type: 4, sub_type: <observation point>}`, verdict FORWARDED.

L7 (`flow_from_l7_http`/`_dns`/`_kafka`, Cilium `pkg/hubble/parser/seven`): `Type` L7, event
`{type: 129}`, no drop reason (an L7 denial is verdict DROPPED: HTTP answered 403, DNS answered
REFUSED), `is_reply` true exactly for RESPONSE records. Callers always pass the connection as
client -> server; for RESPONSE records the builder swaps the two sides, as the proxy's access
log does, so the compact printer shows `client <- server`.

Policy references `(kind, namespace, name)` become `*_allowed_by` (allowed, redirected) or
`*_denied_by` (dropped, audited) entries of the flow's direction, with Cilium's derived policy
labels. Summaries follow Cilium's text (`TCP Flags: SYN`, `HTTP/1.1 GET http://...`,
`DNS Query example.com. A`). Nothing here reads a clock or a socket: time and uuid come in.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from netstrata.observe.flow import (
    DNS,
    DNS_RCODE_NAMES,
    HTTP,
    IP,
    SCTP,
    TCP,
    UDP,
    Endpoint,
    EventKind,
    EventType,
    Flow,
    FlowType,
    HTTPHeader,
    ICMPv4,
    ICMPv6,
    IPVersion,
    Kafka,
    L7FlowType,
    L7Record,
    Layer4,
    Layer7,
    Policy,
    TCPFlags,
    TraceObservationPoint,
    TrafficDirection,
    Verdict,
    trace_subtype,
)
from netstrata.policy.types import Direction, MatchType, Proto

PolicyRef = tuple[str, str, str]
"""(kind, namespace, name), e.g. `("CiliumNetworkPolicy", "shop", "api-ingress")`; namespace
is empty for cluster-wide policies."""

L34Event = Literal["drop", "policy-verdict", "trace"]

_LABEL_DERIVED: Final = "k8s:io.cilium.k8s.policy.derived-from"
_LABEL_NAME: Final = "k8s:io.cilium.k8s.policy.name"
_LABEL_NAMESPACE: Final = "k8s:io.cilium.k8s.policy.namespace"


@dataclass(frozen=True, slots=True)
class Packet:
    """What the datapath saw, independent of the decision: addresses, ports, endpoints."""

    src_ip: str
    dst_ip: str
    proto: int
    """IANA protocol (`policy.types.Proto`)."""
    src_port: int = 0
    dst_port: int = 0
    tcp_flags: TCPFlags | None = None
    icmp_type: int = 0
    icmp_code: int = 0
    source: Endpoint | None = None
    destination: Endpoint | None = None
    source_names: tuple[str, ...] = ()
    destination_names: tuple[str, ...] = ()


def policy_from_ref(ref: PolicyRef | Policy, revision: int = 0) -> Policy:
    """A flow `Policy` entry with the labels Cilium derives for a policy's rules."""
    if isinstance(ref, Policy):
        return ref
    kind, namespace, name = ref
    labels = [f"{_LABEL_DERIVED}={kind}", f"{_LABEL_NAME}={name}"]
    if namespace:
        labels.append(f"{_LABEL_NAMESPACE}={namespace}")
    return Policy(name=name, namespace=namespace, labels=tuple(sorted(labels)),
                  revision=revision, kind=kind)


def _ip(packet: Packet) -> IP:
    version = IPVersion.IPv6 if ":" in packet.src_ip or ":" in packet.dst_ip else IPVersion.IPv4
    return IP(source=packet.src_ip, destination=packet.dst_ip, ip_version=version)


def _l4(packet: Packet) -> Layer4 | None:
    p = packet.proto
    if p == Proto.TCP:
        return TCP(packet.src_port, packet.dst_port, packet.tcp_flags)
    if p == Proto.UDP:
        return UDP(packet.src_port, packet.dst_port)
    if p == Proto.SCTP:
        return SCTP(packet.src_port, packet.dst_port)
    if p == Proto.ICMP:
        return ICMPv4(packet.icmp_type, packet.icmp_code)
    if p == Proto.ICMPV6:
        return ICMPv6(packet.icmp_type, packet.icmp_code)
    return None


_ICMP4_TYPES: Final = {0: "EchoReply", 3: "DestinationUnreachable", 4: "SourceQuench",
                       5: "Redirect", 8: "EchoRequest", 9: "RouterAdvertisement",
                       10: "RouterSolicitation", 11: "TimeExceeded", 12: "ParameterProblem",
                       13: "TimestampRequest", 14: "TimestampReply"}
_ICMP4_UNREACH: Final = {0: "Net", 1: "Host", 2: "Protocol", 3: "Port", 4: "FragmentationNeeded",
                         13: "CommAdminProhibited"}
_ICMP6_TYPES: Final = {1: "DestinationUnreachable", 2: "PacketTooBig", 3: "TimeExceeded",
                       4: "ParameterProblem", 128: "EchoRequest", 129: "EchoReply",
                       133: "RouterSolicitation", 134: "RouterAdvertisement",
                       135: "NeighborSolicitation", 136: "NeighborAdvertisement", 137: "Redirect"}
_ICMP6_UNREACH: Final = {0: "NoRouteToDst", 1: "AdminProhibited", 3: "Address", 4: "Port"}


def _icmp_text(types: dict[int, str], unreach: dict[int, str], t: int, code: int) -> str:
    """gopacket's `ICMPv4TypeCode.String()` shape for the types we emit."""
    if t not in types:
        return f"{t}({code})"
    codes = unreach if types[t] == "DestinationUnreachable" else None
    if codes is None:
        return types[t] if code == 0 else f"{types[t]}(Code: {code})"
    return f"{types[t]}({codes[code]})" if code in codes else f"{types[t]}(Code: {code})"


def l34_summary(l4: Layer4 | None) -> str:
    """Cilium's L3/L4 Summary text."""
    if isinstance(l4, TCP):
        return "TCP Flags: " + ", ".join(l4.flags.names() if l4.flags else [])
    if isinstance(l4, UDP):
        return "UDP"
    if isinstance(l4, SCTP):
        return "SCTP"
    if isinstance(l4, ICMPv4):
        return "ICMPv4 " + _icmp_text(_ICMP4_TYPES, _ICMP4_UNREACH, l4.type, l4.code)
    if isinstance(l4, ICMPv6):
        return "ICMPv6 " + _icmp_text(_ICMP6_TYPES, _ICMP6_UNREACH, l4.type, l4.code)
    return ""


def _direction(direction: Direction) -> TrafficDirection:
    return TrafficDirection.EGRESS if direction == Direction.EGRESS else TrafficDirection.INGRESS


def _policy_lists(direction: Direction, allowed: bool, refs: Sequence[PolicyRef | Policy],
                  revision: int) -> dict[str, tuple[Policy, ...]]:
    if not refs:
        return {}
    side = "egress" if direction == Direction.EGRESS else "ingress"
    key = f"{side}_{'allowed' if allowed else 'denied'}_by"
    return {key: tuple(policy_from_ref(r, revision) for r in refs)}


def _l34_verdict(event: L34Event, drop_reason: int | None, audited: bool,
                 proxy_port: int) -> tuple[Verdict, int]:
    """(verdict, drop reason carried by the flow)."""
    if event == "drop":
        if not drop_reason:
            raise ValueError("a drop event needs a drop reason")
        return Verdict.DROPPED, int(drop_reason)
    if event == "policy-verdict":
        if audited:
            return Verdict.AUDIT, 0
        if drop_reason:
            return Verdict.DROPPED, int(drop_reason)
        return (Verdict.REDIRECTED if proxy_port else Verdict.FORWARDED), 0
    return Verdict.FORWARDED, 0


def flow_from_l34(
    packet: Packet,
    *,
    event: L34Event,
    direction: Direction,
    time_ns: int,
    node_name: str,
    drop_reason: int | None = None,
    match_type: MatchType | int = MatchType.NONE,
    audited: bool = False,
    proxy_port: int = 0,
    policies: Sequence[PolicyRef | Policy] = (),
    revision: int = 0,
    observation_point: TraceObservationPoint = TraceObservationPoint.TO_ENDPOINT,
    is_reply: bool | None = None,
    policy_log: Sequence[str] = (),
    uuid: str | None = None,
) -> Flow:
    """A kernel (or reference datapath) decision as a Hubble L3/L4 flow.

    Args:
        event: `drop`, `policy-verdict` or `trace` (see the module docstring).
        direction: whose policy decided: the destination's (INGRESS) or the source's (EGRESS).
        drop_reason: a `DropReason` for denials; None when allowed.
        match_type: how the deciding policy-map key matched (`MapStateKey.match_type()`).
        audited: audit mode let a denied packet through (verdict AUDIT).
        proxy_port: non-zero when redirected to the L7 proxy (verdict REDIRECTED).
        policies: the rules that decided, as `(kind, namespace, name)`.
        observation_point: for `trace` events only.
        is_reply: for `trace` events; drops and policy verdicts derive it as Cilium does.
        uuid: flow id; a random UUID4 when not given.

    Raises:
        ValueError: a drop without a reason.
    """
    verdict, reason = _l34_verdict(event, drop_reason, audited, proxy_port)
    l4 = _l4(packet)
    fields: dict[str, object] = {}
    if event == "drop":
        ev, reply = EventType(EventKind.DROP, reason), None
    elif event == "policy-verdict":
        ev = EventType(EventKind.POLICY_VERDICT, 0)
        reply = False if verdict != Verdict.DROPPED else None
        fields["policy_match_type"] = int(match_type)
    else:
        ev, reply = EventType(EventKind.TRACE, trace_subtype(observation_point)), is_reply
        fields["trace_observation_point"] = observation_point
    allowed = verdict in (Verdict.FORWARDED, Verdict.REDIRECTED)
    return Flow(
        time_ns=time_ns, uuid=uuid or str(_uuid.uuid4()), verdict=verdict, drop_reason=reason,
        ip=_ip(packet), l4=l4, source=packet.source, destination=packet.destination,
        type=FlowType.L3_L4, node_name=node_name, source_names=packet.source_names,
        destination_names=packet.destination_names, event_type=ev,
        traffic_direction=_direction(direction), is_reply=reply,
        proxy_port=proxy_port if verdict == Verdict.REDIRECTED else 0,
        summary=l34_summary(l4), policy_log=tuple(policy_log),
        **_policy_lists(direction, allowed, policies, revision),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def _l7_flow(packet: Packet, record: L7Record, summary: str, *, l7_type: L7FlowType,
             verdict: Verdict, direction: Direction, time_ns: int, node_name: str,
             latency_ns: int, policies: Sequence[PolicyRef | Policy], revision: int,
             uuid: str | None) -> Flow:
    # AUDIT on an L7 record is netstrata's extension: the proxy forwarded a request its rules
    # would deny because the endpoint is in audit mode (Cilium's audit mode stops at L3/L4).
    if verdict not in (Verdict.FORWARDED, Verdict.DROPPED, Verdict.ERROR, Verdict.REDIRECTED,
                       Verdict.AUDIT):
        raise ValueError(f"an L7 record cannot have verdict {verdict.name}")
    response = l7_type == L7FlowType.RESPONSE
    src_ip, dst_ip, src_port, dst_port = packet.src_ip, packet.dst_ip, packet.src_port, packet.dst_port
    src, dst = packet.source, packet.destination
    src_names, dst_names = packet.source_names, packet.destination_names
    if response:
        src_ip, dst_ip, src_port, dst_port = dst_ip, src_ip, dst_port, src_port
        src, dst, src_names, dst_names = dst, src, dst_names, src_names
    swapped = Packet(src_ip, dst_ip, packet.proto, src_port, dst_port)
    return Flow(
        time_ns=time_ns, uuid=uuid or str(_uuid.uuid4()), verdict=verdict, ip=_ip(swapped),
        l4=_l4(swapped), source=src, destination=dst, type=FlowType.L7, node_name=node_name,
        source_names=src_names, destination_names=dst_names,
        l7=Layer7(l7_type, latency_ns if response else 0, record),
        event_type=EventType(EventKind.ACCESS_LOG, 0), traffic_direction=_direction(direction),
        is_reply=response, summary=summary,
        **_policy_lists(direction, verdict not in (Verdict.DROPPED, Verdict.AUDIT), policies,
                        revision),  # type: ignore[arg-type]
    )


def flow_from_l7_http(
    packet: Packet, *, method: str, url: str, l7_type: L7FlowType = L7FlowType.REQUEST,
    verdict: Verdict = Verdict.FORWARDED, direction: Direction = Direction.INGRESS,
    time_ns: int, node_name: str, protocol: str = "HTTP/1.1", code: int = 0,
    headers: Sequence[tuple[str, str]] = (), latency_ns: int = 0,
    policies: Sequence[PolicyRef | Policy] = (), revision: int = 0, uuid: str | None = None,
) -> Flow:
    """An HTTP access-log record. `code` is only recorded on RESPONSE records (as Cilium does);
    headers are sorted by name, values kept in order."""
    hdrs = tuple(HTTPHeader(k, v) for k, v in sorted(headers, key=lambda kv: kv[0]))
    response = l7_type == L7FlowType.RESPONSE
    record = HTTP(code=code if response else 0, method=method, url=url, protocol=protocol,
                  headers=hdrs)
    request = f"{method} {url}"
    summary = (f"{protocol} {code} {latency_ns // 1_000_000}ms ({request})" if response
               else f"{protocol} {request}")
    return _l7_flow(packet, record, summary, l7_type=l7_type, verdict=verdict,
                    direction=direction, time_ns=time_ns, node_name=node_name,
                    latency_ns=latency_ns, policies=policies, revision=revision, uuid=uuid)


def flow_from_l7_dns(
    packet: Packet, *, query: str, qtypes: Sequence[str] = ("A",),
    l7_type: L7FlowType = L7FlowType.REQUEST, verdict: Verdict = Verdict.FORWARDED,
    direction: Direction = Direction.EGRESS, time_ns: int, node_name: str,
    ips: Sequence[str] = (), ttl: int = 0, cnames: Sequence[str] = (), rcode: int = 0,
    rrtypes: Sequence[str] = (), observation_source: str = "proxy", latency_ns: int = 0,
    policies: Sequence[PolicyRef | Policy] = (), revision: int = 0, uuid: str | None = None,
) -> Flow:
    """A DNS proxy record. The query is made fully qualified (`name.`); request records keep
    only query, source and qtypes, as Cilium's do."""
    fqdn = query if query.endswith(".") else query + "."
    response = l7_type == L7FlowType.RESPONSE
    if response:
        record = DNS(query=fqdn, ips=tuple(ips), ttl=ttl, cnames=tuple(cnames),
                     observation_source=observation_source, rcode=rcode, qtypes=tuple(qtypes),
                     rrtypes=tuple(rrtypes))
    else:
        record = DNS(query=fqdn, observation_source=observation_source, qtypes=tuple(qtypes))
    summary = _dns_summary(record, response)
    return _l7_flow(packet, record, summary, l7_type=l7_type, verdict=verdict,
                    direction=direction, time_ns=time_ns, node_name=node_name,
                    latency_ns=latency_ns, policies=policies, revision=revision, uuid=uuid)


def _dns_summary(rec: DNS, response: bool) -> str:
    qtypes = ",".join(rec.qtypes)
    if not response:
        return f"DNS Query {rec.query} {qtypes}"
    if rec.rcode != 0:
        answer = f"RCode: {DNS_RCODE_NAMES.get(rec.rcode, 'Unknown')}"
    else:
        parts = []
        if rec.ips:
            parts.append('"' + ",".join(rec.ips) + '"')
        if rec.cnames:
            parts.append('CNAMEs: "' + ",".join(rec.cnames) + '"')
        answer = " ".join(parts)
    source = "Proxy" if rec.observation_source == "proxy" else "Query"
    return f"DNS Answer {answer} TTL: {rec.ttl} ({source} {rec.query} {qtypes})"


def flow_from_l7_kafka(
    packet: Packet, *, api_key: str, topic: str = "", api_version: int = 0,
    correlation_id: int = 0, error_code: int = 0, l7_type: L7FlowType = L7FlowType.REQUEST,
    verdict: Verdict = Verdict.FORWARDED, direction: Direction = Direction.INGRESS,
    time_ns: int, node_name: str, latency_ns: int = 0,
    policies: Sequence[PolicyRef | Policy] = (), revision: int = 0, uuid: str | None = None,
) -> Flow:
    """A Kafka access-log record (`error_code` only on responses, e.g. 29 for a denied topic)."""
    response = l7_type == L7FlowType.RESPONSE
    record = Kafka(error_code=error_code if response else 0, api_version=api_version,
                   api_key=api_key, correlation_id=correlation_id, topic=topic)
    summary = (f"Kafka response {api_key} correlation id {correlation_id} topic '{topic}' "
               f"return code {record.error_code}" if response else
               f"Kafka request {api_key} correlation id {correlation_id} topic '{topic}'")
    return _l7_flow(packet, record, summary, l7_type=l7_type, verdict=verdict,
                    direction=direction, time_ns=time_ns, node_name=node_name,
                    latency_ns=latency_ns, policies=policies, revision=revision, uuid=uuid)


__all__ = [
    "L34Event",
    "Packet",
    "PolicyRef",
    "flow_from_l34",
    "flow_from_l7_dns",
    "flow_from_l7_http",
    "flow_from_l7_kafka",
    "l34_summary",
    "policy_from_ref",
]
