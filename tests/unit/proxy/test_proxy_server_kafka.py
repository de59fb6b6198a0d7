"""The Kafka listener with a real client: aiokafka produces and fetches through the proxy to a
broker stub (`kafkastub.py`: a fake only because no Kafka broker can run on these machines).
The client connects from 127.0.0.1, whose identity the policy source's ipcache gives; the
broker endpoint lives on 127.0.0.5."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from kafkastub import Broker, kafka_stub
from proxyharness import ProxyThread

from netstrata.api.types import KafkaRule
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy import InMemoryPolicySource, ListenerSpec, LocalEndpoint
from netstrata.proxy.kafka import decode_response, encode_request

BROKER_IP, CLIENT_IP = "127.0.0.5", "127.0.0.1"
CLIENT_ID, BROKER_ID = 3001, 500


def broker_policy(port: int) -> ResolvedPolicy:
    # Metadata is allowed for every topic so that the denial happens on the Produce itself:
    # a denied Metadata request gets Cilium's error answer with an empty broker list, which
    # aiokafka ignores ("No broker metadata found"), so the client would only time out.
    entry = L7Entry(frozenset({CLIENT_ID}), (KafkaRule(role="produce", topic="orders"),
                                             KafkaRule(role="consume", topic="orders"),
                                             KafkaRule(api_key="metadata")), cookie=1)
    return ResolvedPolicy(
        endpoint_id=20, identity=BROKER_ID, revision=1, entries={}, ingress_enforced=True,
        egress_enforced=False, l7={(Direction.INGRESS, 6, port, 16): L7Policy("kafka", (entry,))},
        cookies={1: "CiliumNetworkPolicy kafka/orders-only ingress[0]"})


@pytest.fixture
def setup() -> Iterator[tuple[ProxyThread, Broker]]:
    with kafka_stub(BROKER_IP) as (broker, address):
        source = InMemoryPolicySource()
        source.upsert_endpoint(LocalEndpoint(20, BROKER_ID, (BROKER_IP,),
                                             broker_policy(address[1]), "kafka", "broker-0"))
        source.set_identity(f"{CLIENT_IP}/32", CLIENT_ID)
        source.set_original_destination("kafka-in", address)
        with ProxyThread(source, [ListenerSpec("kafka-in", "kafka", Direction.INGRESS)]) as proxy:
            broker.advertised = proxy.addresses["kafka-in"]  # clients come back through us
            yield proxy, broker


def bootstrap(proxy: ProxyThread) -> str:
    host, port = proxy.addresses["kafka-in"]
    return f"{host}:{port}"


async def produce_then_fetch(proxy: ProxyThread) -> tuple[bytes, type[BaseException] | None]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(proxy), request_timeout_ms=5000)
    await producer.start()
    try:
        await producer.send_and_wait("orders", b"hello")
        denied: type[BaseException] | None = None
        try:
            await producer.send_and_wait("payments", b"card")
        except TopicAuthorizationFailedError as exc:
            denied = type(exc)
        await producer.send_and_wait("orders", b"again")  # the producer still works
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(proxy), request_timeout_ms=5000,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition("orders", 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        async with asyncio.timeout(5):
            first = await consumer.getone()
    finally:
        await consumer.stop()
    return first.value or b"", denied


def test_aiokafka_produces_and_fetches_through_the_proxy(setup: tuple[ProxyThread, Broker]) -> None:
    proxy, broker = setup
    value, denied = asyncio.run(produce_then_fetch(proxy))
    assert value == b"hello"
    assert denied is TopicAuthorizationFailedError  # error 29 from the proxy, as Cilium answers
    assert all("payments" not in topics for key, topics in broker.requests if key != 3)
    produced = [t for key, t in broker.requests if key == 0]
    assert produced == [("orders",), ("orders",)]
    dropped = [f for f in proxy.flows if f.verdict == FV.DROPPED and f.l7 is not None
               and f.l7.type == L7FlowType.REQUEST]
    assert dropped and all(f.l7.record.topic == "payments" for f in dropped)


def raw(proxy: ProxyThread, data: bytes) -> bytes:
    host, port = proxy.addresses["kafka-in"]
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_denied_produce_gets_error_29_in_order(setup: tuple[ProxyThread, Broker]) -> None:
    proxy, broker = setup
    body = {"acks": 1, "timeout_ms": 1000, "topics": [
        {"name": "payments", "partitions": [{"index": 0, "records": None}]}]}
    metadata = encode_request(3, 1, 1, "raw", {"topics": [{"name": "orders"}]})
    answer = raw(proxy, metadata + encode_request(0, 3, 2, "raw", body))
    size = struct.unpack_from(">i", answer)[0]
    first, second = answer[: 4 + size], answer[4 + size :]
    assert decode_response(3, 1, first)[0] == 1  # the broker's metadata answer comes first
    cid, response = decode_response(0, 3, second)
    assert cid == 2
    assert [p["error_code"] for t in response["responses"] for p in t["partitions"]] == [29]  # type: ignore[union-attr, index]


def test_garbage_frames_close_the_connection_and_others_are_served(
        setup: tuple[ProxyThread, Broker]) -> None:
    proxy, _ = setup
    assert raw(proxy, b"\x7f\xff\xff\xff" + b"x" * 100) == b""  # frame size over the cap
    assert raw(proxy, struct.pack(">i", 6) + b"\x00\x00\x00\x00\x00\x01") == b""  # truncated header
    metadata = encode_request(3, 1, 7, "raw", {"topics": [{"name": "orders"}]})
    assert decode_response(3, 1, raw(proxy, metadata))[0] == 7


def test_a_discarded_create_topics_is_named_by_the_lab_probe(
        setup: tuple[ProxyThread, Broker]) -> None:
    # the proxy discards a denied CreateTopics (Cilium answers none); the lab's probe client
    # must say that it was that request, not the ApiVersions/Metadata before it, that got no
    # answer, so a `dropped` in a lab report explains itself
    from netstrata.lab.probe_tools import kafka_create_topic

    proxy, broker = setup
    result = asyncio.run(kafka_create_topic(bootstrap(proxy), "new-topic", timeout_s=1.0))
    assert result.code == "RequestTimedOutError", result
    assert "no answer to CreateTopicsRequest_v" in result.detail, result.detail
    assert "answered: ApiVersionRequest_v0, MetadataRequest_v" in result.detail, result.detail
    assert 19 not in {key for key, _ in broker.requests}
    dropped = [f.l7.record for f in proxy.flows if f.verdict == FV.DROPPED
               and f.l7 is not None and f.l7.type == L7FlowType.REQUEST]
    assert [(r.api_key, r.topic) for r in dropped] == [("createtopics", "new-topic")]
