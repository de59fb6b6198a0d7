"""`policy replay`: recorded flows re-decided under a candidate policy set (reference datapath).

Flows are grouped into connections (source, destination address, protocol, destination port);
a connection that carried L7 requests is replayed once per distinct request (method + path,
Kafka apiKey + topic, DNS name), one without is replayed at L3/L4. *Before* is what the
recorded verdicts say the policy in force decided: DROPPED or AUDIT anywhere on the way means
it denied (AUDIT is a denial that audit mode forwarded). *After* is `ReferenceLab.walk` under
the candidate set, judged as enforcement would judge it: an audited step counts as a drop, so a
candidate loaded with audit mode on still shows what switching to enforcement would change.

Connections whose source or destination cannot be placed in the candidate's workloads
(matched by cluster/namespace/pod name, then by address) are counted `unmatched`, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from netstrata.lab.simulate import ReferenceLab, Request
from netstrata.lab.topology import PlacedWorkload
from netstrata.observe.flow import DNS, HTTP, SCTP, TCP, UDP, Endpoint, Flow, Kafka, Verdict
from netstrata.policy.l7 import HTTPRequest, KafkaRequest
from netstrata.policy.l7.kafka import API_KEYS
from netstrata.policy.types import Proto

Change = Literal["newly-dropped", "newly-allowed", "unchanged", "unmatched"]
_DENIED = frozenset({Verdict.DROPPED, Verdict.AUDIT})
_PROTOS = {TCP: Proto.TCP, UDP: Proto.UDP, SCTP: Proto.SCTP}


@dataclass(frozen=True, order=True, slots=True)
class ConnectionKey:
    source: str
    """`cluster/namespace/pod` of a pod, else the address."""
    destination: str
    destination_ip: str
    proto: int
    port: int


@dataclass
class _Connection:
    src_ep: Endpoint | None
    src_ip: str
    dst_ep: Endpoint | None
    l4_denied: bool = False
    requests: dict[tuple[str, ...], bool] = field(default_factory=dict)
    """L7 request -> denied before (any of its records DROPPED/AUDIT)."""
    flows: int = 0


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One replayed connection (or one L7 request on it)."""

    key: ConnectionKey
    request: str
    before: str
    """`allowed` or `denied`."""
    after: str
    """The reference outcome: allowed, dropped, denied-l7, or unmatched."""
    change: Change
    flows: int


@dataclass
class ReplayReport:
    rows: list[ReplayRow]

    def counts(self) -> dict[str, int]:
        out = {"newly-dropped": 0, "newly-allowed": 0, "unchanged": 0, "unmatched": 0}
        for r in self.rows:
            out[r.change] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.counts(),
            "changes": [
                {
                    "source": r.key.source,
                    "destination": r.key.destination,
                    "destination_ip": r.key.destination_ip,
                    "protocol": Proto(r.key.proto).name,
                    "port": r.key.port,
                    "request": r.request,
                    "before": r.before,
                    "after": r.after,
                    "change": r.change,
                    "flows": r.flows,
                }
                for r in self.rows
            ],
        }


def _ep_ref(ep: Endpoint | None, ip: str) -> str:
    if ep is not None and ep.namespace and ep.pod_name:
        return f"{ep.cluster_name}/{ep.namespace}/{ep.pod_name}"
    return ip


def _request_of(flow: Flow) -> tuple[str, ...] | None:
    record = flow.l7.record if flow.l7 is not None else None
    if isinstance(record, HTTP) and record.method:
        url = record.url
        path = url.split("://", 1)[-1]
        host, _, rest = path.partition("/")
        return ("http", record.method, "/" + rest, host)
    if isinstance(record, Kafka) and record.api_key:
        return ("kafka", record.api_key, record.topic)
    if isinstance(record, DNS) and record.query:
        return ("dns", record.query)
    return None


def group_connections(flows: Iterable[Flow]) -> dict[ConnectionKey, _Connection]:
    """Recorded flows folded into connections; replies and L7 responses are skipped."""
    out: dict[ConnectionKey, _Connection] = {}
    for flow in flows:
        l4 = flow.l4
        if not isinstance(l4, TCP | UDP | SCTP) or flow.ip is None or flow.is_reply is True:
            continue
        proto, port = _PROTOS[type(l4)], l4.destination_port
        key = ConnectionKey(
            _ep_ref(flow.source, flow.ip.source),
            _ep_ref(flow.destination, flow.ip.destination),
            flow.ip.destination,
            int(proto),
            port,
        )
        conn = out.setdefault(key, _Connection(flow.source, flow.ip.source, flow.destination))
        conn.flows += 1
        request = _request_of(flow)
        denied = flow.verdict in _DENIED
        if request is None:
            conn.l4_denied |= denied
        else:
            conn.requests[request] = conn.requests.get(request, False) or denied
    return out


def _place(lab: ReferenceLab, ep: Endpoint | None, ip: str) -> PlacedWorkload | None:
    if ep is not None and ep.namespace and ep.pod_name:
        for p in lab.topology.pods():
            w = p.workload
            if (w.namespace, w.name) == (ep.namespace, ep.pod_name) and (
                not ep.cluster_name or w.cluster == ep.cluster_name
            ):
                return p
    return lab.topology.owner_of_ip(ip)


def _walk_request(proto: int, port: int, request: tuple[str, ...] | None) -> Request:
    if request is None:
        return Request(proto, port)
    if request[0] == "http":
        return Request(
            proto, port, "http", HTTPRequest(request[1], request[2], request[3] or None, ())
        )
    if request[0] == "dns":
        return Request(proto, port, "dns", request[1])
    api_key = API_KEYS.get(request[1].lower(), -1)
    topics = (request[2],) if request[2] else ()
    return Request(proto, port, "kafka", KafkaRequest(api_key, 0, None, topics))


def replay(flows: Iterable[Flow], lab: ReferenceLab) -> ReplayReport:
    """Re-decide every recorded connection under the policies `lab` holds."""
    rows: list[ReplayRow] = []
    for key, conn in sorted(group_connections(flows).items()):
        src = _place(lab, conn.src_ep, conn.src_ip)
        dst = _place(lab, conn.dst_ep, key.destination_ip)
        dst_ip = dst.ip if dst is not None else key.destination_ip
        requests: list[tuple[tuple[str, ...] | None, bool]] = [
            (r, d or conn.l4_denied) for r, d in sorted(conn.requests.items())
        ] or [(None, conn.l4_denied)]
        for request, denied in requests:
            before = "denied" if denied else "allowed"
            text = " ".join(request[1:3]) if request else ""
            if src is None:
                rows.append(ReplayRow(key, text, before, "unmatched", "unmatched", conn.flows))
                continue
            outcome = lab.walk(src, dst_ip, _walk_request(key.proto, key.port, request))
            after = "dropped" if outcome.got == "audited" else outcome.got
            allowed_after = after == "allowed"
            change: Change = "unchanged"
            if allowed_after and denied:
                change = "newly-allowed"
            elif not allowed_after and not denied:
                change = "newly-dropped"
            rows.append(ReplayRow(key, text, before, after, change, conn.flows))
    return ReplayReport(rows)


__all__ = ["ConnectionKey", "ReplayReport", "ReplayRow", "group_connections", "replay"]
