"""`hubble observe` output shapes (reference §4.5: compact line, arrows, identities, TYPE and
VERDICT columns, `--print-policy-names`, time formats; plus dict, json and table)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from observe_fixtures import DNS_CONN, HOST, HTTP_CONN, NODE, SYN, T0, WORLD

from netstrata.datapath.drop_reasons import DropReason
from netstrata.observe.builders import Packet, flow_from_l7_dns, flow_from_l7_http, flow_from_l34
from netstrata.observe.flow import (
    AuthType,
    Ethernet,
    Flow,
    L7FlowType,
    TCPFlags,
    TraceObservationPoint,
    Verdict,
    from_json_dict,
)
from netstrata.observe.render import (
    Printer,
    RenderOptions,
    format_time,
    render_compact,
    render_flows,
    render_lost_compact,
)
from netstrata.policy.types import Direction, MatchType, Proto

TS = "May  1 10:00:00.123"
CLI = "shop/client-7d9:40112 (ID:48213)"
SRV = "shop/api-0:8080 (ID:51007)"

DROP = flow_from_l34(SYN, event="drop", direction=Direction.INGRESS, time_ns=T0,
                     node_name=NODE, drop_reason=DropReason.POLICY_DENIED)
ALLOWED = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS, time_ns=T0,
                        node_name=NODE, match_type=MatchType.L3_L4,
                        policies=[("CiliumNetworkPolicy", "shop", "api-ingress"),
                                  ("CiliumClusterwideNetworkPolicy", "", "baseline")])


def test_drop_line_unknown_direction_arrow() -> None:
    assert render_compact(DROP) == f"{TS}: {CLI} <> {SRV} Policy denied DROPPED (TCP Flags: SYN)\n"


def test_explicit_deny_drop_type_text() -> None:
    flow = replace(DROP, drop_reason=181, event_type=replace(DROP.event_type, sub_type=181))
    assert "Policy denied by denylist DROPPED" in render_compact(flow)


def test_policy_verdict_allowed_with_and_without_policy_names() -> None:
    assert render_compact(ALLOWED) == (
        f"{TS}: {CLI} -> {SRV} policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)\n")
    named = render_compact(ALLOWED, RenderOptions(print_policy_names=True))
    assert named == (f"{TS}: {CLI} -> {SRV} policy-verdict:L3-L4 INGRESS ALLOWED BY "
                     "api-ingress (CiliumNetworkPolicy), baseline (CiliumClusterwideNetworkPolicy)"
                     " (TCP Flags: SYN)\n")


def test_policy_verdict_denied_and_audited() -> None:
    denied = flow_from_l34(SYN, event="policy-verdict", direction=Direction.EGRESS, time_ns=T0,
                           node_name=NODE, drop_reason=DropReason.POLICY_DENY,
                           match_type=MatchType.L3_ONLY,
                           policies=[("CiliumNetworkPolicy", "shop", "deny-all")])
    assert render_compact(denied, RenderOptions(print_policy_names=True)) == (
        f"{TS}: {CLI} <> {SRV} policy-verdict:L3-Only EGRESS DENIED BY deny-all "
        "(CiliumNetworkPolicy) (TCP Flags: SYN)\n")
    audited = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                            time_ns=T0, node_name=NODE, audited=True,
                            drop_reason=DropReason.POLICY_DENIED)
    assert render_compact(audited) == (
        f"{TS}: {CLI} -> {SRV} policy-verdict:none INGRESS AUDITED (TCP Flags: SYN)\n")


def test_redirected_policy_verdict_reads_allowed() -> None:
    flow = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS, time_ns=T0,
                         node_name=NODE, match_type=MatchType.L4_ONLY, proxy_port=15001)
    assert "policy-verdict:L4-Only INGRESS ALLOWED" in render_compact(flow)


def test_l7_request_and_reply_arrow() -> None:
    req = flow_from_l7_http(HTTP_CONN, method="GET", url="http://api.shop:8080/public",
                            time_ns=T0, node_name=NODE)
    assert render_compact(req) == (
        f"{TS}: {CLI} -> {SRV} http-request FORWARDED (HTTP/1.1 GET http://api.shop:8080/public)\n")
    denied = replace(req, verdict=Verdict.DROPPED)
    assert "http-request DROPPED" in render_compact(denied)
    resp = flow_from_l7_http(HTTP_CONN, method="GET", url="http://api.shop:8080/public",
                             l7_type=L7FlowType.RESPONSE, code=200, latency_ns=3_000_000,
                             time_ns=T0, node_name=NODE)
    # A reply is printed client <- server: sides swapped back, arrow flipped.
    assert render_compact(resp) == (
        f"{TS}: {CLI} <- {SRV} http-response FORWARDED "
        "(HTTP/1.1 200 3ms (GET http://api.shop:8080/public))\n")


def test_dns_type_names_observation_source() -> None:
    flow = flow_from_l7_dns(DNS_CONN, query="cilium.io", time_ns=T0, node_name=NODE,
                            direction=Direction.EGRESS)
    line = render_compact(flow)
    assert " dns-request proxy FORWARDED (DNS Query cilium.io. A)\n" in line
    assert "kube-system/coredns-1:53 (ID:102)" in line


def test_reserved_identities_print_by_name() -> None:
    world_in = flow_from_l34(
        Packet("1.1.1.1", "10.0.2.7", Proto.TCP, 5555, 80, TCPFlags(ACK=True), source=WORLD,
               destination=HOST),
        event="trace", direction=Direction.INGRESS, time_ns=T0, node_name=NODE,
        observation_point=TraceObservationPoint.TO_STACK, is_reply=False)
    assert render_compact(world_in) == (
        f"{TS}: 1.1.1.1:5555 (world) -> 10.0.2.7:80 (host) to-stack FORWARDED (TCP Flags: ACK)\n")
    no_endpoints = replace(world_in, source=None, destination=None)
    assert "(unknown) -> 10.0.2.7:80 (unknown)" in render_compact(no_endpoints)


def test_node_name_numeric_and_ipv6() -> None:
    assert render_compact(DROP, RenderOptions(print_node_name=True)).startswith(
        f"{TS} [c1/node-a]: {CLI} <>")
    assert render_compact(DROP, RenderOptions(ip_translation=False)) == (
        f"{TS}: 10.0.1.5:40112 (ID:48213) <> 10.0.2.7:8080 (ID:51007) Policy denied DROPPED "
        "(TCP Flags: SYN)\n")
    v6 = replace(DROP, ip=replace(DROP.ip, source="fd00::1", destination="fd00::2"),
                 source=None, destination=None)
    assert "[fd00::1]:40112 (unknown) <> [fd00::2]:8080 (unknown)" in render_compact(v6)


def test_icmp_has_no_port_and_auth_suffix() -> None:
    icmp = flow_from_l34(Packet("10.0.1.5", "10.0.2.7", Proto.ICMP, icmp_type=8), event="drop",
                         direction=Direction.EGRESS, time_ns=T0, node_name=NODE,
                         drop_reason=DropReason.POLICY_DENIED)
    line = render_compact(replace(icmp, auth_type=AuthType.SPIRE))
    assert line == (f"{TS}: 10.0.1.5 (unknown) <> 10.0.2.7 (unknown) Policy denied DROPPED "
                    "(ICMPv4 EchoRequest; Auth: SPIRE)\n")


def test_ethernet_only_flow_uses_macs() -> None:
    flow = Flow(time_ns=T0, ethernet=Ethernet("aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"),
                verdict=Verdict.FORWARDED)
    assert render_compact(flow).startswith(
        f"{TS}: aa:bb:cc:00:00:01 (unknown) <> aa:bb:cc:00:00:02 (unknown) UNKNOWN FORWARDED")


def test_terminal_escapes_are_neutralised() -> None:
    line = render_compact(replace(DROP, summary="evil\x1b[2J\rx"))
    assert "\x1b" not in line and "\r" not in line
    assert "(evil^[[2J\\rx)" in line


@pytest.mark.parametrize(("fmt", "text"), [
    ("StampMilli", "May  1 10:00:00.123"),
    ("stampmilli", "May  1 10:00:00.123"),
    ("YearMonthDay", "2026-05-01"),
    ("YearMonthDayHour", "2026-05-01T10Z"),
    ("YearMonthDayHourMinute", "2026-05-01T10:00Z"),
    ("RFC3339", "2026-05-01T10:00:00Z"),
    ("RFC3339Milli", "2026-05-01T10:00:00.123Z"),
    ("RFC3339Micro", "2026-05-01T10:00:00.123456Z"),
    ("RFC3339Nano", "2026-05-01T10:00:00.123456789Z"),
    ("RFC1123Z", "Fri, 01 May 2026 10:00:00 +0000"),
    ("nonsense", "May  1 10:00:00.123"),
])
def test_time_formats(fmt: str, text: str) -> None:
    assert format_time(T0 + 456_789, fmt) == text


def test_go_fraction_layouts_trim_zeros() -> None:
    base = T0 - 123_000_000
    assert format_time(base + 100_000_000, "RFC3339Milli") == "2026-05-01T10:00:00.1Z"
    assert format_time(base, "RFC3339Nano") == "2026-05-01T10:00:00Z"
    assert format_time(base + 11 * 86400 * 10**9, "StampMilli") == "May 12 10:00:00.000"


def test_json_output_is_one_response_per_line() -> None:
    text = render_flows([DROP, ALLOWED], RenderOptions(output="json"))
    lines = text.splitlines()
    assert len(lines) == 2 and text.endswith("\n")
    assert [from_json_dict(json.loads(line)) for line in lines] == [DROP, ALLOWED]
    assert render_flows([DROP], RenderOptions(output="jsonpb")) == text.splitlines(True)[0]


def test_dict_output() -> None:
    assert render_flows([DROP, ALLOWED], RenderOptions(output="dict")) == (
        "  TIMESTAMP: May  1 10:00:00.123\n"
        "     SOURCE: shop/client-7d9:40112\n"
        "DESTINATION: shop/api-0:8080\n"
        "       TYPE: Policy denied\n"
        "    VERDICT: DROPPED\n"
        "    SUMMARY: TCP Flags: SYN\n"
        "------------\n"
        "  TIMESTAMP: May  1 10:00:00.123\n"
        "     SOURCE: shop/client-7d9:40112\n"
        "DESTINATION: shop/api-0:8080\n"
        "       TYPE: policy-verdict:L3-L4 INGRESS\n"
        "    VERDICT: ALLOWED\n"
        "    SUMMARY: TCP Flags: SYN\n")


def test_table_output_columns() -> None:
    # Each column is as wide as its widest cell plus 3 (Go tabwriter, padding 3).
    assert render_flows([DROP, ALLOWED], RenderOptions(output="table")) == (
        "TIMESTAMP             SOURCE                  DESTINATION       "
        "TYPE                           VERDICT   SUMMARY\n"
        "May  1 10:00:00.123   shop/client-7d9:40112   shop/api-0:8080   "
        "Policy denied                  DROPPED   TCP Flags: SYN\n"
        "May  1 10:00:00.123   shop/client-7d9:40112   shop/api-0:8080   "
        "policy-verdict:L3-L4 INGRESS   ALLOWED   TCP Flags: SYN\n")
    assert render_flows([], RenderOptions(output="table")) == ""


def test_printer_holds_table_until_close() -> None:
    printer = Printer(RenderOptions(output="table"))
    assert printer.write(DROP) == ""
    assert printer.close().startswith("TIMESTAMP")
    with pytest.raises(ValueError):
        Printer(RenderOptions(output="yaml"))  # type: ignore[arg-type]


def test_lost_events_line() -> None:
    assert render_lost_compact(5, "HUBBLE_RING_BUFFER", T0) == (
        f"{TS} EVENTS LOST: HUBBLE_RING_BUFFER CPU(0) 5\n")
