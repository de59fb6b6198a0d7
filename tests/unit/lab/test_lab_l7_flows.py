"""The lab's hold on the proxies' L7 flows of a batch (`lab/l7_flow_log.py`) and how a
mismatched gRPC/Kafka probe is explained from them (`kernel_l7.probe_flows`, `kernel_check`).

The flood below is what seed-f's batch does on a real lab: aiokafka's producer re-asks
Metadata for a topic the proxy denies ~2000 times in its 3 s wait, 4000 flows, while the
discarded CreateTopics that decides another probe was recorded first. Flows are built with the
proxy's own flow builder; no lab is needed to show that the early denial survives."""

from __future__ import annotations

import pytest

from netstrata.lab.cases import Probe
from netstrata.lab.kernel_check import _with_proxy_word
from netstrata.lab.kernel_l7 import probe_flows, proxy_denial
from netstrata.lab.kernel_probes import Shot, Traffic
from netstrata.lab.l7_flow_log import L7FlowLog
from netstrata.observe import Flow
from netstrata.observe.builders import Packet, flow_from_l7_kafka
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV

CLIENT, BROKER, PORT = "10.1.1.12", "10.1.1.10", 9092
CREATE = {"role": "createtopics", "topic": "new-topic"}


def kafka_flow(
    api: str,
    topic: str,
    cid: int,
    *,
    kind: L7FlowType = L7FlowType.REQUEST,
    verdict: FV = FV.DROPPED,
    error: int = 0,
    src: str = CLIENT,
) -> Flow:
    return flow_from_l7_kafka(
        Packet(src, BROKER, 6, 40000 + cid % 1000, PORT),
        api_key=api,
        topic=topic,
        api_version=1,
        correlation_id=cid,
        error_code=error,
        l7_type=kind,
        verdict=verdict,
        time_ns=cid,
        node_name="node-1",
    )


def flood(log: L7FlowLog, count: int) -> None:
    for cid in range(1, count + 1):
        log.record(kafka_flow("metadata", "order-events", cid))
        log.record(kafka_flow("metadata", "order-events", cid, kind=L7FlowType.RESPONSE, error=29))


def test_a_discard_recorded_before_a_flood_is_still_there_when_the_batch_is_judged() -> None:
    log = L7FlowLog()
    log.record(kafka_flow("createtopics", "new-topic", 2))
    flood(log, 2100)  # 4200 flows: past the 4096-flow follower queue the lab once read
    batch = log.drain()
    assert batch.lost == 0 and len(batch.flows) == 4201
    why = proxy_denial(CLIENT, BROKER, PORT, CREATE, batch.flows)
    assert why is not None and "createtopics" in why
    assert log.drain().flows == ()  # a drain takes everything


def test_past_the_cap_the_newest_are_counted_and_the_early_ones_kept() -> None:
    log = L7FlowLog(cap=10)
    log.record(kafka_flow("createtopics", "new-topic", 2))
    flood(log, 20)
    batch = log.drain()
    assert (len(batch.flows), batch.lost) == (10, 31)
    assert proxy_denial(CLIENT, BROKER, PORT, CREATE, batch.flows) is not None
    assert log.drain().lost == 0
    with pytest.raises(ValueError):
        L7FlowLog(cap=0)


def test_probe_flows_lists_each_kind_once_with_its_count() -> None:
    log = L7FlowLog()
    log.record(kafka_flow("apiversions", "", 1, verdict=FV.FORWARDED))
    flood(log, 300)
    log.record(kafka_flow("produce", "new-orders", 5, src="10.1.1.11"))  # another client
    lines = probe_flows(CLIENT, BROKER, PORT, log.drain().flows)
    assert lines == [
        "FORWARDED REQUEST apiversions v1 topic=- error=0 #1",
        "DROPPED REQUEST metadata v1 topic=order-events error=0 x300 (#1..#300)",
        "DROPPED RESPONSE metadata v1 topic=order-events error=29 x300 (#1..#300)",
    ]


def _shot() -> Shot:
    probe = Probe(
        raw={"kafka": {"action": "createtopics", "topic": "new-topic"}},
        id="createtopics",
        src="order-processor",
        to="kafka-broker",
        protocol="kafka",
        port=PORT,
        expect="denied-l7",
    )
    return Shot(probe, src_ip=CLIENT, dst_ip=BROKER, dport=PORT, kind="kafka", http=dict(CREATE))


def test_a_silent_proxy_is_told_from_a_drop_and_a_lossy_batch_says_it_cannot_tell() -> None:
    sent = Traffic(
        "dropped",
        "RequestTimedOutError: no answer to CreateTopicsRequest_v0 #2",
        (CLIENT, BROKER, 6, PORT),
    )
    denial = [kafka_flow("createtopics", "new-topic", 2)]
    assert _with_proxy_word(_shot(), sent, denial).got == "denied-l7"
    assert _with_proxy_word(_shot(), sent, []) == sent  # nothing lost: a real drop
    lossy = _with_proxy_word(_shot(), sent, [], lost=12)
    assert lossy.got == "dropped" and "lost 12 flows" in lossy.detail
