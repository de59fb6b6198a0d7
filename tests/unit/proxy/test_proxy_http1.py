"""HTTP/1.1 core: parsing (whole, byte by byte, trailing bytes), keep-alive, framing, the
smuggling and size rules (RFC 9112), the writer, and interop with the stdlib client/server."""

from __future__ import annotations

import http.client
import io

import pytest
from proxyfeed import SPLITS, drain, every_split, feed

from netstrata.proxy.errors import LocalProtocolError, RemoteProtocolError
from netstrata.proxy.http1 import (
    ACCESS_DENIED_BODY,
    HTTP1Connection,
    HTTP1Limits,
    State,
    access_denied,
    encode_request_head,
    local_reply,
)
from netstrata.proxy.http1_events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    RequestHead,
    ResponseHead,
)


def server(**limits: int | None) -> HTTP1Connection:
    return HTTP1Connection("server", limits=HTTP1Limits(**limits))  # type: ignore[arg-type]


def client_after(method: str = "GET", **headers: str) -> HTTP1Connection:
    """A client connection that has sent a bodiless `method` request."""
    conn = HTTP1Connection("client")
    hdrs = (("Host", "up"),) + tuple((k.replace("_", "-"), v) for k, v in headers.items())
    conn.send(RequestHead(method=method, target="/", version="1.1", headers=hdrs, host="up"))
    conn.send(EndOfMessage())
    return conn


def reject(
    data: bytes, hint: int, *, how: str = "whole", eof: bool = False, **limits: int | None
) -> RemoteProtocolError:
    conn = server(**limits)
    with pytest.raises(RemoteProtocolError) as info:
        feed(conn, data, how, eof=eof)
    assert info.value.hint == hint, info.value
    assert conn.their_state is State.ERROR
    with pytest.raises(RemoteProtocolError):  # the error state is sticky
        conn.next_event()
    return info.value


GET = b"GET /api/v1/items?x=1&y=%2F HTTP/1.1\r\nHost: svc.local:8080\r\nUser-Agent: t\r\nX-Dup: a\r\nx-dup: b\r\n\r\n"


# ---- requests ---------------------------------------------------------------------------------


def test_request_head_carries_what_rules_http_needs() -> None:
    events = every_split(server, GET)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.method == "GET"
    assert head.target == "/api/v1/items?x=1&y=%2F"  # as on the wire, query included
    assert head.path == head.target
    assert head.version == "1.1"
    assert head.host == "svc.local:8080"
    assert head.headers == (
        ("Host", "svc.local:8080"),
        ("User-Agent", "t"),
        ("X-Dup", "a"),
        ("x-dup", "b"),
    )
    assert head.header("x-DUP") == "a"
    assert events[1:] == [EndOfMessage()]


@pytest.mark.parametrize("how", SPLITS)
def test_trailing_bytes_wait_until_the_response_is_sent(how: str) -> None:
    conn = server()
    events = feed(conn, GET + b"GARBAGE-NOT-YET-READ", how)
    assert [type(e) for e in events] == [RequestHead, EndOfMessage]
    assert conn.next_event() is PAUSED
    assert conn.buffered_bytes == len(b"GARBAGE-NOT-YET-READ")


def test_keep_alive_carries_several_requests_in_order() -> None:
    second = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    third = b"DELETE /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    conn = server()
    conn.receive_data(GET + second + third)
    seen: list[str] = []
    for _ in range(3):
        events = drain(conn)
        head = events[0]
        assert isinstance(head, RequestHead) and isinstance(events[-1], EndOfMessage)
        seen.append(head.method)
        assert conn.next_event() is (PAUSED if head.method != "DELETE" else NEED_DATA)
        for event in (*local_reply(200, b"ok"), EndOfMessage()):
            conn.send(event)
    assert seen == ["GET", "POST", "DELETE"]
    assert conn.our_state is State.MUST_CLOSE and conn.their_state is State.MUST_CLOSE


def test_data_after_a_closing_request_is_discarded() -> None:
    conn = server()
    events = feed(
        conn, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /x HTTP/1.1\r\n\r\n"
    )
    assert [type(e) for e in events] == [RequestHead, EndOfMessage]
    assert conn.their_state is State.MUST_CLOSE
    assert conn.next_event() is NEED_DATA and conn.buffered_bytes == 0
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()


@pytest.mark.parametrize(
    "request_bytes,keep_alive",
    [
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
    ],
)
def test_persistence_follows_rfc_9112_9_3(request_bytes: bytes, keep_alive: bool) -> None:
    head = feed(server(), request_bytes)[0]
    assert head.keep_alive is keep_alive


