"""Real traffic between two pod namespaces through the attached tc programs.

Pod a (endpoint 1, identity 1001) and pod b (endpoint 2, identity 1002) hang off one node
namespace; a packet from a to b crosses a's from_pod program (a's egress policy) and b's
to_pod program (b's ingress policy). Expectations come from reference §3 and §4.3.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from datapathkit import (  # noqa: E402
    EP_A,
    EP_B,
    ICMP,
    ID_A,
    ID_B,
    TCP,
    UDP,
    Pods,
    allow,
    attach_both,
    exchange,
    ping,
    resolved,
    tcp_connect,
    tcp_echo,
    udp_echo,
    wait_events,
)
from datapathkit import echo_server as server  # noqa: E402

from netstrata.datapath.drop_reasons import DropReason  # noqa: E402
from netstrata.datapath.maps import CtState, EventFlag, EventType, FlowEvent, Verdict  # noqa: E402
from netstrata.policy.types import Direction  # noqa: E402

EG, IN = Direction.EGRESS, Direction.INGRESS


def _is_drop(reason: DropReason, endpoint: int) -> Callable[[FlowEvent], bool]:
    return lambda e: (e.type == EventType.DROP and e.drop_reason == reason
                      and e.endpoint_id == endpoint)


def _tcp_path(pods: Pods, port: int = 8080, a_cookie: int = 11, b_cookie: int = 22) -> None:
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, port, cookie=a_cookie)))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, port, cookie=b_cookie)))


def test_allowed_tcp_connects_and_echoes(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    _tcp_path(pods)
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080, b"hello") == b"hello"
    events = wait_events(pods.dp, lambda e: e.type == EventType.POLICY_VERDICT and e.cookie == 22)
    verdicts = {(e.endpoint_id, e.direction, e.cookie) for e in events
                if e.type == EventType.POLICY_VERDICT and e.verdict == Verdict.FORWARDED}
    assert verdicts >= {(EP_A, EG, 11), (EP_B, IN, 22)}


def test_no_entry_drops_the_syn_with_policy_denied(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080)))  # a's egress: nothing
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        assert tcp_connect(pods.a.pod_netns, pods.b.ip, 8080) is None
    events = wait_events(pods.dp, _is_drop(DropReason.POLICY_DENIED, EP_A))
    drop = next(e for e in events if _is_drop(DropReason.POLICY_DENIED, EP_A)(e))
    assert (drop.direction, drop.src_identity, drop.dst_identity) == (EG, ID_A, ID_B)
    assert (drop.proto, drop.dport_be, drop.verdict) == (TCP, 8080, Verdict.DROPPED)
    assert drop.subtype == DropReason.POLICY_DENIED and drop.lookup_step == 4


def test_ingress_policy_of_the_destination_is_enforced_too(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080)))  # b's ingress: nothing
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        assert tcp_connect(pods.a.pod_netns, pods.b.ip, 8080) is None
    events = wait_events(pods.dp, _is_drop(DropReason.POLICY_DENIED, EP_B))
    drop = next(e for e in events if _is_drop(DropReason.POLICY_DENIED, EP_B)(e))
    assert (drop.direction, drop.src_identity, drop.dst_identity) == (IN, ID_A, ID_B)


def test_deny_beats_a_covering_allow(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    entries = allow(EG, ID_B)  # L3 allow: every port to b ...
    entries |= allow(EG, ID_B, TCP, 8080, deny=True, precedence=255, cookie=99)  # ... but 8080
    pods.dp.apply_policy(resolved(EP_A, ID_A, entries))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A)))
    with server(pods.b.pod_netns, pods.b.ip, 8080), server(pods.b.pod_netns, pods.b.ip, 8081):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) is None
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8081) == b"ping"
    events = wait_events(pods.dp, _is_drop(DropReason.POLICY_DENY, EP_A))
    drop = next(e for e in events if _is_drop(DropReason.POLICY_DENY, EP_A)(e))
    assert (drop.cookie, drop.dport_be, drop.lookup_step) == (99, 8080, 3)


def test_port_range_prefix_entries(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    # 8080-8087 is one aligned block of 8 ports: prefix 13
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080, prefix=13)))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, 0, TCP)))  # any peer, any TCP port
    with server(pods.b.pod_netns, pods.b.ip, 8087), server(pods.b.pod_netns, pods.b.ip, 8088):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8087) == b"ping"
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8088) is None


def test_udp_allowed_and_denied_by_port(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, UDP, 5353)))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, UDP)))
    with server(pods.b.pod_netns, pods.b.ip, 5353, socket.SOCK_DGRAM), \
            server(pods.b.pod_netns, pods.b.ip, 5354, socket.SOCK_DGRAM):
        assert udp_echo(pods.a.pod_netns, pods.b.ip, 5353) == b"ping"
        assert udp_echo(pods.a.pod_netns, pods.b.ip, 5354) is None
    assert wait_events(pods.dp, lambda e: e.type == EventType.DROP and e.dport_be == 5354
                       and e.proto == UDP and e.drop_reason == DropReason.POLICY_DENIED)


def test_icmp_echo_by_type(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, ICMP, 8 << 8, prefix=8)))
    assert not ping(pods.a.pod_netns, pods.b.ip)  # a's egress has no ICMP entry
    drops = wait_events(pods.dp, lambda e: e.type == EventType.DROP and e.proto == ICMP)
    assert any(e.icmp_type == 8 and e.endpoint_id == EP_A for e in drops)
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, ICMP, 8 << 8, prefix=8)))
    assert ping(pods.a.pod_netns, pods.b.ip)  # the echo reply rides conntrack


def test_replies_pass_by_conntrack_with_one_direction_allowed(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    # only a -> b (TCP 8080, UDP): b's egress and a's ingress allow nothing
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080) | allow(IN, ID_A, UDP)))
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080) | allow(EG, ID_B, UDP)))
    with server(pods.b.pod_netns, pods.b.ip, 8080), \
            server(pods.b.pod_netns, pods.b.ip, 5000, socket.SOCK_DGRAM):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) == b"ping"
        assert udp_echo(pods.a.pod_netns, pods.b.ip, 5000) == b"ping"
    replies = wait_events(pods.dp, lambda e: e.type == EventType.TRACE)
    assert any(e.ct_state == CtState.REPLY and e.flags & EventFlag.IS_REPLY for e in replies)
    # ... but b cannot open a connection of its own back to a
    with server(pods.a.pod_netns, pods.a.ip, 9090):
        assert tcp_connect(pods.b.pod_netns, pods.a.ip, 9090) is None
    assert wait_events(pods.dp, _is_drop(DropReason.POLICY_DENIED, EP_B))


def test_removing_an_allow_cuts_an_established_flow(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    _tcp_path(pods)
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        sock = tcp_connect(pods.a.pod_netns, pods.b.ip, 8080)
        assert sock is not None
        with sock:
            assert exchange(sock, b"one") == b"one"
            pods.dp.apply_policy(resolved(EP_A, ID_A, {}, revision=2))
            assert exchange(sock, b"two") is None
    events = wait_events(pods.dp, _is_drop(DropReason.POLICY_DENIED, EP_A))
    assert any(e.ct_state == CtState.ESTABLISHED for e in events
               if _is_drop(DropReason.POLICY_DENIED, EP_A)(e))


def test_audit_mode_allows_and_marks_what_policy_would_drop(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_A, ID_A, {}, audit=True))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080)))
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) == b"ping"
    events = wait_events(pods.dp, lambda e: e.verdict == Verdict.AUDIT)
    audited = next(e for e in events if e.verdict == Verdict.AUDIT)
    assert audited.type == EventType.POLICY_VERDICT and audited.endpoint_id == EP_A
    assert audited.flags & EventFlag.AUDITED and audited.drop_reason == DropReason.POLICY_DENIED
    assert not any(e.type == EventType.DROP for e in events)


def test_redirect_entry_without_a_proxy_listener_fails_closed(pods: Pods) -> None:
    """A redirect entry hands the connection to the node proxy's listener; with no listener
    on the proxy port nothing reaches the server around it (tests/datapath/test_proxy_redirect.py
    covers the proxy side)."""
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080, proxy_port=15001,
                                                    precedence=100)))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080)))
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) is None
    events = wait_events(pods.dp, _is_drop(DropReason.PROXY_LOOKUP_FAILED, EP_A))
    redirected = next(e for e in events if e.verdict == Verdict.REDIRECTED)
    assert redirected.proxy_port == 15001 and redirected.endpoint_id == EP_A
