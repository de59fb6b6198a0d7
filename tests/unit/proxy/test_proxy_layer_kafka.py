"""Kafka enforcement layer, Playbook style (reference §1.5.1, scenarios README: error 29 for
produce/fetch/list-offsets/metadata/find-coordinator/offset-commit/offset-fetch, other denied
apiKeys dropped, every topic of a request must be allowed, responses in request order)."""

from __future__ import annotations

import struct

from proxyplaybook import Placeholder, Playbook

from netstrata.api.types import KafkaRule
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy.kafka import decode_response, encode_request, encode_response
from netstrata.proxy.layers import (
    ClientData,
    ClientEof,
    Close,
    KafkaLayer,
    KafkaSettings,
    LayerContext,
    OpenServer,
    SendToClient,
    SendToServer,
    ServerData,
    ServerOpened,
    Start,
    Timeouts,
    Verdict,
)
from netstrata.proxy.policy_source import ConnectionInfo

BROKER = ("10.0.3.9", 9092)
CLIENT = ("10.0.1.5", 51000)
PRODUCER, CONSUMER = 3001, 3002


def policy(*entries: L7Entry) -> ResolvedPolicy:
    return ResolvedPolicy(
        endpoint_id=5, identity=200, revision=3, entries={}, ingress_enforced=True,
        egress_enforced=False,
        l7={(Direction.INGRESS, 6, BROKER[1], 16): L7Policy("kafka", entries)},
        cookies={1: "CiliumNetworkPolicy kafka/producers ingress[0]",
                 2: "CiliumNetworkPolicy kafka/consumers ingress[0]"})


RULES = policy(
    L7Entry(frozenset({PRODUCER}), (KafkaRule(role="produce", topic="orders"),), cookie=1),
    L7Entry(frozenset({CONSUMER}), (KafkaRule(role="consume", topic="orders"),), cookie=2))


def layer(peer: int = PRODUCER, pol: ResolvedPolicy | None = RULES, **settings: object
          ) -> KafkaLayer:
    info = ConnectionInfo(5, Direction.INGRESS, peer, CLIENT, BROKER)
    out = KafkaLayer(LayerContext(info, lambda: pol, None, "node-a"),
                     KafkaSettings(**settings))  # type: ignore[arg-type]
    out.handle(Start(), 1_000.0)
    return out


def produce(topic: str, cid: int, acks: int = 1, version: int = 3) -> bytes:
    body = {"acks": acks, "timeout_ms": 1000, "topics": [
        {"name": topic, "partitions": [{"index": 0, "records": b"batch"}]}]}
    return encode_request(0, version, cid, "producer-1", body)


def produce_response(topic: str, cid: int, version: int = 3) -> bytes:
    body = {"responses": [{"name": topic, "partitions": [
        {"index": 0, "error_code": 0, "base_offset": 41}]}]}
    return encode_response(0, version, cid, body)


def fetch(topic: str, cid: int, version: int = 4) -> bytes:
    body = {"max_wait_ms": 100, "min_bytes": 1, "topics": [
        {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                         "partition_max_bytes": 1024}]}]}
    return encode_request(1, version, cid, "consumer-1", body)


def flow(kind: L7FlowType, verdict: FV) -> Placeholder:
    return Placeholder(Verdict, lambda v: v.flow.l7.type == kind and v.flow.verdict == verdict)


def error_codes(frame: bytes, api_key: int, version: int) -> tuple[int, list[int]]:
    cid, body = decode_response(api_key, version, frame)
    key = "responses"
    codes = [p["error_code"] for t in body[key] for p in t["partitions"]]  # type: ignore[union-attr]
    return cid, codes


def test_allowed_produce_is_forwarded_and_the_broker_answer_relayed() -> None:
    req = flow(L7FlowType.REQUEST, FV.FORWARDED)
    frame = produce("orders", 7)
    assert (
        Playbook(layer())
        >> ClientData(frame)
        << req << OpenServer(BROKER)
        >> ServerOpened() << SendToServer(frame)
        >> ServerData(produce_response("orders", 7))
        << SendToClient(produce_response("orders", 7))
        << flow(L7FlowType.RESPONSE, FV.FORWARDED)
    )
    record = req().flow.l7.record
    assert (record.api_key, record.topic, record.correlation_id) == ("produce", "orders", 7)
    assert req().flow.ingress_allowed_by[0].name == "producers"


def test_denied_produce_gets_error_29_without_contacting_the_broker() -> None:
    answer = Placeholder(SendToClient)
    response = flow(L7FlowType.RESPONSE, FV.DROPPED)
    assert (
        Playbook(layer())
        >> ClientData(produce("payments", 9))
        << flow(L7FlowType.REQUEST, FV.DROPPED) << answer << response
    )
    assert error_codes(answer().data, 0, 3) == (9, [29])
    assert response().flow.l7.record.error_code == 29


def test_consumer_cannot_produce_but_can_fetch() -> None:
    frame = fetch("orders", 2)
    answer = Placeholder(SendToClient)
    assert (
        Playbook(layer(CONSUMER))
        >> ClientData(produce("orders", 1))
        << flow(L7FlowType.REQUEST, FV.DROPPED) << answer << Placeholder(Verdict)
        >> ClientData(frame)
        << flow(L7FlowType.REQUEST, FV.FORWARDED) << OpenServer(BROKER)
        >> ServerOpened() << SendToServer(frame)
    )
    assert error_codes(answer().data, 0, 3) == (1, [29])


