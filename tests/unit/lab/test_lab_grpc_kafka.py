"""The lab servers' gRPC and Kafka workloads with real clients on loopback: grpcio calls the
door service through the HTTP/2 splice of `LabServers`, aiokafka produces to and fetches from
the lab broker. (The servers' namespace handling is covered by the lab's root tests; here the
connection handler is bound on loopback directly.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from netstrata.lab.grpc_doors import DOOR_NAME, decode_fields, encode_fields
from netstrata.lab.probe_tools import grpc_call, kafka_consume, kafka_produce
from netstrata.lab.servers import LabServers


@contextlib.asynccontextmanager
async def lab() -> AsyncIterator[tuple[LabServers, int, int]]:
    servers = LabServers()
    grpc_server = await asyncio.start_server(
        lambda r, w: servers._handle_tcp("door", 50051, r, w), "127.0.0.1", 0
    )
    kafka_server = await asyncio.start_server(
        lambda r, w: servers._handle_tcp("kafka", 9092, r, w), "127.0.0.1", 0
    )
    try:
        yield (
            servers,
            grpc_server.sockets[0].getsockname()[1],
            kafka_server.sockets[0].getsockname()[1],
        )
    finally:
        for server in (grpc_server, kafka_server):
            server.close()
        await servers.stop()


def test_protobuf_fields_round_trip() -> None:
    fields = decode_fields(encode_fields({1: 7, 2: "door", 3: 1.5, 4: True}))
    assert fields == {1: 7, 2: b"door", 3: 1.5, 4: 1}
    with pytest.raises(ValueError):
        decode_fields(b"\x0a\x05ab")


def test_grpc_calls_reach_the_real_door_service() -> None:
    asyncio.run(_grpc_calls())


async def _grpc_calls() -> None:
    async with lab() as (_, port, _kafka):
        result = await asyncio.to_thread(grpc_call, f"127.0.0.1:{port}", "GetName")
        assert (result.code, result.response) == ("OK", f"Door name is: {DOOR_NAME}")
        access = await asyncio.to_thread(grpc_call, f"127.0.0.1:{port}", "SetAccessCode")
        assert access.response == "Successfully set AccessCode"
        unknown = await asyncio.to_thread(grpc_call, f"127.0.0.1:{port}", "OpenAllDoors")
        assert unknown.code == "UNIMPLEMENTED"
        other = await asyncio.to_thread(
            grpc_call, f"127.0.0.1:{port}", "/fraud.FraudDetectionService/CheckTransaction"
        )
        assert (other.code, other.response) == ("OK", "2 bytes echoed")


def test_kafka_produce_then_fetch() -> None:
    asyncio.run(_kafka_roundtrip())


async def _kafka_roundtrip() -> None:
    async with lab() as (servers, _grpc, port):
        bootstrap = f"127.0.0.1:{port}"
        assert (await kafka_produce(bootstrap, "empire-announce", b"hello")).code == "OK"
        assert (await kafka_produce(bootstrap, "empire-announce", b"again")).code == "OK"
        fetched = await kafka_consume(bootstrap, "empire-announce")
        assert (fetched.code, fetched.detail) == ("OK", "2 records")
        assert servers.kafka.next_offset["empire-announce"] == 2
