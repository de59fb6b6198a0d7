"""gRPC and Kafka through the kernel's transparent redirect to the node proxy, real clients.

Two shared scenarios, each built once as a real lab (namespaces, tc programs, one in-process
`NodeProxyRunner` per node recording into its `FlowHub`, workload servers with the real
grpcio door service and the lab's Kafka broker):

* `docs-grpc-cloudcity`: terminal-87 may call GetName, GetLocation and RequestMaintenance
  of `cloudcity.DoorManager` on the door manager (ingress gRPC rules);
* `seed-f-kafka-orders`: order-processor may produce to `new-orders`, inventory-service may
  consume it (ingress Kafka rules by role and topic).

Clients are grpcio and aiokafka in a child process inside the source pod's namespace
(`lab.kernel_l7.send`). What is shown: verdicts by method and by topic, the kernel's REDIRECTED
verdict for each connection, the proxy's L7 flows naming the method or topic, and that a
denied request never reaches the server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

import pytest
from labkit import acceptance_dir

pytest.importorskip("grpc", reason="grpcio is the gRPC client")
pytest.importorskip("aiokafka", reason="aiokafka is the Kafka client")

from netstrata.datapath.maps import EventType, Verdict  # noqa: E402
from netstrata.lab import kernel_l7  # noqa: E402
from netstrata.lab.cases import Apply, Probe, Scenario, load_case_file  # noqa: E402
from netstrata.lab.grpc_doors import DOOR_NAME  # noqa: E402
from netstrata.lab.kernel_session import (  # noqa: E402
    LabSession,
    probe_targets,
    server_specs,
    session_for,
)
from netstrata.lab.reference_check import ScenarioRunner  # noqa: E402
from netstrata.netns import socket_in_netns  # noqa: E402
from netstrata.observe.flow import HTTP, Kafka  # noqa: E402
from netstrata.observe.flow import Verdict as FlowVerdict  # noqa: E402
from netstrata.proxy.kafka import KafkaResponse, KafkaResponseParser, encode_request  # noqa: E402

T = TypeVar("T")


def _scenario(name: str) -> Scenario:
    _, scenarios = load_case_file(acceptance_dir() / "scenarios" / "cases.yaml")
    return next(s for s in scenarios if s.id == name)


def _in_lab(case: str, body: Callable[[LabSession], Coroutine[Any, Any, T]]) -> T:
    """Build the case's lab under a name of our own, apply its policies, run `body`."""
    sc = _scenario(case)

    async def main() -> T:
        runner = ScenarioRunner(sc)
        for action in sc.actions:
            if isinstance(action, Apply):
                runner.apply(action)
        wanted, targets = probe_targets(runner, [a for a in sc.actions if isinstance(a, Probe)])
        session = await session_for(None, f"gk{case[:8]}", sc.topology, targets)
        try:
            await session.serve(server_specs(session.plan, sc.topology, wanted),
                                sc.topology.dns_records)
            await session.sync(runner.lab)
            session.drain_events()
            session.drain_l7_flows()
            return await body(session)
        finally:
            await session.close()

    return asyncio.run(main())


def _pod(session: LabSession, name: str) -> tuple[str, str]:
    """(netns, IP) of the workload whose ref ends with `name`."""
    pod = next(p for p in session.plan.pods if p.ref.split("/")[-1] == name)
    return pod.netns, pod.ips[0]


def _redirected(session: LabSession, src: str, port: int) -> int:
    return sum(1 for evs in session.drain_events().values() for e in evs
               if e.type == EventType.POLICY_VERDICT and e.verdict == Verdict.REDIRECTED
               and str(e.saddr_be) == src and e.dport_be == port)


def test_grpc_methods_allowed_and_denied_through_the_redirect() -> None:
    async def body(session: LabSession) -> None:
        ns, client = _pod(session, "terminal-87")
        _, door = _pod(session, "cc-door-mgr")

        async def call(method: str) -> Any:
            path = {"path": f"/cloudcity.DoorManager/{method}"}
            return await kernel_l7.send(ns, door, 50051, path)

        name, status, code = await asyncio.gather(
            call("GetName"), call("GetStatus"), call("SetAccessCode"))
        assert (name.got, name.detail) == ("allowed", f"Door name is: {DOOR_NAME}"), name
        assert status.got == "denied-l7" and "PERMISSION_DENIED (7)" in status.detail, status
        assert code.got == "denied-l7", code
        assert _redirected(session, client, 50051) == 3  # every call went through the proxy

        flows = session.drain_l7_flows()
        verdicts = {(f.l7.record.url.rsplit("/", 1)[-1], f.verdict) for f in flows
                    if f.l7 is not None and isinstance(f.l7.record, HTTP)
                    and f.ip is not None and f.ip.source == client}
        assert ("GetName", FlowVerdict.FORWARDED) in verdicts
        assert {("GetStatus", FlowVerdict.DROPPED), ("SetAccessCode", FlowVerdict.DROPPED)} <= verdicts
        assert ("SetAccessCode", FlowVerdict.FORWARDED) not in verdicts

    _in_lab("docs-grpc-cloudcity", body)


