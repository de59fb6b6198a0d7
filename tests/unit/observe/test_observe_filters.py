"""`hubble observe` filter flags against hand-built flows (reference §4.5, §3.2).

Each case names the flows a flag combination must select out of a fixed set; the set is
written from the flag semantics, not from running the code.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from observe_fixtures import API, CLIENT, DNS_CONN, HTTP_CONN, NODE, SYN, T0, WORLD

from netstrata.datapath.drop_reasons import DropReason
from netstrata.labels import Requirement
from netstrata.observe.builders import Packet, flow_from_l7_dns, flow_from_l7_http, flow_from_l34
from netstrata.observe.filters import (
    EventTypeFilter,
    FlowFilter,
    build_filters,
    filter_from_json_dict,
    filter_to_json_dict,
    matches,
    parse_label_selector,
    parse_time,
)
from netstrata.observe.flow import (
    IP,
    Endpoint,
    Flow,
    IPVersion,
    L7FlowType,
    Service,
    TCPFlags,
    TraceObservationPoint,
    Verdict,
    Workload,
)
from netstrata.policy.types import Direction, MatchType, Proto

S = 1_000_000_000
WEB = Endpoint(id=9, identity=60001, cluster_name="c2", namespace="default",
               labels=("k8s:app=web",), pod_name="web-1",
               workloads=(Workload(name="web", kind="Deployment"),))
HOSTEP = Endpoint(identity=1, labels=("reserved:host",))

_world_in = flow_from_l34(
    Packet("1.1.1.1", "10.1.0.9", Proto.TCP, 5555, 80, TCPFlags(ACK=True), source=WORLD,
           destination=WEB),
    event="trace", direction=Direction.INGRESS, time_ns=T0 + 6 * S, node_name="c2/node-x",
    observation_point=TraceObservationPoint.TO_ENDPOINT, is_reply=False, uuid="u-world")
_v6 = flow_from_l34(
    Packet("fd00::1", "fd00::2", Proto.UDP, 1000, 2000, source=HOSTEP, destination=WEB),
    event="trace", direction=Direction.INGRESS, time_ns=T0 + 7 * S, node_name="c2/node-x",
    observation_point=TraceObservationPoint.TO_STACK, is_reply=False, uuid="u-v6")

FLOWS: dict[str, Flow] = {
    "drop": flow_from_l34(SYN, event="drop", direction=Direction.INGRESS, time_ns=T0,
                          node_name=NODE, drop_reason=DropReason.POLICY_DENIED, uuid="u-drop"),
    "egress-deny": flow_from_l34(
        Packet("10.0.1.5", "1.1.1.1", Proto.TCP, 40200, 443, TCPFlags(SYN=True), source=CLIENT,
               destination=WORLD, destination_names=("one.one.one.one",)),
        event="drop", direction=Direction.EGRESS, time_ns=T0 + S, node_name="c1/node-b",
        drop_reason=DropReason.POLICY_DENY, uuid="u-egress"),
    "pv": flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                        time_ns=T0 + 2 * S, node_name=NODE, match_type=MatchType.L3_L4,
                        uuid="u-pv"),
    "http": flow_from_l7_http(HTTP_CONN, method="GET", url="http://api.shop:8080/public?x=1",
                              headers=[("X-Token", "42")], time_ns=T0 + 3 * S, node_name=NODE,
                              uuid="u-http"),
    "http503": flow_from_l7_http(HTTP_CONN, method="POST", url="http://api.shop:8080/orders",
                                 l7_type=L7FlowType.RESPONSE, code=503, time_ns=T0 + 4 * S,
                                 node_name=NODE, uuid="u-503"),
    "dns": flow_from_l7_dns(DNS_CONN, query="cilium.io", direction=Direction.EGRESS,
                            time_ns=T0 + 5 * S, node_name="node-c", uuid="u-dns"),
    "world-in": replace(_world_in, destination_service=Service("web", "default")),
    "v6": replace(_v6, ip=IP("fd00::1", "", "fd00::2", IPVersion.IPv6, encrypted=True),
                  node_labels=("kubernetes.io/hostname=node-x",)),
    "icmp": flow_from_l34(
        Packet("10.0.1.5", "10.0.2.7", Proto.ICMP, icmp_type=8, source=CLIENT, destination=API),
        event="policy-verdict", direction=Direction.EGRESS, time_ns=T0 + 8 * S,
        node_name="c1/node-b", drop_reason=DropReason.POLICY_DENIED, uuid="u-icmp"),
}
ALL = set(FLOWS)
CLIENT_SIDE = {"drop", "egress-deny", "pv", "http", "http503", "dns", "icmp"}
TO_API = {"drop", "pv", "http", "icmp"}
NOW = T0 + 5 * S + S // 2


def selected(argv: list[str]) -> set[str]:
    allow, deny = build_filters(argv, now_ns=NOW)
    return {name for name, flow in FLOWS.items() if matches(flow, allow, deny)}


CASES: list[tuple[list[str], set[str]]] = [
    ([], ALL),
    # pods: name prefix, namespace defaults to `default`, undirected = source OR destination
    (["--pod", "shop/client"], CLIENT_SIDE),
    (["--pod", "client"], set()),
    (["--pod", "web"], {"world-in", "v6"}),
    (["--from-pod", "shop/api"], {"http503"}),
    (["--to-pod", "shop/api-"], TO_API),
    (["--pod", "shop/client", "--pod", "default/web"], CLIENT_SIDE | {"world-in", "v6"}),
    # namespaces
    (["-n", "kube-system"], {"dns"}),
    (["--namespace=kube-system"], {"dns"}),
    (["--from-namespace", "default"], set()),
    (["--to-namespace", "default"], {"world-in", "v6"}),
    (["-A"], ALL),
    (["--pod", "api", "-A"], TO_API | {"http503"}),
    # labels as selectors
    (["--label", "k8s:app=api"], TO_API | {"http503"}),
    (["-l", "k8s:app=api"], TO_API | {"http503"}),
    (["--from-label", "reserved:world"], {"world-in"}),
    (["--to-label", "k8s:app in (api, web)"], TO_API | {"world-in", "v6"}),
    (["--label", "!k8s:app"], {"world-in", "v6", "egress-deny", "dns"}),
    (["--from-label", "app=client"], CLIENT_SIDE - {"http503"}),
    (["--from-label", "app!=client"], {"http503", "world-in", "v6"}),
    # identities: numeric or reserved name
    (["--identity", "world"], {"egress-deny", "world-in"}),
    (["--identity", "1"], {"v6"}),
    (["--from-identity", "48213"], CLIENT_SIDE - {"http503"}),
    (["--to-identity", "51007"], TO_API),
    (["--to-identity", "0xC73F"], TO_API),
    # IPs and CIDRs
    (["--ip", "10.0.2.7"], TO_API | {"http503"}),
    (["--from-ip", "10.0.0.0/16"], CLIENT_SIDE),
    (["--to-ip", "1.1.1.0/24"], {"egress-deny"}),
    (["--ip", "fd00::/64"], {"v6"}),
    # ports
    (["--port", "8080"], TO_API - {"icmp"} | {"http503"}),
    (["--to-port", "53"], {"dns"}),
    (["--from-port", "5555"], {"world-in"}),
    # protocols
    (["--protocol", "udp"], {"dns", "v6"}),
    (["--protocol", "TCP"], {"drop", "egress-deny", "pv", "http", "http503", "world-in"}),
    (["--protocol", "icmp"], {"icmp"}),
    (["--protocol", "icmpv6"], set()),
    (["--protocol", "http"], {"http", "http503"}),
    (["--protocol", "dns"], {"dns"}),
    (["--protocol", "kafka"], set()),
    (["--tcp-flags", "syn"], {"drop", "egress-deny", "pv"}),
    (["--tcp-flags", "ack"], {"world-in"}),
    (["--tcp-flags", "syn,ack"], set()),
    (["--tcp-flags", "syn", "--tcp-flags", "ack"], {"drop", "egress-deny", "pv", "world-in"}),
    # verdicts and drop reasons
    (["--verdict", "DROPPED"], {"drop", "egress-deny", "icmp"}),
    (["--verdict", "DROPPED", "--verdict", "TRACED"], {"drop", "egress-deny", "icmp"}),
    (["--verdict", "FORWARDED"], {"pv", "http", "http503", "dns", "world-in", "v6"}),
    (["--drop-reason-desc", "POLICY_DENY"], {"egress-deny"}),
    (["--drop-reason-desc", "POLICY_DENIED"], {"drop", "icmp"}),
    # event types
    (["--type", "drop"], {"drop", "egress-deny"}),
    (["-t", "policy-verdict"], {"pv", "icmp"}),
    (["--type", "trace"], {"world-in", "v6"}),
    (["--type", "trace:to-endpoint"], {"world-in"}),
    (["--type", "trace:to-stack"], {"v6"}),
    (["--type", "trace:3"], {"v6"}),
    (["--type", "l7"], {"http", "http503", "dns"}),
    (["--type", "129"], {"http", "http503", "dns"}),
    (["--type", "drop:181"], {"egress-deny"}),
    (["--type", "drop", "--type", "l7"], {"drop", "egress-deny", "http", "http503", "dns"}),
    # direction
    (["--traffic-direction", "egress"], {"egress-deny", "dns", "icmp"}),
    (["--traffic-direction", "INGRESS"], ALL - {"egress-deny", "dns", "icmp"}),
    # HTTP
    (["--http-method", "get"], {"http"}),
    (["--http-method", "POST"], {"http503"}),
    (["--http-path", "^/orders$"], {"http503"}),
    (["--http-path", "^/public$"], {"http"}),  # the path excludes the query string
    (["--http-url", r"x=1$"], {"http"}),
    (["--http-status", "503"], {"http503"}),
    (["--http-status", "5+"], {"http503"}),
    (["--http-status", "50+"], {"http503"}),
    (["--http-status", "2+"], set()),
    (["--http-header", "X-Token:42"], {"http"}),
    (["--http-header", "X-Token:41"], set()),
    (["--type", "l7", "--http-method", "GET"], {"http"}),
    # FQDNs with wildcards
    (["--fqdn", "*.one.one"], {"egress-deny"}),
    (["--to-fqdn", "one.one.one.one."], {"egress-deny"}),
    (["--to-fqdn", "*.cilium.io"], set()),
    (["--from-fqdn", "one.one.one.one"], set()),
    # nodes and clusters
    (["--node-name", "c1/node-a"], {"drop", "pv", "http", "http503"}),
    (["--node-name", "c1/*"], CLIENT_SIDE - {"dns"}),
    (["--node-name", "node-c"], {"dns"}),
    (["--node-name", "default/node-c"], {"dns"}),
    (["--node-name", "node-*"], ALL),
    (["--node-label", "kubernetes.io/hostname=node-x"], {"v6"}),
    (["--cluster", "c2"], {"world-in", "v6"}),
    (["--from-cluster", "c1"], CLIENT_SIDE),
    (["--to-cluster", "c1"], TO_API | {"http503"}),
    # uuid, time window
    (["--uuid", "u-drop"], {"drop"}),
    (["--uuid", "u-drop", "--uuid", "u-v6"], {"drop", "v6"}),
    (["--since", "2026-05-01T10:00:03.123Z", "--until", "2026-05-01T10:00:05.123Z"],
     {"http", "http503", "dns"}),
    (["--since", "3s"], {"http", "http503", "dns", "world-in", "v6", "icmp"}),
    (["--until", "2026-05-01T10:00:01.123Z"], {"drop", "egress-deny"}),
    (["--since", "2026-05-01T10:00:03.123Z", "--verdict", "DROPPED"], {"icmp"}),
    # IP version, encryption
    (["-6"], {"v6"}),
    (["--ip-version", "v6"], {"v6"}),
    (["-4"], ALL - {"v6"}),
    (["--encrypted"], {"v6"}),
    (["--unencrypted"], ALL - {"v6"}),
    # services, workloads
    (["--service", "web"], {"world-in"}),
    (["--to-service", "default/web"], {"world-in"}),
    (["--from-service", "default/web"], set()),
    (["--workload", "Deployment/web"], {"world-in", "v6"}),
    (["--to-workload", "web"], {"world-in", "v6"}),
    (["--from-workload", "web"], set()),
    # different flags AND, `--not` moves the next flag to the denylist
    (["--from-pod", "shop/client", "--verdict", "DROPPED"], {"drop", "egress-deny", "icmp"}),
    (["--from-pod", "shop/client", "--to-pod", "shop/api"], TO_API),
    (["--not", "--verdict", "FORWARDED"], {"drop", "egress-deny", "icmp"}),
    (["--pod", "shop/api", "--not", "--type", "l7"], {"drop", "pv", "icmp"}),
    # two `--not` flags fill one denylist, so they AND: deny (client side AND dropped)
    (["--not", "--pod", "shop/client", "--not", "--verdict", "DROPPED"],
     {"pv", "http", "http503", "dns", "world-in", "v6"}),
    # raw allowlist / denylist
    (["--allowlist", '{"source_pod":["shop/client"]}'], CLIENT_SIDE - {"http503"}),
    (["--allowlist", '{"sourcePod":["shop/client"]} {"destination_ip":["1.1.1.1"]}'],
     CLIENT_SIDE - {"http503"}),
    (["--from-pod", "shop/client", "--denylist", '{"verdict":["FORWARDED"]}'],
     {"drop", "egress-deny", "icmp"}),
]


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=lambda x: " ".join(x)
                         if isinstance(x, list) else None)
def test_filter_selects(argv: list[str], expected: set[str]) -> None:
    assert selected(argv) == expected


def test_undirected_flag_builds_left_and_right() -> None:
    allow, deny = build_filters(["--pod", "shop/api", "--verdict", "DROPPED"])
    assert allow == [
        FlowFilter(source_pod=("shop/api",), verdict=(Verdict.DROPPED,)),
        FlowFilter(destination_pod=("shop/api",), verdict=(Verdict.DROPPED,)),
    ]
    assert deny == []


def test_directed_flags_collapse_to_one_filter() -> None:
    allow, _ = build_filters(["--from-pod", "a", "--to-ip", "1.2.3.4"])
    assert allow == [FlowFilter(source_pod=("a",), destination_ip=("1.2.3.4",))]


def test_namespace_flag_qualifies_pod_filters() -> None:
    allow, _ = build_filters(["--pod", "api", "-n", "shop"])
    assert allow == [FlowFilter(source_pod=("shop/api",)),
                     FlowFilter(destination_pod=("shop/api",))]
    allow, _ = build_filters(["-n", "shop"])
    assert allow == [FlowFilter(source_pod=("shop/",)), FlowFilter(destination_pod=("shop/",))]


def test_type_subtype_parsing() -> None:
    allow, _ = build_filters(["-t", "trace:to-proxy"])
    assert allow == [FlowFilter(event_type=(EventTypeFilter(4, True, 1),))]


@pytest.mark.parametrize(("argv", "message"), [
    (["--not", "--not", "--verdict", "DROPPED"], "consecutive --not"),
    (["--verdict", "DROPPED", "--not"], "trailing --not"),
    (["--port", "80", "--to-port", "80"], "cannot be combined"),
    (["--label", "a=b", "--from-label", "c=d"], "cannot be combined"),
    (["--from-pod", "a/x", "-n", "b"], "cannot be combined"),
    (["--pod", "a/x", "-n", "b"], "namespace conflict"),
    (["--encrypted", "--unencrypted"], "cannot be combined"),
    (["--pod", "x", "--ip", "1.1.1.1"], "cannot be combined"),
    (["--type", "drop", "--http-method", "GET"], "requires the event type filter"),
    (["--port", "http"], "invalid port"),
    (["--port", "70000"], "invalid port"),
    (["--ip", "300.1.1.1"], "invalid IP address"),
    (["--ip", "10.0.0.0/33"], "invalid IP prefix"),
    (["--verdict", "dropped"], "invalid --verdict value"),
    (["--drop-reason-desc", "NOPE"], "invalid --drop-reason-desc"),
    (["--http-status", "600"], "invalid status code"),
    (["--http-path", "("], "("),
    (["--http-header", "novalue"], "expected name:value"),
    (["--identity", "wrld"], "invalid security identity"),
    (["--type", "bogus"], "unable to parse type"),
    (["--tcp-flags", "syn,foo"], "unknown tcp flag"),
    (["--traffic-direction", "sideways"], "invalid traffic direction"),
    (["--protocol", "quic"], "unknown protocol"),
    (["--fqdn", "bad!name"], "invalid rune"),
    (["--cluster", ""], "must not be empty"),
    (["--allowlist", '{"source_pod": "x"}'], "must be a list"),
    (["--allowlist", '{"nope": []}'], "unknown FlowFilter field"),
    (["--output", "json"], "unknown filter flag"),
    (["--from-pod"], "needs an argument"),
    (["--since", "5m"], "needs the current time"),
])
def test_rejected_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_filters(argv, now_ns=None if argv[:1] == ["--since"] else NOW)


def test_label_selector_syntax() -> None:
    sel = parse_label_selector("k8s:app=web, tier notin (db,cache), !legacy, team, x==1")
    assert set(sel.requirements) == {
        Requirement("k8s", "app", "In", ("web",)),
        Requirement("any", "tier", "NotIn", ("cache", "db")),
        Requirement("any", "legacy", "DoesNotExist"),
        Requirement("any", "team", "Exists"),
        Requirement("any", "x", "In", ("1",)),
    }


def test_filter_json_round_trip() -> None:
    ff = FlowFilter(source_pod=("shop/",), verdict=(Verdict.DROPPED,),
                    drop_reason_desc=(int(DropReason.POLICY_DENIED),),
                    event_type=(EventTypeFilter(4, True, 0),), source_identity=(2,),
                    http_header=(), tcp_flags=(TCPFlags(SYN=True),))
    data = filter_to_json_dict(ff)
    assert data == {"source_pod": ["shop/"], "verdict": ["DROPPED"],
                    "drop_reason_desc": ["POLICY_DENIED"],
                    "event_type": [{"type": 4, "match_sub_type": True}],
                    "source_identity": [2], "tcp_flags": [{"SYN": True}]}
    assert filter_from_json_dict(data) == ff


def test_time_formats_hubble_accepts() -> None:
    base = T0 - 123_000_000  # 2026-05-01T10:00:00Z
    assert parse_time("2026-05-01T10:00:00Z", 0) == base
    assert parse_time("2026-05-01T10:00:00.123456789Z", 0) == base + 123_456_789
    assert parse_time("2026-05-01", 0) == base - 10 * 3600 * S
    assert parse_time("2026-05-01T10Z", 0) == base
    assert parse_time("2026-05-01T12:00+02:00", 0) == base
    assert parse_time("Fri, 01 May 2026 10:00:00 +0000", 0) == base
    assert parse_time("1h30m", base) == base - 5400 * S
    assert parse_time("1.5s", base) == base - 1500 * 1_000_000
    with pytest.raises(ValueError):
        parse_time("yesterday", base)
