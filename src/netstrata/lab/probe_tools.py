"""Real gRPC and Kafka clients for lab probes, runnable in a child process inside a namespace.

grpcio opens its sockets from its own threads and aiokafka from the event loop, so neither
can be pointed at a namespace the way `clients.py` does with `socket_in_netns`; instead the
lab runs `python -m netstrata.lab.probe_tools ...` as a child that enters the workload's
namespace before exec (`clients.run_in_netns`), and reads one JSON line back:

    grpc DST PORT METHOD            -> {"code": "OK"|"PERMISSION_DENIED"|..., "value": 0|7|...,
                                        "detail": "...", "response": "Door name is: ..."}
    kafka DST PORT produce|consume TOPIC
                                    -> {"code": "OK"|"TopicAuthorizationFailedError"|...,
                                        "detail": "..."}

The same functions serve loopback tests directly (`grpc_call`, `kafka_produce`,
`kafka_consume`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass

from netstrata.lab.grpc_doors import describe_reply, encode_fields, method_path


@dataclass(frozen=True, slots=True)
class ProbeResult:
    code: str
    """gRPC status name, `OK`, or the Kafka client's error class name."""
    value: int = 0
    """gRPC status code (0 for OK), Kafka: 0."""
    detail: str = ""
    response: str = ""
    """What the guide's client prints for a successful gRPC call."""


def grpc_call(target: str, method: str, timeout_s: float = 3.0) -> ProbeResult:
    """One unary call of `cloudcity.DoorManager/<method>` on `target` (`host:port`)."""
    import grpc

    request = encode_fields({1: 1, 2: 999} if method == "SetAccessCode" else {1: 1})
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method_path(method))
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
    try:
        async with asyncio.timeout(timeout_s * 2):
            await producer.start()
            try:
                meta = await producer.send_and_wait(topic, value)
            finally:
                await producer.stop()
    except (KafkaError, TimeoutError, OSError) as exc:
        return ProbeResult(type(exc).__name__, 0, str(exc))
    return ProbeResult("OK", 0, f"offset {meta.offset}")


async def kafka_consume(bootstrap: str, topic: str, timeout_s: float = 3.0) -> ProbeResult:
    """Fetch from the start of partition 0 with aiokafka (assigned, no group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        async with asyncio.timeout(timeout_s * 2):
            await consumer.start()
            try:
                tp = TopicPartition(topic, 0)
                consumer.assign([tp])
                consumer.seek(tp, 0)
                batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 500))
            finally:
                await consumer.stop()
    except (KafkaError, TimeoutError, OSError) as exc:
        return ProbeResult(type(exc).__name__, 0, str(exc))
    records = batch.get(TopicPartition(topic, 0), [])
    return ProbeResult("OK", 0, f"{len(records)} records")


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
    k.add_argument("role", choices=("produce", "consume"))
    k.add_argument("topic")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    target = f"{args.dst}:{args.port}"
    if args.kind == "grpc":
        result = grpc_call(target, args.method, args.timeout)
    elif args.role == "produce":
        result = asyncio.run(kafka_produce(target, args.topic, timeout_s=args.timeout))
    else:
        result = asyncio.run(kafka_consume(target, args.topic, timeout_s=args.timeout))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
