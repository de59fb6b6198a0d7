"""Kafka core: framing, request header v0-v2, topic extraction for every decoded API version
(classic and flexible), error-29 responses, recovery from garbage frames, and cross-checks
against aiokafka's own protocol classes (no broker involved)."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import pytest
from proxyfeed import SPLITS, chunks, every_split, feed

from netstrata.proxy._kafka_schemas import SCHEMAS
from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.kafka import (
    ANSWERED_API_KEYS,
    TOPIC_AUTHORIZATION_FAILED,
    KafkaRequest,
    KafkaRequestParser,
    KafkaResponse,
    KafkaResponseParser,
    MalformedKafkaFrame,
    build_error_response,
    decode_request,
    decode_response,
    encode_request,
)
from netstrata.proxy.sansio import NEED_DATA, ConnectionClosed

ORDERS_ID = uuid.UUID("0b0c0d0e-0000-4000-8000-000000000001")
AUDIT_ID = uuid.UUID("0b0c0d0e-0000-4000-8000-000000000002")


def _topics(names_and_ids: list[tuple[str, uuid.UUID]], **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, "topic": n, "topic_id": i.bytes, **extra} for n, i in names_and_ids]


TWO = [("orders", ORDERS_ID), ("audit", AUDIT_ID)]


def sample(api_key: int, version: int) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """(request body, expected topic names, expected topic ids) for one API version."""
    by_id = api_key == 1 and version >= 13
    names = ("orders", "audit")
    ids = (str(ORDERS_ID), str(AUDIT_ID))
    if api_key == 0:
        parts = [{"index": 0, "records": b"batch"}, {"index": 1, "records": None}]
        return {"acks": -1, "topics": _topics(TWO, partitions=parts)}, names, ()
    if api_key == 1:
        body = {
            "topics": _topics(TWO, partitions=[{"partition": 0, "fetch_offset": 5}]),
            "forgotten_topics_data": [{"topic": "old", "topic_id": bytes(16), "partitions": [3]}],
        }
        return body, (() if by_id else names), (ids if by_id else ())
    if api_key in (2, 8):
        parts = [{"partition_index": 0, "timestamp": -1, "committed_offset": 7}]
        return {"group_id": "g", "topics": _topics(TWO, partitions=parts)}, names, ()
    if api_key == 3:
        return {"topics": [{"name": "orders", "topic_id": bytes(16)}, {"name": "audit"}]}, names, ()
    if api_key == 9:
        topics = [{"name": n, "partition_indexes": [0, 1]} for n in names]
        if version >= 8:
            return (
                {
                    "groups": [
                        {"group_id": "g1", "topics": topics[:1]},
                        {"group_id": "g2", "topics": topics[1:]},
                    ]
                },
                names,
                (),
            )
        return {"group_id": "g", "topics": topics}, names, ()
    if api_key == 10:
        return {"key": "group-1", "coordinator_keys": ["group-1", "group-2"]}, (), ()
    if api_key == 19:
        configs = [{"name": "cleanup.policy", "value": "compact"}]
        topics = [
            {"name": n, "num_partitions": 3, "replication_factor": 1, "configs": configs}
            for n in names
        ]
        return {"topics": topics}, names, ()
    if api_key == 20:
        return {"topic_names": list(names), "topics": [{"name": n} for n in names]}, names, ()
    raise AssertionError(api_key)


VERSIONS = [
    (k, v) for k, s in sorted(SCHEMAS.items()) for v in range(s.versions[0], s.versions[1] + 1)
]


@pytest.mark.parametrize("api_key,version", VERSIONS, ids=lambda x: str(x))
def test_round_trip_every_decoded_version(api_key: int, version: int) -> None:
    body, names, ids = sample(api_key, version)
    frame = encode_request(
        api_key, version, correlation_id=0x01020304, client_id="svc-a", body=body
    )
    (request,) = every_split(KafkaRequestParser, frame)
    assert (request.api_key, request.api_version) == (api_key, version)
    assert request.correlation_id == 0x01020304 and request.client_id == "svc-a"
    assert request.body_parsed and request.frame == frame
    assert request.topics == names and request.topic_ids == ids
    assert request.api_name == SCHEMAS[api_key].name


@pytest.mark.parametrize(
    "api_key,version", [kv for kv in VERSIONS if kv[0] in ANSWERED_API_KEYS], ids=lambda x: str(x)
)
def test_denied_request_gets_error_29_with_its_correlation_id(api_key: int, version: int) -> None:
    body, names, ids = sample(api_key, version)
    request = decode_request(encode_request(api_key, version, 77, "c", body))
    frame = build_error_response(request)
    assert frame is not None and struct.unpack(">i", frame[:4])[0] == len(frame) - 4
    (response,) = feed(KafkaResponseParser(), frame)
    assert response.correlation_id == 77
    correlation, decoded = decode_response(api_key, version, frame)
    assert correlation == 77
    codes = _collect(decoded, "error_code")
    assert TOPIC_AUTHORIZATION_FAILED in codes and set(codes) <= {0, TOPIC_AUTHORIZATION_FAILED}
    answered_names = set(_collect(decoded, "name")) | set(_collect(decoded, "topic"))
    assert set(names) <= answered_names


def _collect(value: Any, key: str) -> list[Any]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == key] + [
            x for v in value.values() for x in _collect(v, key)
        ]
    if isinstance(value, list):
        return [x for v in value for x in _collect(v, key)]
    return []


@pytest.mark.parametrize("api_key", [18, 11, 12, 32, 22, 19, 20])
def test_other_api_keys_get_no_answer(api_key: int) -> None:
    if api_key in SCHEMAS:  # decoded (topics listed) but never answered
        request = decode_request(encode_request(api_key, 1, 9, "c", sample(api_key, 1)[0]))
        assert request.topics == ("orders", "audit")
    else:
        frame = struct.pack(">hhi", api_key, 0, 9) + struct.pack(">h", 1) + b"c"
        request = decode_request(struct.pack(">i", len(frame)) + frame)
    assert build_error_response(request) is None


def test_produce_with_acks_0_gets_no_answer() -> None:
    body, _, _ = sample(0, 3)
    request = decode_request(encode_request(0, 3, 1, "c", {**body, "acks": 0}))
    assert not request.expects_response and build_error_response(request) is None


def test_unknown_version_reports_header_but_not_topics() -> None:
    frame = struct.pack(">hhi", 0, 12, 5) + struct.pack(">h", 3) + b"cli" + b"\x00whatever"
    (request,) = every_split(KafkaRequestParser, struct.pack(">i", len(frame)) + frame)
    assert request == KafkaRequest(0, 12, 5, "cli", body_parsed=False, frame=request.frame)
    assert build_error_response(request) is None


def test_flexible_header_of_an_undecoded_api_keeps_client_id() -> None:
    # ApiVersions v3: request header v2 (tagged fields), compact body
    payload = (
        struct.pack(">hhi", 18, 3, 42)
        + struct.pack(">h", 7)
        + b"kcat-cl"
        + b"\x00"
        + b"\x05kcat\x041.7\x00"
    )
    (request,) = feed(KafkaRequestParser(), struct.pack(">i", len(payload)) + payload)
    assert (request.api_name, request.api_version, request.client_id) == (
        "apiversions",
        3,
        "kcat-cl",
    )
    assert not request.body_parsed


def test_null_client_id_and_controlled_shutdown_v0_header() -> None:
    payload = struct.pack(">hhih", 3, 0, 1, -1) + struct.pack(">i", 0)
    assert decode_request(struct.pack(">i", len(payload)) + payload).client_id is None
    payload = struct.pack(">hhi", 7, 0, 2) + struct.pack(">i", 1001)
    request = decode_request(struct.pack(">i", len(payload)) + payload)
    assert (request.api_name, request.client_id, request.body_parsed) == (
        "controlledshutdown",
        None,
        False,
    )


def test_metadata_null_topics_means_all_topics_and_names_none() -> None:
    request = decode_request(encode_request(3, 4, 1, "c", {"topics": None}))
    assert request.body_parsed and request.topics == ()
    frame = build_error_response(request)
    assert frame is not None and decode_response(3, 4, frame)[1]["topics"] == []


def test_metadata_v12_topic_by_id_only() -> None:
    request = decode_request(
        encode_request(3, 12, 1, "c", {"topics": [{"name": None, "topic_id": ORDERS_ID.bytes}]})
    )
    assert request.topics == () and request.topic_ids == (str(ORDERS_ID),)
    _, body = decode_response(3, 12, build_error_response(request) or b"")
    assert body["topics"][0]["name"] is None and body["topics"][0]["topic_id"] == ORDERS_ID.bytes


def test_offset_fetch_for_all_topics_carries_the_error_at_group_level() -> None:
    request = decode_request(encode_request(9, 5, 1, "c", {"group_id": "g", "topics": None}))
    _, body = decode_response(9, 5, build_error_response(request) or b"")
    assert body["error_code"] == TOPIC_AUTHORIZATION_FAILED and body["topics"] == []


def test_duplicate_topics_are_listed_once() -> None:
    body = {
        "topics": [
            {"name": "a", "partitions": [{"index": 0}]},
            {"name": "a", "partitions": [{"index": 1}]},
        ]
    }
    assert decode_request(encode_request(0, 9, 1, "c", body)).topics == ("a",)


# ---- framing, garbage and recovery ----------------------------------------------------------------


def _valid(correlation_id: int = 1) -> bytes:
    return encode_request(3, 1, correlation_id, "c", {"topics": [{"name": "t"}]})


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x03",  # shorter than apiKey+apiVersion+correlationId
        struct.pack(">hhih", 3, 1, 9, 10) + b"abc",  # clientId longer than the frame
        struct.pack(">hhih", 3, 1, 9, 1) + b"\xff" + struct.pack(">i", 0),  # clientId not UTF-8
        struct.pack(">hhih", 3, 1, 9, 0) + struct.pack(">i", 1_000_000),  # count beyond the frame
        struct.pack(">hhih", 3, 1, 9, 0) + struct.pack(">i", -2),  # negative count
        struct.pack(">hhih", 3, 0, 9, 0) + struct.pack(">i", -1),  # null topics before v1
        struct.pack(">hhih", 3, 1, 9, 0) + struct.pack(">i", 0) + b"junk",  # trailing bytes
        struct.pack(">hhih", 3, -1, 9, 0),  # negative version
        struct.pack(">hhih", 3, 9, 9, 0) + b"\xff\xff\xff\xff\xff\xff",  # varint over 5 bytes
        struct.pack(">hhih", 0, 9, 9, 0)
        + b"\x00"
        + b"\x01"
        + b"\x00\x00\x00\x00\x00\x00"
        + b"\x02\x02",
    ],
)
@pytest.mark.parametrize("how", SPLITS)
def test_garbage_frame_raises_then_next_frame_parses(garbage: bytes, how: str) -> None:
    parser = KafkaRequestParser()
    stream = struct.pack(">i", len(garbage)) + garbage + _valid(5)
    errors: list[MalformedKafkaFrame] = []
    requests: list[KafkaRequest] = []
    for piece in chunks(stream, how):
        parser.receive_data(piece)
        while True:
            try:
                event = parser.next_event()
            except MalformedKafkaFrame as exc:
                errors.append(exc)
                continue
            if event is NEED_DATA:
                break
            requests.append(event)
    (error,) = errors
    assert error.hint == 42
    if len(garbage) >= 8:
        assert error.correlation_id == 9
    assert [r.correlation_id for r in requests] == [5]


@pytest.mark.parametrize("size", [-1, -(2**31), 1025])
def test_bad_frame_size_breaks_the_connection(size: int) -> None:
    parser = KafkaRequestParser(max_frame_size=1024)
    parser.receive_data(struct.pack(">i", size) + b"x" * 10)
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.hint == 42 and not isinstance(info.value, MalformedKafkaFrame)
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_frame_at_the_cap_is_accepted_and_buffering_is_bounded() -> None:
    frame = _valid()
    parser = KafkaRequestParser(max_frame_size=len(frame) - 4)
    for byte in frame[:-1]:
        parser.receive_data(bytes([byte]))
        assert parser.next_event() is NEED_DATA
        assert parser.buffered_bytes <= len(frame)
    parser.receive_data(frame[-1:])
    assert isinstance(parser.next_event(), KafkaRequest) and parser.buffered_bytes == 0


def test_eof_between_frames_and_inside_one() -> None:
    assert feed(KafkaRequestParser(), _valid(), eof=True)[-1] == ConnectionClosed()
    with pytest.raises(RemoteProtocolError):
        feed(KafkaRequestParser(), _valid()[:-2], eof=True)


def test_several_frames_in_one_read_come_out_in_order() -> None:
    stream = b"".join(_valid(i) for i in range(10))
    events = every_split(KafkaRequestParser, stream)
    assert [e.correlation_id for e in events] == list(range(10))


def test_response_parser_reports_correlation_ids() -> None:
    frames = b"".join(build_error_response(decode_request(_valid(i))) or b"" for i in (3, 1, 2))
    events = every_split(KafkaResponseParser, frames)
    assert [e.correlation_id for e in events] == [3, 1, 2]
    assert all(isinstance(e, KafkaResponse) for e in events)


# ---- aiokafka's encoder as an independent source of frames ---------------------------------------

aiokafka_protocol = pytest.importorskip("aiokafka.protocol", reason="aiokafka not installed")
from aiokafka.protocol import (  # noqa: E402
    admin,
    commit,
    coordination,
    fetch,
    metadata,
    offset,
    produce,
)
from aiokafka.protocol.api import RequestHeader_v1  # noqa: E402
from aiokafka.protocol.types import (  # noqa: E402
    Array,
    Boolean,
    Bytes,
    Int8,
    Int16,
    Int32,
    Int64,
    Schema,
    String,
)

TOPIC_FIELDS = {"topic", "topics"}


class _Filler:
    """Values for any aiokafka request schema; every topic-name string gets a fresh name."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def value(self, kind: Any, name: str) -> Any:
        if isinstance(kind, Schema):
            return tuple(self.value(f, n) for n, f in zip(kind.names, kind.fields, strict=True))
        if isinstance(kind, Array):
            return [self.value(kind.array_of, name) for _ in range(2)]
        if isinstance(kind, String):
            if name in TOPIC_FIELDS:
                self.topics.append(f"topic-{len(self.topics)}")
                return self.topics[-1]
            return "x"
        if kind is Bytes:
            return b"records"
        if kind is Boolean:
            return False
        if kind in (Int8, Int16, Int32, Int64):
            return 1
        raise AssertionError(f"unhandled aiokafka type {kind!r}")


