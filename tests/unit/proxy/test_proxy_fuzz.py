"""Hypothesis fuzzing of every proxy parser (h11's AFL invariant): whatever the peer sends, only
`RemoteProtocolError` escapes, and after `next_event()` asks for data the parser never holds
more than its cap. Plus round-trip properties on generated valid messages.

`NETSTRATA_HYPOTHESIS=deep` raises the example count (see proxyfeed.FUZZ_EXAMPLES)."""

from __future__ import annotations

import struct
from typing import Any

import dns.message
import dns.name
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from proxyfeed import FUZZ_EXAMPLES

from netstrata.proxy._kafka_schemas import SCHEMAS
from netstrata.proxy.dns import DNSStreamParser, MalformedDNSMessage, parse_query, parse_response
from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.http1 import HTTP1Connection, HTTP1Limits, State, access_denied
from netstrata.proxy.http1_events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    RequestHead,
)
from netstrata.proxy.kafka import (
    ANSWERED_API_KEYS,
    KafkaRequest,
    KafkaRequestParser,
    KafkaResponseParser,
    MalformedKafkaFrame,
    build_error_response,
    decode_request,
    decode_response,
    encode_request,
)
from netstrata.proxy.sansio import NEED_DATA, PAUSED

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SMALL_HTTP = HTTP1Limits(
    max_head_bytes=512,
    max_target_length=128,
    max_header_count=8,
    max_chunk_line=64,
    max_body_bytes=4096,
)

HTTP_CORPUS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
]


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def _run_http_server(data: bytes, cuts: list[int], eof: bool) -> None:
    conn = HTTP1Connection("server", limits=SMALL_HTTP)
    try:
        for piece in _pieces(data, cuts) + ([b""] if eof else []):
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    assert conn.buffered_bytes <= SMALL_HTTP.max_buffered
                    break
                if event is PAUSED:
                    if conn.their_state is State.SWITCHED or conn.our_state is not State.IDLE:
                        return
                    for reply in (*access_denied(), EndOfMessage()):
                        conn.send(reply)  # a LocalProtocolError here would be our bug
                    continue
                if isinstance(event, ConnectionClosed):
                    return
    except RemoteProtocolError as exc:
        assert 400 <= exc.hint <= 505


@FUZZ
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=8), st.booleans())
def test_http_server_random_bytes(data: bytes, cuts: list[int], eof: bool) -> None:
    _run_http_server(data, cuts, eof)


@st.composite
def _mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(corpus), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(
                st.sampled_from([b"\r", b"\n", b" ", b"\t", b":", b"0", b"\x00", b";", b","])
            )
        elif op == "delete" and data:
            del data[at]
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


@FUZZ
@given(_mutated(HTTP_CORPUS), st.lists(st.integers(0, 4096), max_size=8), st.booleans())
def test_http_server_mutated_requests(data: bytes, cuts: list[int], eof: bool) -> None:
    _run_http_server(data, cuts, eof)


@FUZZ
@given(
    st.binary(max_size=2048),
    st.lists(st.integers(0, 4096), max_size=8),
    st.sampled_from(["GET", "HEAD", "CONNECT"]),
)
def test_http_client_random_response_bytes(data: bytes, cuts: list[int], method: str) -> None:
    conn = HTTP1Connection("client", limits=SMALL_HTTP)
    conn.send(
        RequestHead(method, "h:1" if method == "CONNECT" else "/", "1.1", (("Host", "h"),), "h")
    )
    conn.send(EndOfMessage())
    try:
        for piece in _pieces(data, cuts) + [b""]:
            conn.receive_data(piece)
            event: Any = None
            while event not in (NEED_DATA, PAUSED) and not isinstance(event, ConnectionClosed):
                event = conn.next_event()
            if event is NEED_DATA:
                assert conn.buffered_bytes <= SMALL_HTTP.max_buffered
            else:
                return
    except RemoteProtocolError as exc:
        assert exc.hint in (502, 505)


_TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).map(
    str.strip
)
_PATH = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
    max_size=40,
)


@FUZZ
@given(
    method=_TOKEN,
    path=_PATH,
    headers=st.lists(st.tuples(_TOKEN, _VALUE), max_size=6),
    body=st.binary(max_size=300),
    chunked=st.booleans(),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
)
def test_http_generated_requests_round_trip(
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    chunked: bool,
    cuts: list[int],
) -> None:
    headers = [
        (n, v)
        for n, v in headers
        if n.lower() not in ("host", "content-length", "transfer-encoding", "connection", "upgrade")
    ]
    assume(method != "CONNECT")
    framing = (
        [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(len(body)))]
    )
    head = RequestHead(method, "/" + path, "1.1", tuple([("Host", "h")] + headers + framing), "h")
    sender = HTTP1Connection("client")
    wire = sender.send(head) + sender.send(Data(body)) + sender.send(EndOfMessage())
    receiver = HTTP1Connection("server")
    events: list[Any] = []
    for piece in _pieces(wire, cuts):
        receiver.receive_data(piece)
        while (event := receiver.next_event()) not in (NEED_DATA, PAUSED):
            events.append(event)
    got = events[0]
    assert (got.method, got.target, got.headers, got.chunked) == (
        head.method,
        head.target,
        head.headers,
        chunked,
    )
    assert b"".join(e.data for e in events if isinstance(e, Data)) == body
    assert events[-1] == EndOfMessage()


