"""Fuzzing the enforcement layers: whatever a client or upstream sends, in whatever pieces, a
layer answers with commands and never raises; after it closes the client it stays closed and
silent; nothing forwarded upstream comes from a denied request."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from proxyfeed import FUZZ_EXAMPLES

from netstrata.api.types import HTTPRule, KafkaRule
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy.kafka import encode_request
from netstrata.proxy.layers import (
    ClientData,
    ClientEof,
    Close,
    HTTPLayer,
    KafkaLayer,
    LayerContext,
    SendToServer,
    ServerData,
    ServerEof,
    ServerOpened,
    Start,
)
from netstrata.proxy.policy_source import ConnectionInfo

DST = ("10.0.0.9", 80)


def ctx(parser: str, rules: tuple[object, ...]) -> LayerContext:
    pol = ResolvedPolicy(1, 1, 1, {}, True, False, l7={
        (Direction.INGRESS, 6, 80, 16): L7Policy(parser, (L7Entry(None, rules),))})
    return LayerContext(ConnectionInfo(1, Direction.INGRESS, 7, ("10.0.0.1", 5), DST), lambda: pol)


HTTP_PIECES = st.sampled_from([
    b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /private HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n", b"Content-Length: 3\r\n", b"\r\n", b"abc", b"\n", b"\x00",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"GET /a/../private HTTP/1.1\r\n",
])
EVENTS = st.lists(st.one_of(
    st.builds(ClientData, st.one_of(HTTP_PIECES, st.binary(min_size=1, max_size=40))),
    st.builds(ServerData, st.one_of(HTTP_PIECES, st.binary(min_size=1, max_size=40))),
    st.just(ServerOpened()), st.just(ClientEof()), st.just(ServerEof()),
), max_size=25)


def drive(layer: HTTPLayer | KafkaLayer, events: list[object]) -> list[object]:
    commands: list[object] = list(layer.handle(Start(), 0.0))
    now = 0.0
    for event in events:
        if isinstance(event, ServerData | ServerEof | ServerOpened) and not any(
                type(c).__name__ == "OpenServer" for c in commands):
            continue  # the adapter only reports on upstreams the layer asked for
        now += 0.5
        commands.extend(layer.handle(event, now))  # type: ignore[arg-type]
        commands.extend(layer.handle_timer(now + 1_000))
    return commands


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(EVENTS)
def test_http_layer_never_raises_and_forwards_only_allowed_requests(events: list[object]) -> None:
    layer = HTTPLayer(ctx("http", (HTTPRule(path="/public"),)))
    commands = drive(layer, events)
    sent = b"".join(c.data for c in commands if isinstance(c, SendToServer))
    assert b"/private" not in sent
    closes = [i for i, c in enumerate(commands) if c == Close("client")]
    assert len(closes) <= 1
    if closes:
        assert closes[0] == len(commands) - 1 or all(
            not isinstance(c, SendToServer) for c in commands[closes[0]:])


KAFKA_PIECES = st.sampled_from([
    encode_request(0, 3, 1, "c", {"acks": 1, "timeout_ms": 1, "topics": [
        {"name": "secret", "partitions": [{"index": 0, "records": b"x"}]}]}),
    encode_request(3, 1, 2, "c", {"topics": [{"name": "orders"}]}),
    b"\x00\x00\x00\x08", b"\xff\xff\xff\xff", b"\x00\x00\x00\x04\x00\x01\x00\x00",
])


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(st.one_of(
    st.builds(ClientData, st.one_of(KAFKA_PIECES, st.binary(min_size=1, max_size=40))),
    st.builds(ServerData, st.binary(min_size=1, max_size=40)),
    st.just(ServerOpened()), st.just(ClientEof()), st.just(ServerEof())), max_size=20))
def test_kafka_layer_never_raises_and_never_forwards_denied_topics(events: list[object]) -> None:
    layer = KafkaLayer(ctx("kafka", (KafkaRule(topic="orders"),)))
    commands = drive(layer, events)
    sent = b"".join(c.data for c in commands if isinstance(c, SendToServer))
    assert b"secret" not in sent