def test_local_answers_wait_behind_earlier_broker_responses() -> None:
    first = produce("orders", 1)
    pb = Playbook(layer())
    assert pb >> ClientData(first) << Placeholder(Verdict) << OpenServer(BROKER)
    assert pb >> ServerOpened() << SendToServer(first)
    # a denied request after an allowed one: its error answer must not overtake the broker's
    assert pb >> ClientData(produce("payments", 2)) << flow(L7FlowType.REQUEST, FV.DROPPED)
    local = Placeholder(SendToClient)
    assert (
        pb
        >> ServerData(produce_response("orders", 1))
        << SendToClient(produce_response("orders", 1)) << Placeholder(Verdict)
        << local << flow(L7FlowType.RESPONSE, FV.DROPPED)
    )
    assert error_codes(local().data, 0, 3)[0] == 2


def test_denied_request_of_an_unanswered_api_is_dropped() -> None:
    join = struct.pack(">hhih", 11, 0, 4, 0)  # JoinGroup v0 header, body not decoded
    frame = struct.pack(">i", len(join)) + join
    assert Playbook(layer()) >> ClientData(frame) << flow(L7FlowType.REQUEST, FV.DROPPED)


def test_denied_acks_0_produce_gets_no_answer() -> None:
    assert (Playbook(layer()) >> ClientData(produce("payments", 3, acks=0))
            << flow(L7FlowType.REQUEST, FV.DROPPED))


def test_every_topic_of_a_request_must_be_allowed() -> None:
    body = {"acks": 1, "timeout_ms": 10, "topics": [
        {"name": "orders", "partitions": [{"index": 0, "records": b"x"}]},
        {"name": "payments", "partitions": [{"index": 0, "records": b"y"}]}]}
    answer = Placeholder(SendToClient)
    assert (
        Playbook(layer())
        >> ClientData(encode_request(0, 3, 4, "p", body))
        << flow(L7FlowType.REQUEST, FV.DROPPED) << flow(L7FlowType.REQUEST, FV.DROPPED)
        << answer << Placeholder(Verdict)
    )
    assert error_codes(answer().data, 0, 3) == (4, [29, 29])


def test_l4_only_entry_allows_any_request() -> None:
    open_pol = policy(L7Entry(None, None, cookie=2))
    frame = produce("anything", 1)
    assert (Playbook(layer(999, open_pol)) >> ClientData(frame)
            << flow(L7FlowType.REQUEST, FV.FORWARDED) << OpenServer(BROKER))


def test_garbage_frame_closes_the_connection() -> None:
    assert Playbook(layer()) >> ClientData(b"\xff\xff\xff\xffGARBAGE") << Close("client")
    truncated = struct.pack(">i", 3) + b"\x00\x00\x00"
    assert Playbook(layer()) >> ClientData(truncated) << Close("client")


def test_out_of_order_broker_response_closes_both_sides() -> None:
    frame = produce("orders", 1)
    assert (
        Playbook(layer())
        >> ClientData(frame) << Placeholder(Verdict) << OpenServer(BROKER)
        >> ServerOpened() << SendToServer(frame)
        >> ServerData(produce_response("orders", 99))
        << Close("server") << Close("client")
    )


def test_in_flight_cap_stops_reading_the_client() -> None:
    lay = layer(max_in_flight=2)
    frames = produce("orders", 1) + produce("orders", 2) + produce("orders", 3)
    pb = (Playbook(lay) >> ClientData(frames) << Placeholder(Verdict) << OpenServer(BROKER)
          >> ServerOpened() << SendToServer(produce("orders", 1))
          << Placeholder(Verdict) << SendToServer(produce("orders", 2)))
    assert pb
    assert not lay.wants_client_data
    assert (pb >> ServerData(produce_response("orders", 1))
            << Placeholder(SendToClient) << Placeholder(Verdict))


def test_slow_partial_frame_and_idle_connection_time_out() -> None:
    lay = layer(timeouts=Timeouts(read=2.0, idle=60.0))
    assert lay.get_timer() == 1_060.0
    pb = Playbook(lay) >> ClientData(produce("orders", 1)[:5])
    assert pb
    assert lay.get_timer() == 1_002.0
    assert pb.at(1_002.0).timer() << Close("client")


def test_client_eof_waits_for_owed_responses() -> None:
    frame = produce("orders", 1)
    assert (
        Playbook(layer())
        >> ClientData(frame) << Placeholder(Verdict) << OpenServer(BROKER)
        >> ServerOpened() << SendToServer(frame)
        >> ClientEof()
        >> ServerData(produce_response("orders", 1))
        << Placeholder(SendToClient) << Placeholder(Verdict) << Close("server") << Close("client")
    )


def test_audit_mode_forwards_a_would_be_denied_produce_with_verdict_audit() -> None:
    from dataclasses import replace

    assert (
        Playbook(layer(pol=replace(RULES, audit=True)))
        >> ClientData(produce("payments", 9))
        << flow(L7FlowType.REQUEST, FV.AUDIT)
        << OpenServer(BROKER)
        >> ServerOpened()
        << SendToServer(produce("payments", 9))
    )
