"""Real gRPC and Kafka clients for lab probes, runnable in a child process inside a namespace.

grpcio opens its sockets from its own threads and aiokafka from the event loop, so neither
can be pointed at a namespace the way `clients.py` does with `socket_in_netns`; instead the
lab runs `python -m netstrata.lab.probe_tools ...` as a child that enters the workload's
namespace before exec (`clients.run_in_netns`), and reads one JSON line back:

    grpc DST PORT METHOD|/SERVICE/METHOD
                                    -> {"code": "OK"|"PERMISSION_DENIED"|..., "value": 0|7|...,
                                        "detail": "...", "response": "Door name is: ..."}
    kafka DST PORT produce|consume|fetch|metadata|createtopics TOPIC
                                    -> {"code": "OK"|"TopicAuthorizationFailedError"|...,
                                        "detail": "..."}

A Kafka probe that fails says which request was left without an answer (`KafkaTrace`): a
client makes several requests before the one a probe is about, and "RequestTimedOutError"
alone cannot tell a discarded CreateTopics from a Metadata lost on the way.

Kafka roles are what a user's client does for each scenario action: `produce` a producer's
send; `consume` and `fetch` an assigned consumer's fetch from offset 0 (Metadata, ListOffsets,
Fetch); `metadata` one Metadata request for the topic; `createtopics` an admin client's
CreateTopics.

The same functions serve loopback tests directly (`grpc_call`, `kafka_produce`,
`kafka_consume`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Final

from netstrata.lab.grpc_doors import describe_reply, encode_fields, method_path

KAFKA_BUDGET: Final = 4
"""A Kafka probe's whole run is bounded by this many request timeouts. Each request is
judged by its own timeout (no answer in time: nothing got through), but a client makes several
answered round trips before the one a probe is about (ApiVersions, Metadata, the controller's
connection for CreateTopics). On a loaded machine their sum outgrew a bound of two timeouts,
and a CreateTopics the proxy discards was never sent: the verdict then depended on the load."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    code: str
    """gRPC status name, `OK`, or the Kafka client's error class name."""
    value: int = 0
    """gRPC status code (0 for OK), Kafka: 0."""
    detail: str = ""
    response: str = ""
    """What the guide's client prints for a successful gRPC call."""


_CONN_LOGGER: Final = "aiokafka.conn"
_TRACE_CAP: Final = 64
"""Requests a trace keeps: a probe makes fewer than ten; the cap only bounds a runaway."""


@dataclass(slots=True)
class _Sent:
    api: str
    """aiokafka's request struct name, e.g. `MetadataRequest_v1`."""
    peer: str
    correlation_id: object
    """As aiokafka logged it (an int)."""
    answered: bool = False


class KafkaTrace(logging.Handler):
    """Each request an aiokafka client sent and whether it was answered, read from the
    client's own debug records (`aiokafka.conn` logs every request and response with its
    peer and correlation id: the one way to see them without patching the library)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: list[_Sent] = []
        self.closes: list[str] = []
        """Connections aiokafka closed, with its reason (a request timeout closes one)."""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        msg = str(record.msg)
        if msg.startswith("Request to") and len(args) == 4 and len(self.sent) < _TRACE_CAP:
            host, port, cid, request = args
            self.sent.append(_Sent(type(request).__name__, f"{host}:{port}", cid))
        elif msg.startswith("Response from") and len(args) >= 3:
            peer, cid = f"{args[0]}:{args[1]}", args[2]
            for sent in self.sent:
                if (sent.peer, sent.correlation_id) == (peer, cid):
                    sent.answered = True
        elif msg.startswith("Closing connection") and len(args) >= 3:
            reason = getattr(args[2], "name", args[2])  # aiokafka's CloseReason, or None
            self.closes.append(f"{args[0]}:{args[1]} ({reason})")

    def describe(self) -> str:
        """Which requests went unanswered, and what was answered before them."""
        lost = [f"{s.api} #{s.correlation_id} to {s.peer}" for s in self.sent if not s.answered]
        done = [s.api for s in self.sent if s.answered]
        parts = [f"no answer to {', '.join(lost)}" if lost else "every request was answered"]
        parts.append(f"answered: {', '.join(done) or 'none'}")
        if self.closes:
            parts.append(f"closed: {'; '.join(self.closes)}")
        return "; ".join(parts)


@contextlib.contextmanager
def kafka_trace() -> Iterator[KafkaTrace]:
    """Record the requests of aiokafka clients run inside the block."""
    trace = KafkaTrace()
    logger = logging.getLogger(_CONN_LOGGER)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(trace)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # the records are for the trace, not for the probe's stderr
    try:
        yield trace
    finally:
        logger.removeHandler(trace)
        logger.setLevel(level)
        logger.propagate = propagate


def _failed(exc: BaseException, trace: KafkaTrace) -> ProbeResult:
    text = str(exc) or type(exc).__name__
    return ProbeResult(type(exc).__name__, 0, f"{text}: {trace.describe()}")


def grpc_call(target: str, method: str, timeout_s: float = 3.0) -> ProbeResult:
    """One unary call on `target` (`host:port`): `method` is a `cloudcity.DoorManager` method
    name or a full `/package.Service/Method` path (any service: the request is a door id)."""
    import grpc

    path = method if method.startswith("/") else method_path(method)
    method = path.rsplit("/", 1)[-1]
    request = encode_fields({1: 1, 2: 999} if method == "SetAccessCode" else {1: 1})
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(path)
        try:
            reply = call(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code()
            return ProbeResult(code.name, int(code.value[0]), str(exc.details() or ""))
    return ProbeResult("OK", 0, "", describe_reply(method, reply))


async def kafka_produce(
    bootstrap: str, topic: str, value: bytes = b"netstrata probe", timeout_s: float = 3.0
) -> ProbeResult:
    """Produce one record with aiokafka (acks=1)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    with kafka_trace() as trace:
        try:
            async with asyncio.timeout(timeout_s * KAFKA_BUDGET):
                await producer.start()
                try:
                    meta = await producer.send_and_wait(topic, value)
                finally:
                    await producer.stop()
        except (KafkaError, TimeoutError, OSError) as exc:
            failed = _failed(exc, trace)
            return await _unauthorized(bootstrap, topic, timeout_s) or failed
    return ProbeResult("OK", 0, f"offset {meta.offset}")


