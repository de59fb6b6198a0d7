"""Single programs on crafted packets (BPF_PROG_TEST_RUN): parsing, fail-closed drops,
identities from the endpoints map and the ipcache, fragments, conntrack REPLY/RELATED.

Endpoints are registered on the loopback device (ifindex 1) of the test's own namespace, and
every run happens inside that namespace, so `skb->ifindex` matches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces")

from datapathkit import EP_A, EP_B, ID_A, ID_B, SCTP, TCP, UDP, allow, resolved  # noqa: E402

from netstrata.datapath.drop_reasons import DropReason  # noqa: E402
from netstrata.datapath.kernel import KernelDatapath, Program  # noqa: E402
from netstrata.datapath.loader import packets as pk  # noqa: E402
from netstrata.datapath.maps import CtState, EventFlag, EventType, FlowEvent  # noqa: E402
from netstrata.netns import create_netns, delete_netns, in_netns  # noqa: E402
from netstrata.policy.types import Direction  # noqa: E402

OK, SHOT = 0, 2
A, B = "10.1.0.1", "10.1.0.2"
EG, IN = Direction.EGRESS, Direction.INGRESS


@dataclass
class Bench:
    dp: KernelDatapath
    netns: str

    def run(self, program: Program, frame: bytes) -> int:
        with in_netns(self.netns):
            return self.dp.test_run(program, frame)

    def events(self) -> list[FlowEvent]:
        return self.dp.read_events(0)


@pytest.fixture
def bench(tag: str, pin_dir: Path) -> Iterator[Bench]:
    netns = f"nst{tag}-run"
    create_netns(netns)
    try:
        dp = KernelDatapath(pin_dir, netns=netns)
        try:
            dp.register_endpoint(A, EP_A, ID_A, 1, 3)
            dp.register_endpoint(B, EP_B, ID_B, 1, 3)
            yield Bench(dp, netns)
        finally:
            dp.teardown()
    finally:
        delete_netns(netns)


def _drop(events: list[FlowEvent]) -> FlowEvent:
    drops = [e for e in events if e.type == EventType.DROP]
    assert len(drops) == 1, events
    return drops[0]


def test_unknown_source_and_destination_fail_closed(bench: Bench) -> None:
    assert bench.run("from_pod", pk.frame("10.1.0.99", B, TCP, dport=80)) == SHOT
    drop = _drop(bench.events())
    assert (drop.drop_reason, drop.endpoint_id) == (DropReason.INVALID_SOURCE_IP, 0)
    assert bench.run("to_pod", pk.frame(A, "10.1.0.99", TCP, dport=80)) == SHOT
    assert _drop(bench.events()).drop_reason == DropReason.DROP_EP_NOT_READY


def test_a_pod_cannot_send_from_another_interface(bench: Bench) -> None:
    bench.dp.register_endpoint("10.1.0.3", 3, 1003, 7, 3)  # its veth is ifindex 7, not lo
    bench.dp.apply_policy(resolved(3, 1003, allow(EG, 0)))
    assert bench.run("from_pod", pk.frame("10.1.0.3", B, TCP, dport=80)) == SHOT
    assert _drop(bench.events()).drop_reason == DropReason.INVALID_SOURCE_IP


def test_parse_failures_and_other_l3(bench: Bench) -> None:
    arp = pk.ethernet(b"\0" * 28, pk.ETH_P_ARP)
    assert bench.run("from_pod", arp) == OK
    assert bench.events() == []
    ipv6 = pk.ethernet(b"\x60" + b"\0" * 39, pk.ETH_P_IPV6)
    assert bench.run("from_pod", ipv6) == SHOT
    assert _drop(bench.events()).drop_reason == DropReason.UNSUPPORTED_L3_PROTOCOL
    # (BPF_PROG_TEST_RUN itself refuses IPv4 frames shorter than an IP header)
    for bad_header in (b"\x44" + b"\0" * 19, b"\x65" + b"\0" * 19):  # IHL 4; version 6
        assert bench.run("from_pod", pk.ethernet(bad_header)) == SHOT
        assert _drop(bench.events()).drop_reason == DropReason.INVALID_PACKET_DROPPED
    short_tcp = pk.ethernet(pk.ipv4(A, B, TCP, b"\0" * 6))
    assert bench.run("from_pod", short_tcp) == SHOT
    assert _drop(bench.events()).drop_reason == DropReason.CT_TRUNCATED_OR_INVALID_HEADER


def test_sctp_is_matched_by_port(bench: Bench) -> None:
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, SCTP, 9000)))
    assert bench.run("from_pod", pk.frame(A, B, SCTP, dport=9000)) == OK
    assert bench.run("from_pod", pk.frame(A, B, SCTP, dport=9001)) == SHOT
    drop = _drop(bench.events())
    assert (drop.proto, drop.dport_be, drop.drop_reason) == (SCTP, 9001, DropReason.POLICY_DENIED)


def test_peer_identity_from_the_ipcache_longest_prefix(bench: Bench) -> None:
    cidr, host = 16777217, 16777300
    delta = bench.dp.sync_ipcache({"10.2.0.0/16": cidr, "10.2.3.4/32": host, "fd00::/8": 7})
    assert (delta.added, delta.changed, delta.removed) == (2, 0, 0)
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, cidr, TCP, 80) | allow(EG, 2, TCP, 443)))
    assert bench.run("from_pod", pk.frame(A, "10.2.9.9", TCP, dport=80)) == OK
    assert bench.run("from_pod", pk.frame(A, "10.2.3.4", TCP, dport=80)) == SHOT
    assert bench.run("from_pod", pk.frame(A, "192.0.2.1", TCP, dport=443)) == OK  # miss: world
    events = bench.events()
    assert [e.dst_identity for e in events if e.type == EventType.POLICY_VERDICT] == [
        cidr, host, 2]


def test_ipcache_identity_zero_is_invalid(bench: Bench) -> None:
    bench.dp.sync_ipcache({"10.3.0.0/16": 0})
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, 0)))
    assert bench.run("from_pod", pk.frame(A, "10.3.0.1", TCP, dport=80)) == SHOT
    assert _drop(bench.events()).drop_reason == DropReason.INVALID_IDENTITY


def test_a_local_endpoint_is_known_before_the_ipcache(bench: Bench) -> None:
    bench.dp.sync_ipcache({f"{B}/32": 5555})
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 80)))
    assert bench.run("from_pod", pk.frame(A, B, TCP, dport=80)) == OK


def test_an_unenforced_direction_is_not_looked_up(bench: Bench) -> None:
    bench.dp.apply_policy(resolved(EP_A, ID_A, {}, egress=False))
    assert bench.run("from_pod", pk.frame(A, B, TCP, dport=80)) == OK
    assert not [e for e in bench.events() if e.type == EventType.POLICY_VERDICT]
    assert bench.run("to_pod", pk.frame(B, A, TCP, dport=80)) == SHOT  # ingress still enforced


def test_untracked_fragments_match_only_port_wildcards(bench: Bench) -> None:
    tail = pk.ethernet(pk.ipv4(A, B, UDP, b"\0" * 16, frag_offset=3))
    head = pk.ethernet(pk.ipv4(A, B, UDP, pk.udp(40000, 53), more_fragments=True))
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, UDP, 53)))
    assert bench.run("from_pod", head) == OK  # a first fragment has its ports
    assert bench.run("from_pod", tail) == SHOT
    drop = _drop(bench.events())
    assert drop.drop_reason == DropReason.IP_FRAGMENTATION_NOT_SUPPORTED
    assert drop.flags & EventFlag.FRAGMENT
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, UDP), revision=2))
    assert bench.run("from_pod", tail) == OK


def test_replies_skip_policy_and_are_traced_once(bench: Bench) -> None:
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 80)))  # a's ingress: nothing
    assert bench.run("from_pod", pk.frame(A, B, TCP, sport=41000, dport=80)) == OK
    bench.events()
    syn_ack = pk.frame(B, A, TCP, sport=80, dport=41000, tcp_flags=pk.TCP_SYN | pk.TCP_ACK)
    assert bench.run("to_pod", syn_ack) == OK
    assert bench.run("to_pod", syn_ack) == OK
    traces = [e for e in bench.events() if e.type == EventType.TRACE]
    assert len(traces) == 1 and traces[0].ct_state == CtState.REPLY
    assert traces[0].flags & EventFlag.IS_REPLY
    # the same packet with nothing tracked is a new connection into a: denied
    other = pk.frame(B, A, TCP, sport=80, dport=41001, tcp_flags=pk.TCP_SYN | pk.TCP_ACK)
    assert bench.run("to_pod", other) == SHOT


def test_icmp_errors_about_a_tracked_flow_are_related(bench: Bench) -> None:
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, UDP, 53)))
    request = pk.ipv4(A, B, UDP, pk.udp(40000, 53))
    assert bench.run("from_pod", pk.ethernet(request)) == OK
    bench.events()
    unreachable = pk.ethernet(pk.ipv4(B, A, 1, pk.icmp(3, 3, 0, 0, request[:28])))
    assert bench.run("to_pod", unreachable) == OK
    traces = [e for e in bench.events() if e.type == EventType.TRACE]
    assert [e.ct_state for e in traces] == [CtState.RELATED]
    stranger = pk.ipv4(A, B, UDP, pk.udp(40001, 53))
    unrelated = pk.ethernet(pk.ipv4(B, A, 1, pk.icmp(3, 3, 0, 0, stranger[:28])))
    assert bench.run("to_pod", unrelated) == SHOT
    assert _drop(bench.events()).drop_reason == DropReason.POLICY_DENIED
