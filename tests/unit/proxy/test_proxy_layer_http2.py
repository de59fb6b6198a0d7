"""HTTP/2 enforcement layer without sockets: a real h2 client (and a real h2 server upstream)
drive `H2Layer` through events, and we read what each side receives. Covers per-stream
verdicts (plain 403, gRPC PERMISSION_DENIED trailers-only), forwarding unchanged, and the
refusals: malformed frames, stream floods, rapid reset, HPACK bombs, slow clients."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.api.types import HTTPRule
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy.layers import (
    ClientData,
    ClientEof,
    Close,
    LayerContext,
    OpenServer,
    SendToClient,
    SendToServer,
    ServerData,
    ServerOpened,
    Start,
    Verdict,
)
from netstrata.proxy.layers._h2_streams import DEFAULT_H2_LIMITS, H2Limits
from netstrata.proxy.layers.http import DEFAULT_HTTP_SETTINGS, HTTPSettings
from netstrata.proxy.layers.http2 import H2_PREFACE, H2Layer
from netstrata.proxy.layers.http_detect import HTTPDetectLayer
from netstrata.proxy.policy_source import ConnectionInfo

DST = ("10.0.2.7", 50051)
TERMINAL = 4242
T0 = 1_000.0
RULES = (
    HTTPRule(method="POST", path="/cloudcity.DoorManager/GetName"),
    HTTPRule(method="GET", path="/public"),
)
POLICY = ResolvedPolicy(
    endpoint_id=30,
    identity=600,
    revision=3,
    entries={},
    ingress_enforced=True,
    egress_enforced=False,
    l7={
        (Direction.INGRESS, 6, DST[1], 16): L7Policy(
            "http", (L7Entry(frozenset({TERMINAL}), RULES, cookie=1),)
        )
    },
    cookies={1: "CiliumNetworkPolicy default/rule1 ingress[0]"},
)
GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]


def ctx() -> LayerContext:
    return LayerContext(
        ConnectionInfo(30, Direction.INGRESS, TERMINAL, ("10.0.1.5", 40000), DST),
        lambda: POLICY,
        None,
        "node-a",
    )


class Pair:
    """An h2 client, the layer, and (once opened) an h2 server standing for the upstream."""

    def __init__(
        self,
        limits: H2Limits = DEFAULT_H2_LIMITS,
        settings_: HTTPSettings = DEFAULT_HTTP_SETTINGS,
        detect: bool = False,
    ) -> None:
        self.layer: Any = (
            HTTPDetectLayer(ctx(), settings_, limits)
            if detect
            else H2Layer(ctx(), settings_, limits)
        )
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.now = T0
        self.commands: list[Any] = []
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []
        self.opened = False
        self.closed = False
        self.client.initiate_connection()
        self.run(Start())

    def run(self, event: Any) -> None:
        self.absorb(self.layer.handle(event, self.now))

    def timer(self, at: float) -> None:
        self.now = at
        self.absorb(self.layer.handle_timer(at))

    def absorb(self, commands: list[Any]) -> None:
        self.commands += commands
        for cmd in commands:
            if isinstance(cmd, SendToClient) and not self.closed:
                self.client_events += self.client.receive_data(cmd.data)
            elif isinstance(cmd, SendToServer):
                self.server_events += self.server.receive_data(cmd.data)
            elif isinstance(cmd, OpenServer) and not self.opened:
                self.opened = True
                self.server.initiate_connection()
                self.run(ServerOpened())
                self.flush_server()
            elif isinstance(cmd, Close) and cmd.side == "client":
                self.closed = True
        self.flush_client()

    def flush_client(self) -> None:
        data = self.client.data_to_send()
        if data and not self.closed:
            self.run(ClientData(data))

    def flush_server(self) -> None:
        data = self.server.data_to_send()
        if data:
            self.run(ServerData(data))

    def request(
        self, method: str, path: str, extra: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> int:
        sid = self.client.get_next_available_stream_id()
        headers = [
            (":method", method),
            (":scheme", "http"),
            (":path", path),
            (":authority", "doors:50051"),
            *(extra or []),
        ]
        self.client.send_headers(sid, headers, end_stream=not body)
        if body:
            self.client.send_data(sid, body, end_stream=True)
        self.flush_client()
        return sid

    def of(self, kind: type, events: list[Any], sid: int | None = None) -> list[Any]:
        return [
            e
            for e in events
            if isinstance(e, kind) and (sid is None or getattr(e, "stream_id", None) == sid)
        ]

    def goaway(self) -> int | None:
        codes = [
            e.error_code
            for e in self.client_events
            if isinstance(e, h2.events.ConnectionTerminated)
        ]
        return int(codes[-1]) if codes else None

    def flows(self) -> list[Any]:
        return [c.flow for c in self.commands if isinstance(c, Verdict)]


def headers_of(event: Any) -> dict[bytes, bytes]:
    return dict(event.headers)


def test_allowed_grpc_call_is_forwarded_unchanged_and_answered() -> None:
    p = Pair()
    sid = p.request(
        "POST", "/cloudcity.DoorManager/GetName", GRPC_HEADERS, b"\x00\x00\x00\x00\x02\x08\x01"
    )
    [req] = p.of(h2.events.RequestReceived, p.server_events)
    got = headers_of(req)
    assert got[b":path"] == b"/cloudcity.DoorManager/GetName" and got[b":method"] == b"POST"
    assert got[b"content-type"] == b"application/grpc" and got[b"te"] == b"trailers"
    body = b"".join(e.data for e in p.of(h2.events.DataReceived, p.server_events))
    assert body == b"\x00\x00\x00\x00\x02\x08\x01"
    up = req.stream_id
    p.server.send_headers(up, [(":status", "200"), ("content-type", "application/grpc")])
    p.server.send_data(up, b"\x00\x00\x00\x00\x03\x0a\x01x")
    p.server.send_headers(up, [("grpc-status", "0")], end_stream=True)
    p.flush_server()
    assert (
        headers_of(p.of(h2.events.ResponseReceived, p.client_events, sid)[0])[b":status"] == b"200"
    )
    assert b"".join(e.data for e in p.of(h2.events.DataReceived, p.client_events, sid)) == (
        b"\x00\x00\x00\x00\x03\x0a\x01x"
    )
    [trailers] = p.of(h2.events.TrailersReceived, p.client_events, sid)
    assert headers_of(trailers)[b"grpc-status"] == b"0"
    assert p.of(h2.events.StreamEnded, p.client_events, sid)
    assert p.layer.stream_count == 0


def test_upstream_trailers_only_response_reaches_the_client_as_one_headers_frame() -> None:
    p = Pair()
    sid = p.request("POST", "/cloudcity.DoorManager/GetName", GRPC_HEADERS, b"\x00" * 5)
    [req] = p.of(h2.events.RequestReceived, p.server_events)
    status = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")]
    p.server.send_headers(req.stream_id, status, end_stream=True)
    p.flush_server()
    [resp] = p.of(h2.events.ResponseReceived, p.client_events, sid)
    assert headers_of(resp)[b"grpc-status"] == b"12"
    assert resp.stream_ended is not None  # END_STREAM on the HEADERS frame itself
    assert not p.of(h2.events.DataReceived, p.client_events, sid)
    assert not p.of(h2.events.TrailersReceived, p.client_events, sid)
    assert p.layer.stream_count == 0


def test_denied_grpc_call_gets_trailers_only_permission_denied() -> None:
    p = Pair()
    sid = p.request("POST", "/cloudcity.DoorManager/SetAccessCode", GRPC_HEADERS, b"\x00" * 5)
    [resp] = p.of(h2.events.ResponseReceived, p.client_events, sid)
    got = headers_of(resp)
    assert got[b":status"] == b"200" and got[b"grpc-status"] == b"7"
    assert got[b"grpc-message"] == b"Access denied%0D%0A"
    assert resp.stream_ended is not None
    assert not p.opened  # the upstream never heard of it
    request_flows = [f for f in p.flows() if f.l7.type == L7FlowType.REQUEST]
    assert [f.verdict for f in request_flows] == [FV.DROPPED]


def test_denied_plain_h2_gets_403_and_other_streams_continue() -> None:
    p = Pair()
    denied = p.request("GET", "/private")
    allowed = p.request("GET", "/public")
    resp = p.of(h2.events.ResponseReceived, p.client_events, denied)[0]
    assert headers_of(resp)[b":status"] == b"403"
    assert b"".join(e.data for e in p.of(h2.events.DataReceived, p.client_events, denied)) == (
        b"Access denied\r\n"
    )
    [req] = p.of(h2.events.RequestReceived, p.server_events)
    assert headers_of(req)[b":path"] == b"/public"
    p.server.send_headers(req.stream_id, [(":status", "204")], end_stream=True)
    p.flush_server()
    assert (
        headers_of(p.of(h2.events.ResponseReceived, p.client_events, allowed)[0])[b":status"]
        == b"204"
    )
    assert p.goaway() is None


def test_path_is_normalized_before_matching_and_forwarding() -> None:
    p = Pair()
    p.request("GET", "/private/../public")
    [req] = p.of(h2.events.RequestReceived, p.server_events)
    assert headers_of(req)[b":path"] == b"/public"


def test_upstream_unreachable_is_unavailable_for_grpc() -> None:
    p = Pair()
    p.opened = True  # answer the open ourselves, with a failure
    sid = p.request("POST", "/cloudcity.DoorManager/GetName", GRPC_HEADERS)
    from netstrata.proxy.layers import ServerOpenFailed

    p.run(ServerOpenFailed("connection refused"))
    assert (
        headers_of(p.of(h2.events.ResponseReceived, p.client_events, sid)[0])[b"grpc-status"]
        == b"14"
    )


# ---- refusals ----------------------------------------------------------------------------------


def test_bad_preface_is_goaway_protocol_error() -> None:
    layer = H2Layer(ctx())
    layer.handle(Start(), T0)
    out = layer.handle(ClientData(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 9), T0)
    assert Close("client") in out
    assert layer.closed


def test_malformed_frame_is_goaway_with_its_code() -> None:
    p = Pair()
    # a SETTINGS frame whose length is not a multiple of 6: FRAME_SIZE_ERROR (RFC 9113 §6.5)
    p.run(ClientData(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5))
    assert p.goaway() == 0x6 and p.closed


def test_frame_over_max_frame_size_is_frame_size_error() -> None:
    p = Pair()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(
        sid, [(":method", "POST"), (":scheme", "http"), (":path", "/public"), (":authority", "a")]
    )
    p.flush_client()
    size = 20_000
    p.run(ClientData(size.to_bytes(3, "big") + b"\x00\x00" + sid.to_bytes(4, "big") + b"x" * size))
    assert p.goaway() == 0x6 and p.closed


def test_too_many_concurrent_streams_is_refused() -> None:
    p = Pair(limits=H2Limits(max_concurrent_streams=4))
    for _ in range(4):  # open, never finished: the request bodies are still coming
        sid = p.client.get_next_available_stream_id()
        p.client.send_headers(
            sid,
            [(":method", "POST"), (":scheme", "http"), (":path", "/public"), (":authority", "a")],
        )
    p.flush_client()
    assert p.goaway() is None
    # the client ignores our SETTINGS: force the fifth stream onto the wire
    p.client.remote_settings.max_concurrent_streams = 100
    p.client.remote_settings.acknowledge()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(
        sid,
        [(":method", "GET"), (":scheme", "http"), (":path", "/public"), (":authority", "a")],
        end_stream=True,
    )
    p.flush_client()
    assert p.goaway() == 0x1 and p.closed


def test_rapid_reset_is_enhance_your_calm() -> None:
    p = Pair(limits=H2Limits(abuse_burst=20, abuse_rate=1.0))
    for _ in range(30):
        if p.closed:
            break
        sid = p.client.get_next_available_stream_id()
        p.client.send_headers(
            sid,
            [(":method", "POST"), (":scheme", "http"), (":path", "/public"), (":authority", "a")],
        )
        p.client.reset_stream(sid, 8)
        p.flush_client()
    assert p.goaway() == 0xB and p.closed


def test_ping_flood_is_enhance_your_calm() -> None:
    p = Pair(limits=H2Limits(abuse_burst=10, abuse_rate=1.0))
    for i in range(20):
        if p.closed:
            break
        p.client.ping(i.to_bytes(8, "big"))
        p.flush_client()
    assert p.goaway() == 0xB


def test_hpack_bomb_is_refused() -> None:
    p = Pair(limits=H2Limits(max_header_list_size=8 * 1024))
    big = "x" * 4000
    sid = p.client.get_next_available_stream_id()
    # one 4 KB header, then many references to it: small on the wire, huge once decoded
    p.client.send_headers(
        sid,
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/public"),
            (":authority", "a"),
            ("x-bomb", big),
        ],
        end_stream=True,
    )
    p.flush_client()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(
        sid,
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/public"),
            (":authority", "a"),
            *[("x-bomb", big)] * 20,
        ],
        end_stream=True,
    )
    p.flush_client()
    assert p.goaway() == 0xB and p.closed


def test_slow_client_without_a_request_gets_goaway() -> None:
    p = Pair()
    deadline = p.layer.get_timer()
    assert deadline == T0 + HTTPSettings().timeouts.header
    p.timer(deadline - 0.5)
    assert not p.closed
    p.timer(deadline)
    assert p.goaway() == 0x0 and p.closed


def test_stalled_request_body_is_reset_and_connection_goes_on() -> None:
    p = Pair()
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(
        sid, [(":method", "POST"), (":scheme", "http"), (":path", "/public"), (":authority", "a")]
    )
    p.flush_client()
    p.timer(p.layer.get_timer())
    resets = p.of(h2.events.StreamReset, p.client_events, sid)
    assert resets and resets[0].error_code == 0x8
    assert not p.closed
    other = p.request("GET", "/private")
    assert p.of(h2.events.ResponseReceived, p.client_events, other)


def test_detect_layer_picks_h2_for_the_preface_in_pieces() -> None:
    p = Pair(detect=True)
    assert isinstance(p.layer.inner, H2Layer)
    sid = p.request("GET", "/private")
    assert (
        headers_of(p.of(h2.events.ResponseReceived, p.client_events, sid)[0])[b":status"] == b"403"
    )


@pytest.mark.parametrize(
    "first", [b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n", b"P", b"PRI * HTTP/1.1"]
)
def test_detect_layer_picks_http1_otherwise(first: bytes) -> None:
    layer = HTTPDetectLayer(ctx())
    layer.handle(Start(), T0)
    layer.handle(ClientData(first), T0)
    if first == b"P":
        assert layer.inner is None  # still a prefix of the preface
        layer.handle(ClientEof(), T0)
    assert layer.inner is not None and not isinstance(layer.inner, H2Layer)


# ---- fuzz --------------------------------------------------------------------------------------

PIECES = st.sampled_from(
    [
        H2_PREFACE,
        b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        b"\x00\x00\x00\x04\x01\x00\x00\x00\x00",
        b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x00" * 8,  # PING
        b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08",  # RST_STREAM 1
        b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\xff\xff",  # WINDOW_UPDATE
        b"\x00\x00\x05\x01\x05\x00\x00\x00\x01\x82\x86\x84\x41\x80",  # HEADERS GET / (compact)
        b"\x00\x00\x03\x00\x01\x00\x00\x00\x01abc",  # DATA END_STREAM
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(PIECES, st.binary(max_size=40)), max_size=12),
    st.lists(st.integers(1, 30), max_size=6),
)
def test_fuzz_h2_layer_never_raises(chunks: list[bytes], cuts: list[int]) -> None:
    layer = HTTPDetectLayer(ctx())
    layer.handle(Start(), T0)
    data = b"".join(chunks)
    pos = 0
    for cut in [*cuts, len(data)]:
        out = layer.handle(ClientData(data[pos : pos + cut] or b"x"), T0)
        assert all(
            isinstance(c, SendToClient | SendToServer | Close | Verdict | OpenServer)
            or type(c).__name__ == "Log"
            for c in out
        )
        pos += cut
        if pos >= len(data):
            break
    layer.handle_timer(T0 + 1000)
    layer.handle(ClientEof(), T0 + 1000)