def test_kafka_produce_and_consume_by_topic_through_the_redirect() -> None:
    async def body(session: LabSession) -> None:
        producer_ns, producer = _pod(session, "order-processor")
        consumer_ns, _ = _pod(session, "inventory-service")
        _, broker_ip = _pod(session, "kafka-broker")
        assert session.servers is not None
        broker = session.servers.kafka

        async def kafka(ns: str, role: str, topic: str) -> Any:
            return await kernel_l7.send(ns, broker_ip, 9092, {"role": role, "topic": topic})

        produced = await kafka(producer_ns, "produce", "new-orders")
        assert produced.got == "allowed", produced
        consumed = await kafka(consumer_ns, "consume", "new-orders")
        assert (consumed.got, consumed.detail) == ("allowed", "1 records"), consumed
        assert _redirected(session, producer, 9092) >= 1

        stored = broker.next_offset["new-orders"]
        denied = await asyncio.gather(
            kafka(producer_ns, "consume", "new-orders"),      # producer may not consume
            kafka(consumer_ns, "produce", "new-orders"),      # consumer may not produce
            kafka(producer_ns, "produce", "order-events"))    # nor produce another topic
        assert [d.got for d in denied] == ["denied-l7"] * 3, denied
        assert all("TopicAuthorizationFailedError" in d.detail for d in denied), denied
        assert broker.next_offset["new-orders"] == stored  # nothing got to the broker
        assert "order-events" not in broker.next_offset

        flows = session.drain_l7_flows()
        dropped = {(f.l7.record.api_key, f.l7.record.topic) for f in flows
                   if f.l7 is not None and isinstance(f.l7.record, Kafka)
                   and f.verdict == FlowVerdict.DROPPED}
        assert ("produce", "new-orders") in dropped
        assert ("metadata", "order-events") in dropped

    _in_lab("seed-f-kafka-orders", body)


FLOOD: Final = 2100
"""Denied Metadata requests sent after the discarded CreateTopics: 4200 flows, past the
4096-flow follower queue the lab once read flows from (it dropped the oldest, the denial)."""


async def _metadata_flood(netns: str, broker: str, topic: str, count: int) -> int:
    """`count` Metadata v1 requests for `topic` pipelined on one connection, as aiokafka's
    producer re-asks for a topic the proxy denies; returns how many answers came back."""
    frames = b"".join(encode_request(3, 1, cid, "flood", {"topics": [{"name": topic}]})
                      for cid in range(1, count + 1))
    sock = await asyncio.to_thread(socket_in_netns, netns, socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    answers, parser = 0, KafkaResponseParser()
    with sock:
        async with asyncio.timeout(60):
            await loop.sock_connect(sock, (broker, 9092))
            await loop.sock_sendall(sock, frames)
            while answers < count:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    break
                parser.receive_data(data)
                while isinstance(parser.next_event(), KafkaResponse):
                    answers += 1
    return answers


def test_a_kafka_request_the_proxy_discards_is_told_from_a_drop_by_its_flow() -> None:
    async def body(session: LabSession) -> None:
        ns, client = _pod(session, "order-processor")
        _, broker_ip = _pod(session, "kafka-broker")
        params = {"role": "createtopics", "topic": "new-topic"}
        out = await kernel_l7.send(ns, broker_ip, 9092, params)
        # Cilium answers no CreateTopics it denies: the client only times out
        assert out.got == "dropped", out
        assert "no answer to CreateTopicsRequest" in out.detail, out  # the probe says which
        assert session.servers is not None
        assert 19 not in {api for api, _ in session.servers.kafka.requests}
        # a client flooding the proxy later in the same batch must not push the denial out
        assert await _metadata_flood(ns, broker_ip, "order-events", FLOOD) == FLOOD
        batch = session.drain_l7_batch()
        assert batch.lost == 0 and len(batch.flows) >= 2 * FLOOD
        why = kernel_l7.proxy_denial(client, broker_ip, 9092, params, batch.flows)
        assert why is not None and "createtopics" in why, why

    _in_lab("seed-f-kafka-orders", body)