def test_http10_without_host_is_accepted() -> None:
    head = feed(server(), b"GET / HTTP/1.0\r\n\r\n")[0]
    assert head.host is None and head.version == "1.0"


def test_content_length_body_streams_as_data() -> None:
    body = b"x" * 1000
    events = every_split(
        server, b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + body
    )
    assert events[0].content_length == 1000 and not events[0].chunked
    assert events[1:] == [Data(body), EndOfMessage()]


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b'5;name=value;q="a b"\r\nhello\r\n'
        b"6 ; ext\r\n world\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    )
    events = every_split(server, raw)
    assert events[0].chunked and events[0].content_length is None
    assert events[1:] == [
        Data(b"hello world"),
        EndOfMessage(trailers=(("X-Checksum", "abc"), ("X-Other", "1"))),
    ]


def test_empty_lines_before_a_request_are_ignored() -> None:
    events = every_split(server, b"\r\n\r\n" + GET)
    assert events[0].method == "GET"


@pytest.mark.parametrize(
    "target,method,path,host",
    [
        ("http://Example.com:81/a/b?c", "GET", "/a/b?c", "Example.com:81"),
        ("http://example.com", "GET", "/", "example.com"),
        ("http://example.com?q", "GET", "/?q", "example.com"),
        ("*", "OPTIONS", "*", "h"),
        ("db.internal:5432", "CONNECT", "", "db.internal:5432"),
    ],
)
def test_request_target_forms(target: str, method: str, path: str, host: str) -> None:
    raw = f"{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode()
    head = feed(server(), raw)[0]
    assert (head.target, head.path, head.host) == (target, path, host)


def test_unknown_minor_version_is_read_as_1_1() -> None:
    assert feed(server(), b"GET / HTTP/1.7\r\nHost: h\r\n\r\n")[0].version == "1.1"


# ---- rejections ---------------------------------------------------------------------------------

SMUGGLING = {
    "cl-and-te": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-and-cl": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
    "te-twice-chunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-chunked-not-last": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    "te-identity": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
    "te-xchunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "te-in-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-space-before-colon": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
    "te-vertical-tab": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n",
    "cl-differing": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
    "cl-list-differing": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 5\r\n\r\n",
    "cl-plus": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\n",
    "cl-negative": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    "cl-hex": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x4\r\n\r\n",
    "cl-inner-space": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4 4\r\n\r\n",
    "cl-empty": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
    "cl-huge": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_request_smuggling_shapes_are_400(name: str) -> None:
    reject(SMUGGLING[name], 400)


def test_unimplemented_final_chunked_coding_is_501() -> None:
    reject(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501)


@pytest.mark.parametrize(
    "value",
    [b"Content-Length: 4\r\nContent-Length: 4", b"Content-Length: 4, 4", b"Content-Length: 004"],
)
def test_repeated_identical_content_length_is_one_length(value: bytes) -> None:
    head = feed(server(), b"POST / HTTP/1.1\r\nHost: h\r\n" + value + b"\r\n\r\nbody")[0]
    assert head.content_length == 4


MALFORMED = {
    "obs-fold": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n",
    "obs-fold-tab": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tcontinued\r\n\r\n",
    "bare-lf-everywhere": b"GET / HTTP/1.1\nHost: h\n\n",
    "bare-lf-request-line": b"GET / HTTP/1.1\nHost: h\r\n\r\n",
    "bare-lf-header": b"GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n",
    "bare-lf-terminator": b"GET / HTTP/1.1\r\nHost: h\r\n\n",
    "bare-cr": b"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n",
    "space-in-name": b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: 1\r\n\r\n",
    "at-in-name": b"GET / HTTP/1.1\r\nHost: h\r\nBad@Name: 1\r\n\r\n",
    "empty-name": b"GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    "del-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n",
    "esc-in-value": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x1bb\r\n\r\n",
    "no-host-1.1": b"GET / HTTP/1.1\r\nX: 1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "host-with-userinfo": b"GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n",
    "host-with-slash": b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
    "double-space": b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    "missing-version": b"GET /\r\nHost: h\r\n\r\n",
    "lowercase-http": b"GET / http/1.1\r\nHost: h\r\n\r\n",
    "bad-method": b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
    "fragment": b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
    "non-ascii-target": b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
    "relative-target": b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n",
    "asterisk-get": b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "ftp-absolute": b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect-no-port": b"CONNECT host HTTP/1.1\r\nHost: h\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_malformed_heads_are_400(name: str, how: str) -> None:
    reject(MALFORMED[name], 400, how=how)


def test_http2_preface_version_is_505() -> None:
    reject(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505)


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"5\nhello\r\n0\r\n\r\n",  # bare LF after the size
        b"5\r\nhello\n0\r\n\r\n",  # bare LF after the data
        b"5\r\nhelloXX0\r\n\r\n",  # data longer than the size
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n",
        b" 5\r\nhello\r\n",
        b"5 \r\nhello\r\n",
        b"5;\r\nhello\r\n",
        b'5;a="unterminated\r\nhello\r\n',
        b"12345678901234567\r\n",  # 17 hex digits
        b"5\r\nhello\r\n0\r\nX: 1\n\r\n",  # bare LF in a trailer
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\n folded: 1\r\n\r\n",
    ],
)
def test_malformed_chunked_framing_is_400(body: bytes) -> None:
    reject(CHUNKED_HEAD + body, 400)


