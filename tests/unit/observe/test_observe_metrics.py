"""Prometheus metrics: fed through the agent-facing calls, checked by scraping the registry's
text exposition and parsing it with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from observe_fixtures import DNS_CONN, HTTP_CONN, NODE, SYN, T0

from netstrata.datapath.drop_reasons import DropReason
from netstrata.observe.builders import (
    flow_from_l7_dns,
    flow_from_l7_http,
    flow_from_l7_kafka,
    flow_from_l34,
)
from netstrata.observe.flow import L7FlowType, TraceObservationPoint, Verdict
from netstrata.policy.types import Direction, MatchType

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from netstrata.observe.metrics import Metrics  # noqa: E402


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(sample name, sorted labels): value}."""
    text = metrics.exposition().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_names_are_hubble_and_cilium_names() -> None:
    families = list(text_string_to_metric_families(Metrics().exposition().decode()))
    assert families
    names = {f.name for f in families}
    assert {"hubble_flows_processed", "hubble_drop", "hubble_policy_verdicts",
            "hubble_lost_events", "cilium_policy_import_errors", "cilium_bpf_map_pressure",
            "cilium_policy_implementation_delay"} <= names
    assert all(n.split("_")[0] in ("hubble", "cilium", "netstrata") for n in names)


def test_flow_metrics() -> None:
    m = Metrics()
    m.observe_flow(flow_from_l34(SYN, event="drop", direction=Direction.INGRESS, time_ns=T0,
                                 node_name=NODE, drop_reason=DropReason.POLICY_DENIED))
    m.observe_flow(flow_from_l34(SYN, event="drop", direction=Direction.EGRESS, time_ns=T0,
                                 node_name=NODE, drop_reason=DropReason.POLICY_DENY))
    m.observe_flow(flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                                 time_ns=T0, node_name=NODE, match_type=MatchType.L3_L4))
    m.observe_flow(flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                                 time_ns=T0, node_name=NODE, audited=True,
                                 drop_reason=DropReason.POLICY_DENIED))
    m.observe_flow(flow_from_l34(SYN, event="trace", direction=Direction.INGRESS, time_ns=T0,
                                 node_name=NODE, observation_point=TraceObservationPoint.TO_PROXY))
    s = scrape(m)
    assert value(s, "hubble_flows_processed_total", type="Drop", subtype="",
                 verdict="DROPPED", direction="ingress") == 1
    assert value(s, "hubble_flows_processed_total", type="Trace", subtype="to-proxy",
                 verdict="FORWARDED", direction="ingress") == 1
    assert value(s, "hubble_drop_total", reason="POLICY_DENIED", protocol="TCP",
                 direction="ingress") == 1
    assert value(s, "hubble_drop_total", reason="POLICY_DENY", protocol="TCP",
                 direction="egress") == 1
    assert value(s, "hubble_policy_verdicts_total", direction="ingress", match="l3-l4",
                 action="forwarded") == 1
    assert value(s, "hubble_policy_verdicts_total", direction="ingress", match="none",
                 action="audit") == 1


def test_l7_metrics() -> None:
    m = Metrics()
    m.observe_flow(flow_from_l7_http(HTTP_CONN, method="GET", url="http://a/", time_ns=T0,
                                     node_name=NODE))
    m.observe_flow(flow_from_l7_http(HTTP_CONN, method="GET", url="http://a/", time_ns=T0,
                                     node_name=NODE, verdict=Verdict.DROPPED))
    m.observe_flow(flow_from_l7_http(HTTP_CONN, method="GET", url="http://a/", time_ns=T0,
                                     node_name=NODE, l7_type=L7FlowType.RESPONSE, code=403,
                                     latency_ns=20_000_000))
    m.observe_flow(flow_from_l7_dns(DNS_CONN, query="cilium.io", time_ns=T0, node_name=NODE))
    m.observe_flow(flow_from_l7_dns(DNS_CONN, query="cilium.io", time_ns=T0, node_name=NODE,
                                    l7_type=L7FlowType.RESPONSE, ips=["1.2.3.4", "1.2.3.5"]))
    m.observe_flow(flow_from_l7_kafka(HTTP_CONN, api_key="produce", topic="orders",
                                      l7_type=L7FlowType.RESPONSE, error_code=29,
                                      time_ns=T0, node_name=NODE))
    s = scrape(m)
    assert value(s, "hubble_http_requests_total", method="GET", protocol="HTTP/1.1",
                 reporter="server") == 2
    assert value(s, "hubble_http_responses_total", method="GET", status="403",
                 reporter="server") == 1
    assert value(s, "hubble_http_request_duration_seconds_count", method="GET",
                 reporter="server") == 1
    assert value(s, "hubble_http_request_duration_seconds_sum", method="GET",
                 reporter="server") == pytest.approx(0.02)
    assert value(s, "hubble_policy_verdicts_total", direction="ingress", match="l7/http",
                 action="dropped") == 1
    assert value(s, "hubble_dns_queries_total", qtypes="A") == 1
    assert value(s, "hubble_dns_responses_total", rcode="No Error", qtypes="A",
                 ips_returned="2") == 1
    assert value(s, "hubble_kafka_requests_total", topic="orders", api_key="produce",
                 error_code="29") == 1
    assert value(s, "hubble_flows_processed_total", type="L7", subtype="HTTP",
                 verdict="FORWARDED", direction="ingress") == 2


def test_agent_state_metrics() -> None:
    m = Metrics()
    m.set_identities({"cluster_local": 12, "reserved": 10})
    m.set_endpoints(5, {"ready": 4, "regenerating": 1})
    m.set_policies(3, max_revision=17)
    m.policy_change("success")
    m.policy_import_error()
    m.set_map_usage("policy_402", entries=4096, capacity=16384)
    m.observe_time_to_enforce(0.004)
    m.observe_time_to_enforce(2.0)
    m.lost_events("hubble_ring_buffer", 3)
    m.lost_events("hubble_ring_buffer", 0)
    s = scrape(m)
    assert value(s, "cilium_identity", type="cluster_local") == 12
    assert value(s, "cilium_endpoint") == 5
    assert value(s, "cilium_endpoint_state", endpoint_state="regenerating") == 1
    assert value(s, "cilium_policy") == 3
    assert value(s, "cilium_policy_max_revision") == 17
    assert value(s, "cilium_policy_change_total", outcome="success") == 1
    assert value(s, "cilium_policy_change_total", outcome="fail") == 1
    assert value(s, "cilium_policy_import_errors_total") == 1
    assert value(s, "cilium_bpf_map_pressure", map_name="policy_402") == 0.25
    assert value(s, "netstrata_bpf_map_entries", map_name="policy_402") == 4096
    assert value(s, "cilium_bpf_map_capacity", map_name="policy_402") == 16384
    assert value(s, "cilium_policy_implementation_delay_bucket", source="policy",
                 le="0.005") == 1
    assert value(s, "cilium_policy_implementation_delay_bucket", source="policy",
                 le="+Inf") == 2
    assert value(s, "hubble_lost_events_total", source="hubble_ring_buffer") == 3


def test_separate_instances_do_not_share_state() -> None:
    a, b = Metrics(), Metrics()
    a.set_endpoints(1)
    assert value(scrape(b), "cilium_endpoint") == 0