async def _unauthorized(bootstrap: str, topic: str, timeout_s: float) -> ProbeResult | None:
    """TOPIC_AUTHORIZATION_FAILED when a Metadata request for `topic` gets it. aiokafka
    ignores a Metadata answer that lists no brokers (the proxy's own answer lists none, as
    Cilium's does) and reports an unknown topic or, for an assigned consumer, no records; the
    Java client reports "Not authorized to access topics" for the same answer. So after such
    an outcome the probe asks once more, itself, and reports what that answer says."""
    meta = await kafka_metadata(bootstrap, topic, timeout_s)
    return meta if meta.code == "TopicAuthorizationFailedError" else None


async def kafka_consume(bootstrap: str, topic: str, timeout_s: float = 3.0) -> ProbeResult:
    """Fetch from the start of partition 0 with aiokafka (assigned, no group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=int(timeout_s * 1000),
    )
    with kafka_trace() as trace:
        try:
            async with asyncio.timeout(timeout_s * KAFKA_BUDGET):
                await consumer.start()
                try:
                    tp = TopicPartition(topic, 0)
                    consumer.assign([tp])
                    consumer.seek(tp, 0)
                    batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 500))
                finally:
                    await consumer.stop()
        except (KafkaError, TimeoutError, OSError) as exc:
            failed = _failed(exc, trace)
            return await _unauthorized(bootstrap, topic, timeout_s) or failed
    records = batch.get(TopicPartition(topic, 0), [])
    if not records and (denied := await _unauthorized(bootstrap, topic, timeout_s)):
        return denied
    return ProbeResult("OK", 0, f"{len(records)} records")


async def kafka_metadata(bootstrap: str, topic: str, timeout_s: float = 3.0) -> ProbeResult:
    """One Metadata request for `topic` (aiokafka's client, no producer or consumer)."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError, for_code
    from aiokafka.protocol.metadata import MetadataRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    with kafka_trace() as trace:
        try:
            async with asyncio.timeout(timeout_s * KAFKA_BUDGET):
                await client.bootstrap()
                try:
                    node = client.get_random_node()
                    reply = await client.send(node, MetadataRequest([topic]))
                finally:
                    await client.close()
        except (KafkaError, TimeoutError, OSError) as exc:
            return _failed(exc, trace)
    for code, name, *_ in reply.topics:
        if name == topic and code != 0:
            error = for_code(code)
            return ProbeResult(error.__name__, 0, f"Metadata for {topic}: error {code}")
    return ProbeResult("OK", 0, f"Metadata for {topic}")


async def kafka_create_topic(bootstrap: str, topic: str, timeout_s: float = 3.0) -> ProbeResult:
    """CreateTopics for `topic` (one partition) with aiokafka's admin client."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=int(timeout_s * 1000))
    with kafka_trace() as trace:
        try:
            async with asyncio.timeout(timeout_s * KAFKA_BUDGET):
                await admin.start()
                try:
                    await admin.create_topics([NewTopic(topic, 1, 1)])
                finally:
                    await admin.close()
        except (KafkaError, TimeoutError, OSError) as exc:
            return _failed(exc, trace)
    return ProbeResult("OK", 0, f"created {topic}")


KAFKA_ROLES: dict[str, Callable[..., Coroutine[Any, Any, ProbeResult]]] = {
    "produce": kafka_produce,
    "consume": kafka_consume,
    "fetch": kafka_consume,
    "metadata": kafka_metadata,
    "createtopics": kafka_create_topic,
}
"""Scenario Kafka action -> the client that performs it."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netstrata.lab.probe_tools")
    sub = parser.add_subparsers(dest="kind", required=True)
    g = sub.add_parser("grpc")
    g.add_argument("dst")
    g.add_argument("port", type=int)
    g.add_argument("method")
    k = sub.add_parser("kafka")
    k.add_argument("dst")
    k.add_argument("port", type=int)
    k.add_argument("role", choices=sorted(KAFKA_ROLES))
    k.add_argument("topic")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    target = f"{args.dst}:{args.port}"
    if args.kind == "grpc":
        result = grpc_call(target, args.method, args.timeout)
    else:
        result = asyncio.run(KAFKA_ROLES[args.role](target, args.topic, timeout_s=args.timeout))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