# ---- limits -------------------------------------------------------------------------------------


def test_head_over_the_cap_is_431_before_it_ends() -> None:
    big = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Pad: " + b"a" * 70_000
    err = reject(big, 431)
    assert "65536" in str(err)


def test_head_over_the_cap_is_431_even_when_complete() -> None:
    reject(
        b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 2000 + b"\r\n\r\n", 431, max_head_bytes=1024
    )


def test_head_at_the_cap_is_accepted() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
    head += b"a" * (1024 - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == 1024
    assert isinstance(feed(server(max_head_bytes=1024), head)[0], RequestHead)


def test_too_many_header_fields_is_431() -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    reject(b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n", 431)


def test_long_target_is_414() -> None:
    reject(b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414)


def test_long_target_with_bad_line_is_still_414() -> None:
    reject(b"GET /" + b"a" * 100 + b"  HTTP/1.1\r\nHost: h\r\n\r\n", 414, max_target_length=50)


def test_declared_body_over_the_cap_is_413() -> None:
    reject(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n", 413, max_body_bytes=1000)


def test_chunked_body_over_the_cap_is_413_when_it_crosses() -> None:
    conn = server(max_body_bytes=10)
    events = feed(conn, CHUNKED_HEAD + b"6\r\nabcdef\r\n")
    assert events[1] == Data(b"abcdef")
    with pytest.raises(RemoteProtocolError) as info:
        feed(conn, b"5\r\nghijk\r\n")
    assert info.value.hint == 413


def test_long_chunk_line_is_400() -> None:
    reject(CHUNKED_HEAD + b"5;" + b"a" * 5000, 400)


def test_huge_trailer_section_is_431() -> None:
    reject(CHUNKED_HEAD + b"0\r\nX: " + b"a" * 2000, 431, max_head_bytes=1024)


def test_buffer_stays_under_the_cap_while_streaming_a_body() -> None:
    limits = HTTP1Limits()
    conn = HTTP1Connection("server", limits=limits)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n\r\n")
    drain(conn)
    for _ in range(100):
        conn.receive_data(b"z" * 100_000)
        assert drain(conn) and conn.buffered_bytes <= limits.max_buffered


# ---- EOF ------------------------------------------------------------------------------------------


def test_eof_at_a_message_boundary_is_connection_closed() -> None:
    events = feed(server(), GET, eof=True)
    assert events[-1] == ConnectionClosed()


def test_eof_on_a_fresh_connection_is_connection_closed() -> None:
    conn = server()
    conn.receive_data(b"")
    assert drain(conn) == [ConnectionClosed()]
    assert conn.next_event() == ConnectionClosed() and conn.their_state is State.CLOSED


def test_eof_inside_a_head_is_400() -> None:
    reject(b"GET / HTTP/1.1\r\nHo", 400, eof=True)


@pytest.mark.parametrize(
    "body",
    [b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabc", CHUNKED_HEAD + b"5\r\nab"],
)
def test_eof_inside_a_body_is_400(body: bytes) -> None:
    reject(body, 400, eof=True)


# ---- writing --------------------------------------------------------------------------------------


def test_access_denied_is_what_cilium_envoy_sends() -> None:
    conn = server()
    feed(conn, GET)
    head, body = access_denied(now=0.0)
    wire = conn.send(head) + conn.send(body) + conn.send(EndOfMessage())
    assert wire.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"\r\ncontent-length: 15\r\n" in wire and b"\r\ncontent-type: text/plain\r\n" in wire
    assert b"\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n" in wire
    assert wire.endswith(b"\r\n\r\nAccess denied\r\n")
    assert ACCESS_DENIED_BODY == b"Access denied\r\n"
    assert conn.our_state is State.IDLE and conn.their_state is State.IDLE  # ready for the next


def test_403_before_the_body_is_read_then_body_drains() -> None:
    conn = server()
    events = feed(conn, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n")
    assert [type(e) for e in events] == [RequestHead]
    for event in (*access_denied(close=True), EndOfMessage()):
        conn.send(event)
    assert conn.our_state is State.MUST_CLOSE
    assert feed(conn, b"body") == [Data(b"body"), EndOfMessage()]
    assert conn.their_state is State.MUST_CLOSE


def test_an_error_reply_can_follow_a_remote_protocol_error() -> None:
    conn = server()
    with pytest.raises(RemoteProtocolError) as info:
        feed(conn, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    head, body = local_reply(info.value.hint, b"bad request\r\n", close=True)
    wire = conn.send(head) + conn.send(body) + conn.send(EndOfMessage())
    assert wire.startswith(b"HTTP/1.1 400 Bad Request\r\n") and wire.endswith(b"bad request\r\n")
    assert conn.our_state is State.MUST_CLOSE


def test_response_to_head_has_no_body() -> None:
    conn = server()
    feed(conn, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    head = ResponseHead(200, "OK", headers=(("Content-Length", "10"),))
    assert conn.send(head).endswith(b"Content-Length: 10\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(Data(b"0123456789"))


@pytest.mark.parametrize(
    "misuse",
    [
        lambda c: c.send(ResponseHead(200)),  # no request yet
        lambda c: c.send(Data(b"x")),
        lambda c: c.send(RequestHead("GET", "/", "1.1", (("Host", "h"),), "h")),  # wrong role
    ],
)
def test_sending_out_of_order_is_a_local_error(misuse: object) -> None:
    conn = server()
    with pytest.raises(LocalProtocolError):
        misuse(conn)  # type: ignore[operator]
    assert conn.our_state is State.ERROR


def test_body_longer_or_shorter_than_content_length_is_a_local_error() -> None:
    conn = server()
    feed(conn, GET)
    conn.send(ResponseHead(200, headers=(("Content-Length", "3"),)))
    with pytest.raises(LocalProtocolError):
        conn.send(Data(b"four"))
    conn2 = server()
    feed(conn2, GET)
    conn2.send(ResponseHead(200, headers=(("Content-Length", "3"),)))
    conn2.send(Data(b"ab"))
    with pytest.raises(LocalProtocolError):
        conn2.send(EndOfMessage())


@pytest.mark.parametrize(
    "name,value", [("X", "a\r\nInjected: 1"), ("X Y", "1"), ("X", "a\x00"), ("X", " padded")]
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    conn = server()
    feed(conn, GET)
    with pytest.raises(LocalProtocolError):
        conn.send(ResponseHead(200, headers=((name, value), ("Content-Length", "0"))))


def test_forwarding_a_request_reproduces_its_bytes() -> None:
    raw = b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nX-Case: MiXeD\r\nContent-Length: 3\r\n\r\nabc"
    events = feed(server(), raw)
    upstream = HTTP1Connection("client")
    assert b"".join(upstream.send(e) for e in events) == raw


def test_forwarding_a_chunked_request_keeps_body_and_trailers() -> None:
    raw = CHUNKED_HEAD + b"3\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
    events = feed(server(), raw, "bytewise")
    upstream = HTTP1Connection("client")
    wire = b"".join(upstream.send(e) for e in events)
    assert feed(server(), wire) == feed(server(), raw)


def test_encode_request_head_refuses_a_bad_target() -> None:
    with pytest.raises(LocalProtocolError):
        encode_request_head(RequestHead("GET", "/a b", "1.1", (), None))


# ---- the client side: responses from the upstream ------------------------------------------------


@pytest.mark.parametrize("how", SPLITS)
def test_response_framings(how: str) -> None:
    cases = [
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", [Data(b"abc")], False),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            [Data(b"abc")],
            False,
        ),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", [], False),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", [], False),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", [], False),
        ("GET", b"HTTP/1.0 200 OK\r\n\r\nuntil close", [Data(b"until close")], True),
    ]
    for method, raw, body, needs_eof in cases:
        conn = client_after(method)
        events = feed(conn, raw, how, eof=needs_eof)
        assert isinstance(events[0], ResponseHead), raw
        assert events[1:] == body + [EndOfMessage()] + (
            [ConnectionClosed()] if needs_eof else []
        ), raw


def test_interim_100_continue_precedes_the_final_response() -> None:
    conn = client_after()
    events = feed(
        conn, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    assert events[0] == InformationalResponse(100, "Continue")
    assert isinstance(events[1], ResponseHead) and events[2] == EndOfMessage()
    assert conn.our_state is State.IDLE and conn.their_state is State.IDLE


def test_websocket_upgrade_switches_and_hands_over_trailing_bytes() -> None:
    conn = client_after("GET", Upgrade="websocket", Connection="Upgrade")
    events = feed(
        conn, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"
    )
    assert events == [
        InformationalResponse(101, "Switching Protocols", (("Upgrade", "websocket"),))
    ]
    assert conn.their_state is State.SWITCHED and conn.next_event() is PAUSED
    assert conn.trailing_data == (b"\x81\x05hello", False)


def test_server_side_upgrade_pauses_until_answered() -> None:
    conn = server()
    raw = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00"
    )
    feed(conn, raw)
    assert conn.their_state is State.MIGHT_SWITCH and conn.next_event() is PAUSED
    conn.send(InformationalResponse(101, "Switching Protocols", (("Upgrade", "websocket"),)))
    assert conn.our_state is State.SWITCHED and conn.trailing_data == (b"\x81\x00", False)


def test_declined_upgrade_continues_as_http() -> None:
    conn = server()
    feed(conn, b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n" + GET)
    for event in (*access_denied(), EndOfMessage()):
        conn.send(event)
    assert drain(conn)[0].method == "GET"


def test_connect_200_makes_a_tunnel() -> None:
    conn = client_after("CONNECT")
    events = feed(conn, b"HTTP/1.1 200 Connection established\r\n\r\nTLSBYTES")
    assert isinstance(events[0], ResponseHead) and conn.their_state is State.SWITCHED
    assert conn.trailing_data[0] == b"TLSBYTES"


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/3.0 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ],
)
def test_upstream_garbage_is_502(raw: bytes) -> None:
    conn = client_after()
    with pytest.raises(RemoteProtocolError) as info:
        feed(conn, raw)
    assert info.value.hint in (502, 505)


def test_unsolicited_upstream_bytes_are_502() -> None:
    conn = HTTP1Connection("client")
    with pytest.raises(RemoteProtocolError) as info:
        feed(conn, b"HTTP/1.1 200 OK\r\n\r\n")
    assert info.value.hint == 502


# ---- both ends against each other, and against the standard library ------------------------------


def test_client_and_server_cores_agree_over_many_cycles() -> None:
    client, srv = HTTP1Connection("client"), HTTP1Connection("server")
    for i in range(5):
        chunked = i % 2 == 1
        framing = (("Transfer-Encoding", "chunked"),) if chunked else (("Content-Length", "4"),)
        sent = [
            RequestHead("PUT", f"/o/{i}", "1.1", (("Host", "h"),) + framing, "h"),
            Data(b"body"),
            EndOfMessage(),
        ]
        received = feed(srv, b"".join(client.send(e) for e in sent), "bytewise")
        assert received[0].target == f"/o/{i}" and received[1:] == [Data(b"body"), EndOfMessage()]
        reply = [*local_reply(200, b"done %d" % i), EndOfMessage()]
        answer = feed(client, b"".join(srv.send(e) for e in reply), "bytewise")
        assert answer[0].status == 200 and answer[1] == Data(b"done %d" % i)
    assert client.our_state is State.IDLE and srv.their_state is State.IDLE


class _CaptureSocket:
    def __init__(self, reply: bytes = b"") -> None:
        self.sent = bytearray()
        self._reply = reply

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._reply)

    def close(self) -> None:
        pass


def test_stdlib_client_requests_parse_and_our_responses_read_back() -> None:
    sock = _CaptureSocket()
    stdlib = http.client.HTTPConnection("svc.local", 8080)
    stdlib.sock = sock  # type: ignore[assignment]
    stdlib.request("POST", "/submit?id=7", body=b"payload", headers={"X-Trace": "abc"})
    conn = server()
    events = feed(conn, bytes(sock.sent))
    head = events[0]
    assert (head.method, head.target, head.host) == ("POST", "/submit?id=7", "svc.local:8080")
    assert head.header("x-trace") == "abc" and events[1:] == [Data(b"payload"), EndOfMessage()]
    wire = b"".join(conn.send(e) for e in (*access_denied(), EndOfMessage()))
    response = http.client.HTTPResponse(_CaptureSocket(wire))  # type: ignore[arg-type]
    response.begin()
    assert response.status == 403 and response.read() == b"Access denied\r\n"
