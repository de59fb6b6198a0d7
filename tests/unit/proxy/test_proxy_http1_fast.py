"""The per-request fast path of the HTTP/1.1 proxy: it must agree with the full parser and
forward bytes unchanged only when nothing needs rewriting.

- `parse_plain_request_head` against `parse_request_head` on generated heads (smuggling shapes
  mixed in): whenever the fast parser answers, the full parser accepts the same bytes and
  returns the same `RequestHead`; it never accepts what the full parser refuses.
- `apply_path_policy`'s shortcut for already-normal paths against the full pipeline.
- The layer: a plain request goes upstream byte for byte (odd spacing kept); hop-by-hop
  fields are removed from forwarded heads in both directions, everything else kept as sent.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from proxyfeed import FUZZ_EXAMPLES

from netstrata.api.types import HTTPRule
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy._http1_fast import parse_plain_request_head, parse_plain_response_head
from netstrata.proxy._http1_head import parse_request_head, parse_response_head
from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.http1 import HTTP1Limits
from netstrata.proxy.http_path import (
    CILIUM_DEFAULT,
    CILIUM_NORMALIZE_OFF,
    EscapedSlashes,
    PathPolicy,
    _run_pipeline,
    apply_path_policy,
)
from netstrata.proxy.layers.commands import Close, SendToClient, SendToServer
from netstrata.proxy.layers.context import LayerContext
from netstrata.proxy.layers.events import ClientData, ServerData, ServerOpened, Start
from netstrata.proxy.layers.http import HTTPLayer, strip_hop_by_hop_wire
from netstrata.proxy.policy_source import ConnectionInfo

LIMITS = HTTP1Limits(max_target_length=64, max_header_count=6, max_body_bytes=1000)

_LINES = [
    b"Host: api",
    b"Host: api:8080",
    b"host:api",
    b"Host: a b",
    b"Host: [::1]:80",
    b"Content-Length: 5",
    b"Content-Length: 0005",
    b"Content-Length: 5, 5",
    b"Content-Length: +5",
    b"Content-Length: 99999",
    b"content-length:7",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Connection: keep-alive, Upgrade",
    b"X-Odd:   spaced value \t",
    b"X-Empty:",
    b"X Bad: 1",
    b"X-Bad : 1",
    b" folded",
    b"\tfolded",
    b"X-Ctl: a\x00b",
    b"X-Obs: caf\xe9",
    b"Expect: 100-continue",
]
_STARTS = [
    b"GET /public HTTP/1.1",
    b"GET /a?b=c&d=/../e HTTP/1.1",
    b"POST /api/v1/items/42 HTTP/1.1",
    b"GET /frag#x HTTP/1.1",
    b"GET http://api/x HTTP/1.1",
    b"OPTIONS * HTTP/1.1",
    b"GET /x HTTP/1.0",
    b"GET /x HTTP/2.0",
    b"GET  /x HTTP/1.1",
    b"G@T /x HTTP/1.1",
    b"GET /" + b"a" * 80 + b" HTTP/1.1",
]


_PLAIN_LINES = [
    b"Content-Length: 5",
    b"Content-Length: 0005",
    b"Connection: close",
    b"Connection: keep-alive, Upgrade",
    b"X-Odd:   spaced value \t",
    b"X-Empty:",
    b"X-Obs: caf\xe9",
]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """Mostly heads the fast path may take (so that the comparison is not vacuous), with
    any of the smuggling and malformed shapes above mixed in."""
    if draw(st.booleans()):
        start = draw(st.sampled_from(_STARTS[:3]))
        lines = [b"Host: api", *draw(st.lists(st.sampled_from(_PLAIN_LINES), max_size=5))]
        lines = draw(st.permutations(lines))
        if draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(_LINES)))
    else:
        start = draw(st.sampled_from(_STARTS))
        lines = draw(st.lists(st.sampled_from(_LINES), max_size=8))
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r"]))
    return eol.join([start, *lines]) + eol + b"\r\n"


def _full(head: bytes) -> object:
    try:
        return parse_request_head(
            head,
            max_target=LIMITS.max_target_length,
            max_fields=LIMITS.max_header_count,
            max_body=LIMITS.max_body_bytes,
        )
    except RemoteProtocolError as exc:
        return exc


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(heads())
def test_fast_parser_answers_only_what_the_full_parser_accepts_and_answers_the_same(
    head: bytes,
) -> None:
    fast = parse_plain_request_head(
        head,
        max_target=LIMITS.max_target_length,
        max_fields=LIMITS.max_header_count,
        max_body=LIMITS.max_body_bytes,
    )
    if fast is not None:
        assert fast == _full(head)


def test_fast_parser_takes_the_common_request_and_leaves_the_rest() -> None:
    def fast(head: bytes) -> object:
        return parse_plain_request_head(head, max_target=64, max_fields=6, max_body=None)

    assert fast(b"GET /public HTTP/1.1\r\nHost: api\r\nX-Bench: 1\r\n\r\n") is not None
    for refused in (
        b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
        b"GET /x HTTP/1.1\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",
    ):
        assert fast(refused) is None
        assert isinstance(_full(refused), RemoteProtocolError)


_STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 404 ",
    b"HTTP/1.1 503 Service  Unavailable",
    b"HTTP/1.1 200",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 200 O\x00K",
]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    st.sampled_from(_STATUS_LINES),
    st.lists(st.sampled_from(_PLAIN_LINES + _LINES), max_size=7),
    st.sampled_from([b"\r\n"] * 6 + [b"\n"]),
)
def test_fast_response_parser_agrees_with_the_full_parser(
    status: bytes, lines: list[bytes], eol: bytes
) -> None:
    head = eol.join([status, *lines]) + eol + b"\r\n"
    fast = parse_plain_response_head(head, max_fields=6)
    if fast is not None:
        assert fast == parse_response_head(head, max_fields=6)


_POLICIES = [
    CILIUM_DEFAULT,
    CILIUM_NORMALIZE_OFF,
    PathPolicy(True, False, EscapedSlashes.REJECT_REQUEST),
    PathPolicy(False, True, EscapedSlashes.KEEP_UNCHANGED),
    PathPolicy(True, True, EscapedSlashes.UNESCAPE_AND_FORWARD),
]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    st.lists(
        st.sampled_from(["/", "a", "b", ".", "..", "%2F", "%2e", "%41", "%00", "\\", ";x", "?"])
    )
)
def test_path_shortcut_agrees_with_the_whole_pipeline(parts: list[str]) -> None:
    target = "/" + "".join(parts)
    for policy in _POLICIES:
        for grpc in (False, True):
            assert apply_path_policy(target, policy, grpc=grpc) == _run_pipeline(
                target, policy, grpc
            )


DST = ("10.0.2.7", 8080)
ALL = ResolvedPolicy(
    endpoint_id=12,
    identity=100,
    revision=1,
    entries={},
    ingress_enforced=True,
    egress_enforced=False,
    l7={(Direction.INGRESS, 6, DST[1], 16): L7Policy("http", (L7Entry(None, (HTTPRule(),), 1),))},
    cookies={1: "CiliumNetworkPolicy shop/api ingress[0]"},
)


def _layer() -> HTTPLayer:
    info = ConnectionInfo(12, Direction.INGRESS, 4242, ("10.0.1.5", 40112), DST)
    lay = HTTPLayer(LayerContext(info, lambda: ALL, None, "node-a"))
    lay.handle(Start(), 1_000.0)
    lay.handle(ClientData(b"GET /first HTTP/1.1\r\nHost: api\r\n\r\n"), 1_000.0)
    lay.handle(ServerOpened(), 1_000.0)
    lay.handle(ServerData(b"HTTP/1.1 204 No Content\r\n\r\n"), 1_000.0)
    return lay


def _sent(cmds: list[object], kind: type[SendToServer] | type[SendToClient]) -> bytes:
    return b"".join(c.data for c in cmds if isinstance(c, kind))


def test_plain_request_and_response_are_forwarded_byte_for_byte() -> None:
    lay = _layer()
    request = b"GET /x?y=/../z HTTP/1.1\r\nhost:api\r\nX-Odd:  v \t\r\nContent-Length: 2\r\n\r\nhi"
    assert _sent(lay.handle(ClientData(request), 1_001.0), SendToServer) == request
    response = b"HTTP/1.1 200 Fine\r\nx-A:1  \r\nContent-Length: 2\r\n\r\nok"
    assert _sent(lay.handle(ServerData(response), 1_001.0), SendToClient) == response


def test_hop_by_hop_fields_are_removed_from_forwarded_heads_and_nothing_else_changes() -> None:
    lay = _layer()
    request = b"GET /x HTTP/1.1\r\nHost: api\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n"
    upstream = _sent(lay.handle(ClientData(request), 1_001.0), SendToServer)
    assert b"x-hop" not in upstream.lower() and b"connection" not in upstream.lower()
    assert upstream.startswith(b"GET /x HTTP/1.1\r\n") and b"Host: api\r\n" in upstream
    response = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-K:  kept \r\nContent-Length: 0\r\n\r\n"
    )
    answer = _sent(lay.handle(ServerData(response), 1_001.0), SendToClient)
    assert answer == b"HTTP/1.1 200 OK\r\nX-K:  kept \r\nContent-Length: 0\r\n\r\n"


def test_wire_stripping_gives_up_when_lines_and_fields_do_not_pair() -> None:
    wire = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    assert strip_hop_by_hop_wire(wire, (("Connection", "close"),)) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert strip_hop_by_hop_wire(wire, (("Connection", "close"), ("X", "1"))) is None


def test_response_with_bytes_after_its_body_is_relayed_and_the_upstream_dropped() -> None:
    lay = _layer()
    lay.handle(ClientData(b"GET /x HTTP/1.1\r\nHost: api\r\n\r\n"), 1_001.0)
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    cmds = lay.handle(ServerData(response + b"HTTP/1.1 200 OK\r\n"), 1_001.0)
    assert _sent(cmds, SendToClient) == response
    assert Close("server") in cmds and Close("client") not in cmds


def test_head_response_without_body_ends_the_exchange_and_the_connection_goes_on() -> None:
    lay = _layer()
    lay.handle(ClientData(b"HEAD /x HTTP/1.1\r\nHost: api\r\n\r\n"), 1_001.0)
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    assert _sent(lay.handle(ServerData(response), 1_001.0), SendToClient) == response
    request = b"GET /y HTTP/1.1\r\nHost: api\r\n\r\n"
    assert _sent(lay.handle(ClientData(request), 1_002.0), SendToServer) == request
