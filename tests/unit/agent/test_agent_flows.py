"""Kernel events as Hubble flows, and the daemon's view of a manifests directory."""

from __future__ import annotations

import os
from ipaddress import IPv4Address
from pathlib import Path

from netstrata.agent.daemon import snapshot
from netstrata.agent.flows import flow_of
from netstrata.datapath.maps import EventFlag, EventType, FlowEvent, Verdict
from netstrata.observe import TrafficDirection
from netstrata.observe import Verdict as FlowVerdict


def event(**kw: object) -> FlowEvent:
    base: dict[str, object] = dict(
        timestamp_ns=1_000, type=EventType.DROP, subtype=133, verdict=Verdict.DROPPED,
        direction=1, match_type=0, flags=0, proto=6, ct_state=1, endpoint_id=3,
        src_identity=256, dst_identity=257, saddr_be=IPv4Address("10.1.1.10"),
        daddr_be=IPv4Address("10.1.1.11"), sport_be=40000, dport_be=80, drop_reason=133,
        proxy_port=0, cookie=0, ifindex=5, pkt_len=60, icmp_type=0, icmp_code=0,
        tcp_flags=0x02, lookup_step=4)
    base.update(kw)
    return FlowEvent(**base)  # type: ignore[arg-type]


def test_a_drop_event_is_a_dropped_flow_with_its_reason() -> None:
    flow = flow_of(event(), "default/node-1", 5)
    assert flow is not None
    assert flow.verdict == FlowVerdict.DROPPED and flow.drop_reason == 133
    assert flow.traffic_direction == TrafficDirection.EGRESS
    assert flow.time_ns == 1_005 and flow.node_name == "default/node-1"
    assert flow.source is not None and flow.source.identity == 256


def test_an_audited_verdict_is_audit() -> None:
    flow = flow_of(event(type=EventType.POLICY_VERDICT, subtype=0, verdict=Verdict.AUDIT,
                         flags=EventFlag.AUDITED, direction=0), "n", 0)
    assert flow is not None and flow.verdict == FlowVerdict.AUDIT
    assert flow.traffic_direction == TrafficDirection.INGRESS


def test_debug_and_capture_events_are_not_flows() -> None:
    assert flow_of(event(type=EventType.DEBUG), "n", 0) is None


def test_snapshot_sees_every_write(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("a: 1\n")
    first = snapshot(tmp_path)
    f.write_text("a: 2\n")
    os.utime(f, ns=(first[0][1] + 1, first[0][1] + 1))
    assert snapshot(tmp_path) != first
    (tmp_path / "notes.txt").write_text("ignored")
    assert len(snapshot(tmp_path)) == 1
