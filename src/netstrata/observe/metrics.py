"""Prometheus metrics for the agent: what Hubble's metric handlers and Cilium's agent export.

Names are the Hubble and Cilium names an operator already has dashboards and alerts for
(labels follow them; direction values are lower case). Where neither project has a metric the
name is prefixed `netstrata_`:

hubble_flows_processed_total{type, subtype, verdict, direction}
    type Trace/Drop/PolicyVerdict/L7/..., subtype the trace point or the L7 protocol
hubble_drop_total{reason, protocol, direction}
    reason is the DropReason name (Cilium's cilium_drop_count_total carries the direction)
hubble_policy_verdicts_total{direction, match, action}
    match l3-l4, l4-only, ..., l7/http; action forwarded/dropped/redirected/audit
hubble_http_requests_total{method, protocol, reporter}, hubble_http_responses_total{method,
    status, reporter}, hubble_http_request_duration_seconds{method, reporter}
hubble_dns_queries_total{qtypes}, hubble_dns_responses_total{rcode, qtypes, ips_returned}
hubble_kafka_requests_total{topic, api_key, error_code}
hubble_lost_events_total{source}
    source `kernel_ring_buffer`: records the datapath could not write into its full ring
    buffer (counted by the kernel per CPU); `hubble_ring_buffer`: flows a slow follower lost
cilium_identity{type}, cilium_endpoint, cilium_endpoint_state{endpoint_state}
cilium_policy, cilium_policy_max_revision, cilium_policy_change_total{outcome},
    cilium_policy_import_errors_total
cilium_policy_implementation_delay{source}
    seconds from a policy change to its enforcement (a histogram, as in Cilium)
cilium_bpf_map_pressure{map_name} (0..1), cilium_bpf_map_capacity{map_name},
    netstrata_bpf_map_entries{map_name} (the entries behind the pressure ratio)

Each `Metrics` owns its registry, so tests and several agents in one process never collide.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from netstrata.observe.flow import (
    DNS,
    DNS_RCODE_NAMES,
    HTTP,
    TRACE_SUBTYPE_NAMES,
    EventKind,
    Flow,
    Kafka,
    L7FlowType,
    TrafficDirection,
    Verdict,
)

_EVENT_TYPE_LABELS: Final = {
    EventKind.DROP: "Drop", EventKind.DEBUG: "Debug", EventKind.CAPTURE: "Capture",
    EventKind.TRACE: "Trace", EventKind.POLICY_VERDICT: "PolicyVerdict",
    EventKind.TRACE_SOCK: "SockTrace", EventKind.ACCESS_LOG: "L7", EventKind.AGENT: "Agent",
}
_MATCH_LABELS: Final = {0: "none", 1: "l3-only", 2: "l3-l4", 3: "l4-only", 4: "all",
                        5: "l3-proto", 6: "proto-only"}
_ACTIONS: Final = {Verdict.FORWARDED: "forwarded", Verdict.DROPPED: "dropped",
                   Verdict.REDIRECTED: "redirected", Verdict.AUDIT: "audit",
                   Verdict.ERROR: "error"}
ENFORCE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                          5.0, 10.0, 30.0, 60.0)
"""Seconds. Sub-millisecond to a minute: a map update is ~ms, an agent restart ~s."""


def _direction(flow: Flow) -> str:
    return {TrafficDirection.INGRESS: "ingress",
            TrafficDirection.EGRESS: "egress"}.get(flow.traffic_direction, "unknown")


def _protocol(flow: Flow) -> str:
    return type(flow.l4).__name__ if flow.l4 is not None else ""


class Metrics:
    """The agent's metrics. Call the methods; scrape `exposition()`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.flows = Counter("hubble_flows_processed_total", "Flows observed",
                             ["type", "subtype", "verdict", "direction"], registry=r)
        self.drops = Counter("hubble_drop_total", "Packets dropped by the datapath",
                             ["reason", "protocol", "direction"], registry=r)
        self.policy_verdicts = Counter("hubble_policy_verdicts_total",
                                       "Policy decisions by match type and action",
                                       ["direction", "match", "action"], registry=r)
        self.http_requests = Counter("hubble_http_requests_total", "HTTP requests seen",
                                     ["method", "protocol", "reporter"], registry=r)
        self.http_responses = Counter("hubble_http_responses_total", "HTTP responses seen",
                                      ["method", "status", "reporter"], registry=r)
        self.http_duration = Histogram("hubble_http_request_duration_seconds",
                                       "HTTP request latency", ["method", "reporter"],
                                       registry=r)
        self.dns_queries = Counter("hubble_dns_queries_total", "DNS queries seen",
                                   ["qtypes"], registry=r)
        self.dns_responses = Counter("hubble_dns_responses_total", "DNS responses seen",
                                     ["rcode", "qtypes", "ips_returned"], registry=r)
        self.kafka_requests = Counter("hubble_kafka_requests_total", "Kafka requests seen",
                                      ["topic", "api_key", "error_code"], registry=r)
        self.identities = Gauge("cilium_identity", "Security identities by type", ["type"],
                                registry=r)
        self.endpoints = Gauge("cilium_endpoint", "Endpoints managed by this agent",
                               registry=r)
        self.endpoint_states = Gauge("cilium_endpoint_state", "Endpoints per state",
                                     ["endpoint_state"], registry=r)
        self.policies = Gauge("cilium_policy", "Policies loaded", registry=r)
        self.policy_revision = Gauge("cilium_policy_max_revision",
                                     "Highest policy repository revision", registry=r)
        self.policy_changes = Counter("cilium_policy_change_total",
                                      "Policy changes by outcome", ["outcome"], registry=r)
        self.policy_import_errors = Counter("cilium_policy_import_errors_total",
                                            "Policy imports that failed", registry=r)
        self.time_to_enforce = Histogram("cilium_policy_implementation_delay",
                                         "Time from a policy change to its enforcement",
                                         ["source"], buckets=ENFORCE_BUCKETS, registry=r)
        self.map_pressure = Gauge("cilium_bpf_map_pressure", "Fill ratio of a BPF map",
                                  ["map_name"], registry=r)
        self.map_entries = Gauge("netstrata_bpf_map_entries", "Entries in a BPF map",
                                 ["map_name"], registry=r)
        self.map_capacity = Gauge("cilium_bpf_map_capacity", "Max entries of a BPF map",
                                  ["map_name"], registry=r)
        self.lost = Counter("hubble_lost_events_total", "Events lost before observation",
                            ["source"], registry=r)

    # --- flows ---------------------------------------------------------------------------------

    def observe_flow(self, flow: Flow, count: int = 1) -> None:
        """Count one flow (or `count` flows with the same labels: a batch of kernel records
        counted once per label set) in every flow-derived metric it belongs to."""
        kind = flow.event_type.type if flow.event_type else 0
        self.flows.labels(type=_EVENT_TYPE_LABELS.get(kind, str(kind)),  # type: ignore[call-overload]
                          subtype=self._subtype(flow, kind), verdict=flow.verdict.name,
                          direction=_direction(flow)).inc(count)
        if flow.verdict == Verdict.DROPPED and flow.drop_reason:
            self.drops.labels(reason=flow.drop_reason_desc, protocol=_protocol(flow),
                              direction=_direction(flow)).inc(count)
        if kind == EventKind.POLICY_VERDICT:
            self._policy_verdict(flow, _MATCH_LABELS.get(int(flow.policy_match_type), "unknown"),
                                 count)
        if flow.l7 is not None:
            if count != 1:
                raise ValueError("L7 flows are counted one by one (latency histogram)")
            self._l7(flow)

    @staticmethod
    def _subtype(flow: Flow, kind: int) -> str:
        if kind == EventKind.TRACE and flow.event_type:
            return TRACE_SUBTYPE_NAMES.get(flow.event_type.sub_type, "")
        if flow.l7 is not None and flow.l7.record is not None:
            return type(flow.l7.record).__name__
        return ""

    def _policy_verdict(self, flow: Flow, match: str, count: int = 1) -> None:
        action = _ACTIONS.get(flow.verdict)
        if action:
            self.policy_verdicts.labels(direction=_direction(flow), match=match,
                                        action=action).inc(count)

    def _l7(self, flow: Flow) -> None:
        assert flow.l7 is not None
        rec, response = flow.l7.record, flow.l7.type == L7FlowType.RESPONSE
        if not response and rec is not None:
            self._policy_verdict(flow, f"l7/{type(rec).__name__.lower()}")
        # The proxy of the client side reports egress records, the server side ingress ones.
        reporter = "client" if flow.traffic_direction == TrafficDirection.EGRESS else "server"
        if isinstance(rec, HTTP):
            if response:
                self.http_responses.labels(method=rec.method, status=str(rec.code),
                                           reporter=reporter).inc()
                self.http_duration.labels(method=rec.method, reporter=reporter).observe(
                    flow.l7.latency_ns / 1e9)
            else:
                self.http_requests.labels(method=rec.method, protocol=rec.protocol,
                                          reporter=reporter).inc()
        elif isinstance(rec, DNS):
            qtypes = ",".join(rec.qtypes)
            if response:
                self.dns_responses.labels(rcode=DNS_RCODE_NAMES.get(rec.rcode, str(rec.rcode)),
                                          qtypes=qtypes, ips_returned=str(len(rec.ips))).inc()
            else:
                self.dns_queries.labels(qtypes=qtypes).inc()
        elif isinstance(rec, Kafka) and response:
            # Responses carry the outcome (29 = TOPIC_AUTHORIZATION_FAILED for a denial).
            self.kafka_requests.labels(topic=rec.topic, api_key=rec.api_key,
                                       error_code=str(rec.error_code)).inc()

    # --- agent state -----------------------------------------------------------------------------

    def set_identities(self, counts: Mapping[str, int]) -> None:
        """Identities per type (`cluster_local`, `node_local`, `reserved`, ...)."""
        for kind, n in counts.items():
            self.identities.labels(type=kind).set(n)

    def set_endpoints(self, total: int, by_state: Mapping[str, int] | None = None) -> None:
        self.endpoints.set(total)
        for state, n in (by_state or {}).items():
            self.endpoint_states.labels(endpoint_state=state).set(n)

    def set_policies(self, count: int, max_revision: int) -> None:
        self.policies.set(count)
        self.policy_revision.set(max_revision)

    def policy_change(self, outcome: str) -> None:
        """`success` or `fail`; a failure also counts as an import error."""
        self.policy_changes.labels(outcome=outcome).inc()
        if outcome == "fail":
            self.policy_import_errors.inc()

    def policy_import_error(self) -> None:
        self.policy_change("fail")

    def set_map_usage(self, map_name: str, entries: int, capacity: int) -> None:
        """Entries, capacity and their ratio (pressure) of one BPF map."""
        self.map_entries.labels(map_name=map_name).set(entries)
        self.map_capacity.labels(map_name=map_name).set(capacity)
        self.map_pressure.labels(map_name=map_name).set(entries / capacity if capacity else 0.0)

    def observe_time_to_enforce(self, seconds: float, source: str = "policy") -> None:
        self.time_to_enforce.labels(source=source).observe(seconds)

    def lost_events(self, source: str, count: int = 1) -> None:
        """`source`: `perf_event_ring_buffer`, `observer_events_queue`, `hubble_ring_buffer`."""
        if count > 0:
            self.lost.labels(source=source).inc(count)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


__all__ = ["ENFORCE_BUCKETS", "Metrics"]