# ---- Kafka ------------------------------------------------------------------------------------------

KAFKA_CAP = 512
VERSIONS = [
    (k, v) for k, s in sorted(SCHEMAS.items()) for v in range(s.versions[0], s.versions[1] + 1)
]


def _run_kafka(parser: Any, data: bytes, cuts: list[int]) -> None:
    for piece in _pieces(data, cuts) + [b""]:
        parser.receive_data(piece)
        while True:
            try:
                event = parser.next_event()
            except MalformedKafkaFrame:
                continue  # framing intact: the parser must go on
            except RemoteProtocolError as exc:
                assert exc.hint == 42
                return
            if event is NEED_DATA:
                assert parser.buffered_bytes <= KAFKA_CAP + 4
                break
            if isinstance(event, ConnectionClosed):
                return
            if isinstance(event, KafkaRequest):
                build_error_response(event)  # must never raise for a request that parsed


@FUZZ
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=8))
def test_kafka_random_bytes(data: bytes, cuts: list[int]) -> None:
    _run_kafka(KafkaRequestParser(max_frame_size=KAFKA_CAP), data, cuts)
    _run_kafka(KafkaResponseParser(max_frame_size=KAFKA_CAP), data, cuts)


@FUZZ
@given(st.sampled_from(VERSIONS), st.binary(max_size=300), st.integers(-(2**31), 2**31 - 1))
def test_kafka_random_bodies_of_known_apis(
    api: tuple[int, int], body: bytes, correlation: int
) -> None:
    api_key, version = api
    payload = struct.pack(">hhi", api_key, version, correlation) + body
    frame = struct.pack(">i", len(payload)) + payload
    try:
        request = decode_request(frame)
    except MalformedKafkaFrame as exc:
        assert exc.hint == 42
        return
    assert request.correlation_id == correlation
    response = build_error_response(request)
    if response is not None:
        assert api_key in ANSWERED_API_KEYS
        assert decode_response(api_key, version, response)[0] == correlation


@st.composite
def _kafka_mutated(draw: st.DrawFn) -> bytes:
    api_key, version = draw(st.sampled_from(VERSIONS))
    names = draw(st.lists(st.text(max_size=10), min_size=0, max_size=3))
    body = {
        "topics": [{"name": n, "topic": n, "partitions": [{"index": 0}]} for n in names],
        "topic_names": names,
        "groups": [
            {"group_id": "g", "topics": [{"name": n, "partition_indexes": [1]} for n in names]}
        ],
        "coordinator_keys": names,
    }
    frame = bytearray(
        encode_request(api_key, version, 1, draw(st.none() | st.text(max_size=8)), body)
    )
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(4, max(len(frame) - 1, 4)))
        if at < len(frame):
            frame[at] = draw(st.integers(0, 255))
    return bytes(frame)


@FUZZ
@given(_kafka_mutated(), st.lists(st.integers(0, 4096), max_size=6))
def test_kafka_mutated_frames(frame: bytes, cuts: list[int]) -> None:
    _run_kafka(KafkaRequestParser(max_frame_size=KAFKA_CAP), frame + frame, cuts)


@FUZZ
@given(
    st.sampled_from([0, 3, 8, 19]),
    st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5),
    st.none() | st.text(max_size=10),
)
def test_kafka_generated_topics_round_trip(
    api_key: int, names: list[str], client_id: str | None
) -> None:
    schema = SCHEMAS[api_key]
    for version in range(schema.versions[0], schema.versions[1] + 1):
        parts = [{"index": 0, "partition_index": 0}]
        body = {"topics": [{"name": n, "partitions": parts} for n in names]}
        request = decode_request(encode_request(api_key, version, 3, client_id, body))
        assert request.topics == tuple(dict.fromkeys(names))
        assert request.client_id == client_id


# ---- DNS ----------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600))
def test_dns_random_bytes(data: bytes) -> None:
    for parse in (parse_query, parse_response):
        try:
            parse(data)
        except MalformedDNSMessage as exc:
            assert isinstance(exc, RemoteProtocolError)


@FUZZ
@given(st.data())
def test_dns_mutated_queries(data: st.DataObject) -> None:
    wire = bytearray(
        dns.message.make_query(
            data.draw(st.sampled_from(["a.example", "x.y.z.test"])), "A"
        ).to_wire()
    )
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    try:
        parse_query(bytes(wire))
    except MalformedDNSMessage:
        pass


_LABEL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=20,
)


@FUZZ
@given(st.lists(_LABEL, min_size=1, max_size=5))
def test_dns_query_names_come_out_lower_case_fqdn(labels: list[str]) -> None:
    name = ".".join(labels)
    query = parse_query(dns.message.make_query(name, "A").to_wire())
    assert query.qname == name.lower() + "."
    assert dns.name.from_text(query.qname) == dns.name.from_text(name)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 4096), max_size=8))
def test_dns_stream_random_bytes(data: bytes, cuts: list[int]) -> None:
    parser = DNSStreamParser()
    for piece in _pieces(data, cuts) + [b""]:
        parser.receive_data(piece)
        while True:
            try:
                event = parser.next_event()
            except MalformedDNSMessage:
                continue
            except RemoteProtocolError:
                return
            if event is NEED_DATA:
                assert parser.buffered_bytes <= 65537
                break
            if isinstance(event, ConnectionClosed):
                return
