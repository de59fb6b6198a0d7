"""Flow JSON exactly as `hubble observe -o json` prints it (reference §4.1-4.4).

Each scenario is built through `observe.builders` (the path the agent uses) and its JSON is
checked field by field against the reference tables; the expectations are written out by
hand, not produced by the encoder.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from observe_fixtures import API, CLIENT, DNS_CONN, HTTP_CONN, NODE, SYN, T0

from netstrata.datapath.drop_reasons import DropReason
from netstrata.observe.builders import (
    flow_from_l7_dns,
    flow_from_l7_http,
    flow_from_l7_kafka,
    flow_from_l34,
)
from netstrata.observe.flow import (
    DNS,
    HTTP,
    IP,
    SCTP,
    TCP,
    UDP,
    AuthType,
    Endpoint,
    Ethernet,
    EventType,
    Flow,
    FlowType,
    HTTPHeader,
    ICMPv4,
    ICMPv6,
    IPVersion,
    Kafka,
    L7FlowType,
    Layer7,
    Policy,
    Service,
    TCPFlags,
    TraceObservationPoint,
    TraceReason,
    TrafficDirection,
    Verdict,
    Workload,
    dumps,
    format_timestamp,
    from_json_dict,
    parse_timestamp,
    to_json_dict,
)
from netstrata.policy.types import Direction, MatchType

# The proto's declaration order of every Flow field we emit (flow.proto, current Cilium).
DECLARATION_ORDER = [
    "time", "uuid", "verdict", "drop_reason", "auth_type", "ethernet", "IP", "l4", "source",
    "destination", "Type", "node_name", "node_labels", "source_names", "destination_names",
    "l7", "reply", "event_type", "source_service", "destination_service", "traffic_direction",
    "policy_match_type", "trace_observation_point", "trace_reason", "drop_reason_desc",
    "is_reply", "proxy_port", "Summary", "egress_allowed_by", "ingress_allowed_by",
    "egress_denied_by", "ingress_denied_by", "policy_log",
]

CLIENT_JSON = {"ID": 1211, "identity": 48213, "cluster_name": "c1", "namespace": "shop",
               "labels": ["k8s:app=client", "k8s:io.kubernetes.pod.namespace=shop"],
               "pod_name": "client-7d9"}
API_JSON = {"ID": 402, "identity": 51007, "cluster_name": "c1", "namespace": "shop",
            "labels": ["k8s:app=api", "k8s:io.kubernetes.pod.namespace=shop"],
            "pod_name": "api-0"}


def _in_declaration_order(flow_json: dict[str, object]) -> bool:
    keys = list(flow_json)
    return keys == sorted(keys, key=DECLARATION_ORDER.index)


def test_dropped_l34_flow_json() -> None:
    flow = flow_from_l34(SYN, event="drop", direction=Direction.INGRESS, time_ns=T0,
                         node_name=NODE, drop_reason=DropReason.POLICY_DENIED, uuid="u-1")
    line = to_json_dict(flow)
    assert list(line) == ["flow", "node_name", "time"]
    assert line["node_name"] == "c1/node-a"
    assert line["time"] == "2026-05-01T10:00:00.123Z"
    f = line["flow"]
    assert f == {
        "time": "2026-05-01T10:00:00.123Z",
        "uuid": "u-1",
        "verdict": "DROPPED",
        "drop_reason": 133,
        "IP": {"source": "10.0.1.5", "destination": "10.0.2.7", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 40112, "destination_port": 8080, "flags": {"SYN": True}}},
        "source": CLIENT_JSON,
        "destination": API_JSON,
        "Type": "L3_L4",
        "node_name": "c1/node-a",
        "event_type": {"type": 1, "sub_type": 133},
        "traffic_direction": "INGRESS",
        "drop_reason_desc": "POLICY_DENIED",
        "Summary": "TCP Flags: SYN",
    }
    # A drop does not know whether the packet was a reply: Cilium leaves is_reply unset.
    assert "is_reply" not in f
    assert _in_declaration_order(f)


def test_explicit_deny_drop_carries_181() -> None:
    flow = flow_from_l34(SYN, event="drop", direction=Direction.EGRESS, time_ns=T0,
                         node_name=NODE, drop_reason=DropReason.POLICY_DENY,
                         policies=[("CiliumNetworkPolicy", "shop", "deny-api")], revision=4)
    f = to_json_dict(flow)["flow"]
    assert (f["drop_reason"], f["drop_reason_desc"]) == (181, "POLICY_DENY")
    assert f["traffic_direction"] == "EGRESS"
    assert f["egress_denied_by"] == [{
        "name": "deny-api", "namespace": "shop",
        "labels": ["k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
                   "k8s:io.cilium.k8s.policy.name=deny-api",
                   "k8s:io.cilium.k8s.policy.namespace=shop"],
        "revision": "4",  # uint64: protojson writes a string
        "kind": "CiliumNetworkPolicy",
    }]


def test_allowed_l7_http_request_and_response_json() -> None:
    req = flow_from_l7_http(HTTP_CONN, method="GET", url="http://api.shop:8080/public",
                            headers=[("X-Request-Id", "r1"), ("Accept", "*/*")],
                            direction=Direction.INGRESS, time_ns=T0, node_name=NODE, uuid="u-2",
                            policies=[("CiliumNetworkPolicy", "shop", "api-l7")])
    f = to_json_dict(req)["flow"]
    assert f["verdict"] == "FORWARDED"
    assert f["Type"] == "L7"
    assert f["event_type"] == {"type": 129}
    assert f["l7"] == {"type": "REQUEST", "http": {
        "method": "GET", "url": "http://api.shop:8080/public", "protocol": "HTTP/1.1",
        "headers": [{"key": "Accept", "value": "*/*"}, {"key": "X-Request-Id", "value": "r1"}]}}
    assert "drop_reason" not in f and "drop_reason_desc" not in f
    assert f["is_reply"] is False and "reply" not in f
    assert f["source"] == CLIENT_JSON and f["destination"] == API_JSON
    assert f["Summary"] == "HTTP/1.1 GET http://api.shop:8080/public"
    assert f["ingress_allowed_by"][0]["name"] == "api-l7"
    assert _in_declaration_order(f)

    resp = flow_from_l7_http(HTTP_CONN, method="GET", url="http://api.shop:8080/public",
                             l7_type=L7FlowType.RESPONSE, code=200, latency_ns=1_500_000,
                             time_ns=T0 + 2_000_000, node_name=NODE)
    g = to_json_dict(resp)["flow"]
    assert g["l7"] == {"type": "RESPONSE", "latency_ns": "1500000", "http": {
        "code": 200, "method": "GET", "url": "http://api.shop:8080/public",
        "protocol": "HTTP/1.1"}}
    # Responses travel server -> client and say so twice (is_reply and the deprecated reply).
    assert g["is_reply"] is True and g["reply"] is True
    assert g["source"] == API_JSON and g["destination"] == CLIENT_JSON
    assert g["l4"] == {"TCP": {"source_port": 8080, "destination_port": 40112}}
    assert g["Summary"] == "HTTP/1.1 200 1ms (GET http://api.shop:8080/public)"
    assert _in_declaration_order(g)


def test_denied_l7_flow_json_has_no_drop_reason() -> None:
    flow = flow_from_l7_http(HTTP_CONN, method="GET", url="http://api.shop:8080/private",
                             verdict=Verdict.DROPPED, time_ns=T0, node_name=NODE)
    f = to_json_dict(flow)["flow"]
    assert f["verdict"] == "DROPPED"
    assert f["Type"] == "L7"
    assert "drop_reason" not in f and "drop_reason_desc" not in f
    assert f["l7"]["http"]["method"] == "GET"
    assert "code" not in f["l7"]["http"]  # request records carry no status
    # The proxy's local 403 is a response record of the same request.
    resp = flow_from_l7_http(HTTP_CONN, method="GET", url="http://api.shop:8080/private",
                             l7_type=L7FlowType.RESPONSE, code=403, verdict=Verdict.DROPPED,
                             time_ns=T0, node_name=NODE)
    assert to_json_dict(resp)["flow"]["l7"]["http"]["code"] == 403


def test_dns_flow_json() -> None:
    flow = flow_from_l7_dns(DNS_CONN, query="example.com", l7_type=L7FlowType.RESPONSE,
                            ips=["93.184.216.34"], ttl=300, rrtypes=["A"], time_ns=T0,
                            node_name=NODE, direction=Direction.EGRESS)
    f = to_json_dict(flow)["flow"]
    assert f["l7"] == {"type": "RESPONSE", "dns": {
        "query": "example.com.", "ips": ["93.184.216.34"], "ttl": 300,
        "observation_source": "proxy", "qtypes": ["A"], "rrtypes": ["A"]}}
    assert f["traffic_direction"] == "EGRESS"
    assert f["l4"] == {"UDP": {"source_port": 53, "destination_port": 53000}}
    assert f["Summary"] == 'DNS Answer "93.184.216.34" TTL: 300 (Proxy example.com. A)'

    refused = flow_from_l7_dns(DNS_CONN, query="evil.org.", l7_type=L7FlowType.RESPONSE,
                               rcode=5, verdict=Verdict.DROPPED, time_ns=T0, node_name=NODE)
    g = to_json_dict(refused)["flow"]
    assert g["l7"]["dns"]["rcode"] == 5
    assert g["Summary"] == "DNS Answer RCode: Query Refused TTL: 0 (Proxy evil.org. A)"
    denied_query = flow_from_l7_dns(DNS_CONN, query="evil.org", verdict=Verdict.DROPPED,
                                    time_ns=T0, node_name=NODE)
    h = to_json_dict(denied_query)["flow"]
    assert h["l7"] == {"type": "REQUEST", "dns": {"query": "evil.org.",
                                                  "observation_source": "proxy",
                                                  "qtypes": ["A"]}}
    assert h["Summary"] == "DNS Query evil.org. A"


def test_audited_flow_json() -> None:
    flow = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS, time_ns=T0,
                         node_name=NODE, drop_reason=DropReason.POLICY_DENIED, audited=True)
    f = to_json_dict(flow)["flow"]
    assert f["verdict"] == "AUDIT"
    # Audit mode let the packet through: no drop reason, policy-verdict event, no match.
    assert "drop_reason" not in f and "drop_reason_desc" not in f
    assert f["event_type"] == {"type": 5}
    assert "policy_match_type" not in f
    assert f["is_reply"] is False


def test_policy_verdict_allowed_and_redirected() -> None:
    allowed = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                            time_ns=T0, node_name=NODE, match_type=MatchType.L3_L4,
                            policies=[("CiliumNetworkPolicy", "shop", "api")], revision=9)
    f = to_json_dict(allowed)["flow"]
    assert f["verdict"] == "FORWARDED"
    assert f["policy_match_type"] == 2  # uint32 in the proto: a number, not a name
    assert f["ingress_allowed_by"][0]["revision"] == "9"
    redirected = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                               time_ns=T0, node_name=NODE, match_type=MatchType.L4_ONLY,
                               proxy_port=15001)
    g = to_json_dict(redirected)["flow"]
    assert (g["verdict"], g["proxy_port"], g["policy_match_type"]) == ("REDIRECTED", 15001, 3)


def test_kafka_flow_json() -> None:
    flow = flow_from_l7_kafka(HTTP_CONN, api_key="produce", topic="orders", api_version=7,
                              correlation_id=12, l7_type=L7FlowType.RESPONSE, error_code=29,
                              verdict=Verdict.DROPPED, time_ns=T0, node_name=NODE)
    f = to_json_dict(flow)["flow"]
    assert f["l7"]["kafka"] == {"error_code": 29, "api_version": 7, "api_key": "produce",
                                "correlation_id": 12, "topic": "orders"}
    assert f["Summary"] == ("Kafka response produce correlation id 12 topic 'orders' "
                            "return code 29")


def test_trace_flow_observation_point_and_subtype() -> None:
    flow = flow_from_l34(SYN, event="trace", direction=Direction.INGRESS, time_ns=T0,
                         node_name=NODE, observation_point=TraceObservationPoint.TO_ENDPOINT,
                         is_reply=False)
    f = to_json_dict(flow)["flow"]
    # TO_ENDPOINT is 101 in the proto but sub-type 0 on the wire, which protojson omits.
    assert f["event_type"] == {"type": 4}
    assert f["trace_observation_point"] == "TO_ENDPOINT"
    proxy = flow_from_l34(SYN, event="trace", direction=Direction.INGRESS, time_ns=T0,
                          node_name=NODE, observation_point=TraceObservationPoint.TO_PROXY)
    assert to_json_dict(proxy)["flow"]["event_type"] == {"type": 4, "sub_type": 1}


def test_timestamp_digits_follow_protojson() -> None:
    base = parse_timestamp("2026-05-01T10:00:00Z")
    assert format_timestamp(base) == "2026-05-01T10:00:00Z"
    assert format_timestamp(base + 120_000_000) == "2026-05-01T10:00:00.120Z"
    assert format_timestamp(base + 123_400_000) == "2026-05-01T10:00:00.123400Z"
    assert format_timestamp(base + 1) == "2026-05-01T10:00:00.000000001Z"
    assert parse_timestamp("2026-05-01T12:00:00.5+02:00") == base + 500_000_000


def test_dumps_escapes_like_go_json_encoder() -> None:
    flow = Flow(time_ns=T0, l7=Layer7(L7FlowType.REQUEST, 0, HTTP(url="http://a/?x=<1>&y")))
    text = dumps(to_json_dict(flow))
    assert "\\u003c1\\u003e\\u0026y" in text
    assert " " not in text  # compact
    assert json.loads(text)["flow"]["l7"]["http"]["url"] == "http://a/?x=<1>&y"


def test_message_present_but_empty_is_an_empty_object() -> None:
    f = to_json_dict(Flow(time_ns=T0, source=Endpoint(), l4=TCP(1, 2, TCPFlags())))["flow"]
    assert f["source"] == {}
    assert f["l4"] == {"TCP": {"source_port": 1, "destination_port": 2, "flags": {}}}


def test_from_json_reads_hubble_lines() -> None:
    line = ('{"flow":{"time":"2026-05-01T10:00:00.123Z","verdict":"DROPPED","drop_reason":133,'
            '"IP":{"source":"10.0.1.5","destination":"10.0.2.7","ipVersion":"IPv4"},'
            '"l4":{"TCP":{"source_port":40112,"destination_port":8080,"flags":{"SYN":true}}},'
            '"source":{"ID":1211,"identity":48213,"namespace":"shop","labels":["k8s:app=client"],'
            '"pod_name":"client-7d9"},"Type":"L3_L4","node_name":"c1/node-a",'
            '"event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS",'
            '"drop_reason_desc":"POLICY_DENIED","is_reply":false,"Summary":"TCP Flags: SYN",'
            '"some_future_field":{"x":1}},"node_name":"c1/node-a",'
            '"time":"2026-05-01T10:00:00.123Z"}')
    flow = from_json_dict(json.loads(line))
    assert flow.time_ns == T0
    assert flow.verdict == Verdict.DROPPED and flow.drop_reason == 133
    assert flow.l4 == TCP(40112, 8080, TCPFlags(SYN=True))
    assert flow.source is not None and flow.source.pod_name == "client-7d9"
    assert flow.is_reply is False
    assert flow.type == FlowType.L3_L4


# --- round trip ------------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
u64 = st.integers(0, 2**64 - 1)
words = st.text(max_size=12)
word_lists = st.lists(words, max_size=3).map(tuple)


def _opt(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


endpoints = st.builds(Endpoint, id=u32, identity=u32, cluster_name=words, namespace=words,
                      labels=word_lists, pod_name=words,
                      workloads=st.lists(st.builds(Workload, name=words, kind=words),
                                         max_size=2).map(tuple))
tcp_flags = st.builds(TCPFlags, **{n: st.booleans() for n in
                                   ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")})
l4s = st.one_of(
    st.builds(TCP, source_port=u32, destination_port=u32, flags=_opt(tcp_flags)),
    st.builds(UDP, source_port=u32, destination_port=u32),
    st.builds(SCTP, source_port=u32, destination_port=u32),
    st.builds(ICMPv4, type=u32, code=u32), st.builds(ICMPv6, type=u32, code=u32))
records = st.one_of(
    st.builds(HTTP, code=u32, method=words, url=words, protocol=words,
              headers=st.lists(st.builds(HTTPHeader, key=words, value=words),
                               max_size=2).map(tuple)),
    st.builds(DNS, query=words, ips=word_lists, ttl=u32, cnames=word_lists,
              observation_source=words, rcode=u32, qtypes=word_lists, rrtypes=word_lists),
    st.builds(Kafka, error_code=i32, api_version=i32, api_key=words, correlation_id=i32,
              topic=words))
policies = st.lists(st.builds(Policy, name=words, namespace=words, labels=word_lists,
                              revision=u64, kind=words), max_size=2).map(tuple)

flows = st.builds(
    Flow,
    time_ns=st.integers(0, 253402300799 * 10**9 + 999_999_999),
    uuid=words, verdict=st.sampled_from(Verdict), drop_reason=u32,
    auth_type=st.sampled_from(AuthType),
    ethernet=_opt(st.builds(Ethernet, source=words, destination=words)),
    ip=_opt(st.builds(IP, source=words, source_xlated=words, destination=words,
                      ip_version=st.sampled_from(IPVersion), encrypted=st.booleans())),
    l4=_opt(l4s), source=_opt(endpoints), destination=_opt(endpoints),
    type=st.sampled_from(FlowType), node_name=words, node_labels=word_lists,
    source_names=word_lists, destination_names=word_lists,
    l7=_opt(st.builds(Layer7, type=st.sampled_from(L7FlowType), latency_ns=u64,
                      record=_opt(records))),
    event_type=_opt(st.builds(EventType, type=i32, sub_type=i32)),
    source_service=_opt(st.builds(Service, name=words, namespace=words)),
    destination_service=_opt(st.builds(Service, name=words, namespace=words)),
    traffic_direction=st.sampled_from(TrafficDirection), policy_match_type=u32,
    trace_observation_point=st.sampled_from(TraceObservationPoint),
    trace_reason=st.sampled_from(TraceReason), is_reply=_opt(st.booleans()),
    proxy_port=u32, summary=words, egress_allowed_by=policies, ingress_allowed_by=policies,
    egress_denied_by=policies, ingress_denied_by=policies, policy_log=word_lists,
)


@settings(max_examples=300, deadline=None)
@given(flows)
def test_json_round_trip(flow: Flow) -> None:
    text = dumps(to_json_dict(flow))
    assert from_json_dict(json.loads(text)) == flow
    assert _in_declaration_order(json.loads(text)["flow"])


def test_sample_endpoints_are_the_reference_ones() -> None:
    # Guards the fixtures: the JSON expectations above are written against these values.
    assert CLIENT.identity == 48213 and API.pod_name == "api-0"


# Reference §4.3: the policy-relevant `drop_reason_desc` names and their codes.
REFERENCE_DROP_REASONS = {
    133: "POLICY_DENIED", 181: "POLICY_DENY", 189: "AUTH_REQUIRED",
    157: "IP_FRAGMENTATION_NOT_SUPPORTED", 155: "CT_MAP_INSERTION_FAILED",
    171: "INVALID_IDENTITY", 172: "UNKNOWN_SENDER", 195: "UNENCRYPTED_TRAFFIC",
    180: "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL", 203: "DROP_EP_NOT_READY",
    202: "DROP_HOST_NOT_READY", 132: "INVALID_SOURCE_IP", 151: "STALE_OR_UNROUTABLE_IP",
    158: "SERVICE_BACKEND_NOT_FOUND",
}


def test_drop_reason_desc_names_match_reference() -> None:
    for code, name in REFERENCE_DROP_REASONS.items():
        f = to_json_dict(Flow(time_ns=T0, verdict=Verdict.DROPPED, drop_reason=code))["flow"]
        assert (f["drop_reason"], f["drop_reason_desc"]) == (code, name)
