"""A one-partition, single-node Kafka-protocol broker that real clients (aiokafka) can produce
to and fetch from: the lab's stand-in for a Kafka pod.

No real broker can run in the lab: Kafka ships as a JVM tarball download that neither Debian
nor PyPI packages. This one speaks just enough of the protocol for aiokafka: ApiVersions v0
(advertising exactly one version of each API below, so the client's choice is known),
Metadata v1, Produce v3 and Fetch v4 with v2 record batches stored verbatim (the base offset
rewritten, as a real broker does), ListOffsets v1, CreateTopics v0 (an admin client's request;
the topic gets an empty log). Consumers use assigned partitions (no
group coordinator). Bodies go through netstrata's own Kafka codec, the schemas the proxy
uses, so a schema mistake shows up on both sides.

`Broker.answer(frame)` is sans-IO; `serve_kafka` is the asyncio connection handler the lab
servers run on Kafka ports. Metadata advertises the address the client reached (the
connection's local address), so clients come back to the same pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from typing import Any, Final

from netstrata.proxy._kafka_codec import Reader, decode_struct
from netstrata.proxy._kafka_schemas import SCHEMAS
from netstrata.proxy.kafka import encode_response

KAFKA_PORTS: Final = frozenset({9092})
"""Ports on which lab workloads speak Kafka (the broker's well-known port)."""
MAX_FRAME: Final = 16 * 1024 * 1024
"""Largest request accepted (a lab client sends a few KiB; this bounds a broken one)."""

VERSIONS = {0: 3, 1: 4, 2: 1, 3: 1, 18: 0, 19: 0}
"""apiKey -> the one version the broker speaks (ApiVersions advertises exactly these)."""


class Broker:
    """The broker's state: per-topic logs of record batches (one partition each, kept in memory)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: dict[str, list[tuple[int, bytes]]] = {}
        self.next_offset: dict[str, int] = {}
        self.advertised: tuple[str, int] = ("127.0.0.1", 0)
        self.requests: list[tuple[int, tuple[str, ...]]] = []
        """(apiKey, topics) of every request that reached the broker."""

    def answer(self, frame: bytes, advertised: tuple[str, int] | None = None) -> bytes | None:
        """The response to one request frame (length prefix included), None for acks=0.

        Raises:
            ValueError: an API or version the broker does not speak.
        """
        if advertised is not None:
            self.advertised = advertised
        r = Reader(frame, 4)
        api_key, version, cid = r.fixed("int16"), r.fixed("int16"), r.fixed("int32")
        size = r.fixed("int16")
        r.take(max(size, 0))
        if api_key == 18:
            self.requests.append((18, ()))
            versions = b"".join(struct.pack(">hhh", k, v, v) for k, v in sorted(VERSIONS.items()))
            payload = struct.pack(">ihi", cid, 0, len(VERSIONS)) + versions
            return struct.pack(">i", len(payload)) + payload
        if VERSIONS.get(api_key) != version:
            raise ValueError(f"lab broker does not speak apiKey {api_key} v{version}")
        if api_key == 0:  # the codec skips record batches; the broker keeps them
            body = _decode_produce_v3(r)
        else:
            body = decode_struct(r, SCHEMAS[api_key].request, version, False)
        if api_key == 19:
            with self.lock:
                return self._create_topics(cid, body)
        handler = {0: self._produce, 1: self._fetch, 2: self._offsets, 3: self._metadata}[api_key]
        with self.lock:
            response = handler(body)
        if response is None:
            return None
        return encode_response(api_key, version, cid, response)

    def _topics(self, body: dict[str, Any], key: str) -> list[str]:
        return [t[key] for t in body.get("topics") or []]

    def _metadata(self, body: dict[str, Any]) -> dict[str, Any]:
        names = self._topics(body, "name") if body.get("topics") is not None else list(self.logs)
        self.requests.append((3, tuple(names)))
        partitions = [
            {
                "error_code": 0,
                "partition_index": 0,
                "leader_id": 0,
                "replica_nodes": [0],
                "isr_nodes": [0],
            }
        ]
        host, port = self.advertised
        return {
            "brokers": [{"node_id": 0, "host": host, "port": port, "rack": None}],
            "controller_id": 0,
            "topics": [
                {"error_code": 0, "name": n, "is_internal": False, "partitions": partitions}
                for n in names
            ],
        }

    def _create_topics(self, cid: int, body: dict[str, Any]) -> bytes:
        """CreateTopics v0: every topic created (error 0), or 36 TOPIC_ALREADY_EXISTS. Encoded
        here because the shared codec carries only the request schema (the proxy reads topics
        from requests; it never answers CreateTopics itself)."""
        names = [t["name"] for t in body.get("topics") or []]
        self.requests.append((19, tuple(names)))
        payload = struct.pack(">ii", cid, len(names))
        for name in names:
            exists = name in self.logs
            self.logs.setdefault(name, [])
            raw = name.encode()
            payload += struct.pack(">h", len(raw)) + raw + struct.pack(">h", 36 if exists else 0)
        return struct.pack(">i", len(payload)) + payload

    def _produce(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.requests.append((0, tuple(self._topics(body, "name"))))
        responses = []
        for topic in body["topics"]:
            name = topic["name"]
            parts = []
            for part in topic["partitions"]:
                batch = part["records"] or b""
                base = self.next_offset.get(name, 0)
                count = struct.unpack_from(">i", batch, 23)[0] + 1  # lastOffsetDelta + 1
                self.logs.setdefault(name, []).append((base, struct.pack(">q", base) + batch[8:]))
                self.next_offset[name] = base + count
                parts.append({"index": part["index"], "error_code": 0, "base_offset": base})
            responses.append({"name": name, "partitions": parts})
        return None if body["acks"] == 0 else {"responses": responses}

    def _fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((1, tuple(self._topics(body, "topic"))))
        responses = []
        for topic in body["topics"]:
            name = topic["topic"]
            parts = []
            for part in topic["partitions"]:
                offset = part["fetch_offset"]
                data = b"".join(b for base, b in self.logs.get(name, []) if base >= offset)
                parts.append(
                    {
                        "partition_index": part["partition"],
                        "error_code": 0,
                        "high_watermark": self.next_offset.get(name, 0),
                        "last_stable_offset": self.next_offset.get(name, 0),
                        "aborted_transactions": None,
                        "records": data,
                    }
                )
            responses.append({"topic": name, "partitions": parts})
        return {"responses": responses}

    def _offsets(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((2, tuple(self._topics(body, "name"))))
        topics = []
        for topic in body["topics"]:
            name = topic["name"]
            parts = [
                {
                    "partition_index": p["partition_index"],
                    "error_code": 0,
                    "timestamp": -1,
                    "offset": 0 if p["timestamp"] == -2 else self.next_offset.get(name, 0),
                }
                for p in topic["partitions"]
            ]
            topics.append({"name": name, "partitions": parts})
        return {"topics": topics}


def _decode_produce_v3(r: Reader) -> dict[str, Any]:
    def string() -> str | None:
        size = r.fixed("int16")
        return None if size < 0 else r.take(size).decode()

    string()  # transactional_id
    acks, _timeout = r.fixed("int16"), r.fixed("int32")
    topics = []
    for _ in range(r.fixed("int32")):
        name = string()
        parts = []
        for _ in range(r.fixed("int32")):
            index, size = r.fixed("int32"), r.fixed("int32")
            parts.append({"index": index, "records": r.take(size) if size >= 0 else None})
        topics.append({"name": name, "partitions": parts})
    return {"acks": acks, "topics": topics}


async def serve_kafka(
    broker: Broker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer Kafka requests on one connection until the client closes it or breaks framing."""
    local = writer.get_extra_info("sockname")
    advertised = (str(local[0]), int(local[1])) if local else broker.advertised
    while True:
        try:
            size_raw = await reader.readexactly(4)
            size = struct.unpack(">i", size_raw)[0]
            if not 0 < size <= MAX_FRAME:
                return
            frame = size_raw + await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        try:
            answer = broker.answer(frame, advertised)
        except (ValueError, KeyError, struct.error):
            return  # a request this broker does not speak: close, as a real broker does
        if answer is not None:
            writer.write(answer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()


__all__ = ["KAFKA_PORTS", "VERSIONS", "Broker", "serve_kafka"]
