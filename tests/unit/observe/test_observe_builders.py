"""Decisions -> flows: verdicts, event types, summaries and policy lists as Cilium fills them."""

from __future__ import annotations

import pytest
from observe_fixtures import API, CLIENT, HTTP_CONN, NODE, SYN, T0

from netstrata.datapath.drop_reasons import DropReason
from netstrata.datapath.reference._lookup import policy_lookup
from netstrata.observe.builders import (
    Packet,
    flow_from_l7_http,
    flow_from_l34,
    l34_summary,
    policy_from_ref,
)
from netstrata.observe.flow import (
    TCP,
    ICMPv4,
    ICMPv6,
    Policy,
    TCPFlags,
    TraceObservationPoint,
    TrafficDirection,
    Verdict,
)
from netstrata.observe.render import render_compact
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey, MatchType, Proto


def test_summaries() -> None:
    # Cilium lists flags SYN, ACK, RST, FIN, PSH, ... whatever their bit order.
    assert l34_summary(TCP(1, 2, TCPFlags(FIN=True, SYN=True, ACK=True))) == (
        "TCP Flags: SYN, ACK, FIN")
    assert l34_summary(ICMPv4(8, 0)) == "ICMPv4 EchoRequest"
    assert l34_summary(ICMPv4(3, 3)) == "ICMPv4 DestinationUnreachable(Port)"
    assert l34_summary(ICMPv4(0, 1)) == "ICMPv4 EchoReply(Code: 1)"
    assert l34_summary(ICMPv4(200, 1)) == "ICMPv4 200(1)"
    assert l34_summary(ICMPv6(128, 0)) == "ICMPv6 EchoRequest"
    udp = flow_from_l34(Packet("fd00::1", "fd00::2", Proto.UDP, 1, 53), event="trace",
                        direction=Direction.EGRESS, time_ns=T0, node_name=NODE)
    assert udp.summary == "UDP"
    assert udp.ip is not None and udp.ip.ip_version.name == "IPv6"


def test_drop_needs_a_reason_and_l7_rejects_trace_verdicts() -> None:
    with pytest.raises(ValueError, match="drop reason"):
        flow_from_l34(SYN, event="drop", direction=Direction.INGRESS, time_ns=T0, node_name=NODE)
    with pytest.raises(ValueError, match="TRACED"):
        flow_from_l7_http(HTTP_CONN, method="GET", url="/", verdict=Verdict.TRACED, time_ns=T0,
                          node_name=NODE)


def test_an_audited_l7_request_names_the_denying_side() -> None:
    # L7 audit is netstrata's extension: the rule set that would deny goes to *_denied_by.
    f = flow_from_l7_http(HTTP_CONN, method="GET", url="/", verdict=Verdict.AUDIT, time_ns=T0,
                          node_name=NODE, policies=[("CiliumNetworkPolicy", "ns", "web")])
    assert f.verdict == Verdict.AUDIT
    assert [p.name for p in f.ingress_denied_by] == ["web"] and not f.ingress_allowed_by


def test_trace_subtypes_and_reply() -> None:
    for point, sub in ((TraceObservationPoint.TO_ENDPOINT, 0), (TraceObservationPoint.TO_PROXY, 1),
                       (TraceObservationPoint.FROM_ENDPOINT, 5),
                       (TraceObservationPoint.TO_NETWORK, 11)):
        f = flow_from_l34(SYN, event="trace", direction=Direction.EGRESS, time_ns=T0,
                          node_name=NODE, observation_point=point, is_reply=True)
        assert f.event_type is not None and f.event_type.sub_type == sub
        assert f.is_reply is True and f.verdict == Verdict.FORWARDED


def test_policy_refs_become_direction_lists() -> None:
    cnp = ("CiliumNetworkPolicy", "shop", "api")
    ccnp = ("CiliumClusterwideNetworkPolicy", "", "base")
    f = flow_from_l34(SYN, event="policy-verdict", direction=Direction.EGRESS, time_ns=T0,
                      node_name=NODE, policies=[cnp, ccnp], revision=3)
    assert [p.name for p in f.egress_allowed_by] == ["api", "base"]
    assert f.ingress_allowed_by == () and f.egress_denied_by == ()
    assert policy_from_ref(ccnp).labels == (
        "k8s:io.cilium.k8s.policy.derived-from=CiliumClusterwideNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=base")
    ready = Policy(name="x", kind="NetworkPolicy")
    assert policy_from_ref(ready) is ready
    denied = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS, time_ns=T0,
                           node_name=NODE, drop_reason=DropReason.POLICY_DENY, policies=[cnp])
    assert [p.name for p in denied.ingress_denied_by] == ["api"]
    assert denied.is_reply is None


def test_l7_response_swaps_sides() -> None:
    f = flow_from_l7_http(HTTP_CONN, method="GET", url="http://x/", time_ns=T0, node_name=NODE,
                          direction=Direction.EGRESS)
    assert (f.source, f.destination) == (CLIENT, API)
    assert f.traffic_direction == TrafficDirection.EGRESS


def test_reference_lookup_result_to_flow() -> None:
    """The path the reference datapath takes: lookup -> flow -> the line a user reads."""
    entries = {MapStateKey(Direction.INGRESS, CLIENT.identity, Proto.TCP, 8080, 16):
               MapStateEntry()}
    hit = policy_lookup(entries, Direction.INGRESS, CLIENT.identity, Proto.TCP, 8080)
    assert hit.allowed and hit.key is not None
    allowed = flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                            time_ns=T0, node_name=NODE, match_type=hit.key.match_type())
    assert allowed.policy_match_type == MatchType.L3_L4
    assert "policy-verdict:L3-L4 INGRESS ALLOWED" in render_compact(allowed)
    miss = policy_lookup(entries, Direction.INGRESS, CLIENT.identity, Proto.TCP, 9090)
    assert miss.drop_reason == DropReason.POLICY_DENIED
    dropped = flow_from_l34(SYN, event="drop", direction=Direction.INGRESS, time_ns=T0,
                            node_name=NODE, drop_reason=miss.drop_reason)
    assert dropped.drop_reason_desc == "POLICY_DENIED"
    assert " Policy denied DROPPED " in render_compact(dropped)