AIOKAFKA_REQUESTS = [
    cls
    for family in (
        produce.ProduceRequest,
        fetch.FetchRequest,
        offset.OffsetRequest,
        metadata.MetadataRequest,
        commit.OffsetCommitRequest,
        commit.OffsetFetchRequest,
        coordination.FindCoordinatorRequest,
        admin.CreateTopicsRequest,
        admin.DeleteTopicsRequest,
    )
    for cls in family._CLASSES
]


@pytest.mark.parametrize("cls", AIOKAFKA_REQUESTS, ids=lambda c: c.__name__)
def test_aiokafka_encoded_requests_parse(cls: Any) -> None:
    filler = _Filler()
    struct_ = cls(*filler.value(cls.SCHEMA, ""))
    payload = (
        RequestHeader_v1(struct_, correlation_id=99, client_id="aiokafka").encode()
        + struct_.encode()
    )
    frame = struct.pack(">i", len(payload)) + payload
    (request,) = every_split(KafkaRequestParser, frame)
    assert (request.api_key, request.api_version) == (cls.API_KEY, cls.API_VERSION)
    assert request.client_id == "aiokafka" and request.correlation_id == 99 and request.body_parsed
    if (
        cls.API_KEY == 1 and cls.API_VERSION >= 7
    ):  # forgotten topics are not topics the request reads
        filler.topics = filler.topics[:2]
    assert request.topics == tuple(filler.topics)
    response_frame = build_error_response(request)
    if cls.API_KEY not in ANSWERED_API_KEYS:
        assert response_frame is None
        return
    assert response_frame is not None
    response = cls.RESPONSE_TYPE.decode(response_frame[8:])  # aiokafka decodes our bytes
    assert response.encode() == response_frame[8:]
    text = repr(response)
    assert "error_code=29" in text
    for topic in filler.topics:
        assert f"'{topic}'" in text
