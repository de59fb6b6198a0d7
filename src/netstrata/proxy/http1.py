"""HTTP/1.1 connection core for the node proxy: bytes in, events out, no sockets (after h11).

One `HTTP1Connection` is one side of one TCP connection. The proxy holds two per proxied
connection: a `server` facing the client (reads requests, writes responses) and a `client`
facing the upstream (writes requests, reads responses). Feed received bytes to
`receive_data()` (b"" means EOF), drain `next_event()` until `NEED_DATA` or `PAUSED`, and
write what `send()` returns. The core never blocks, never logs and never touches a socket.

Each side of the connection has a state; the reader and writer move it through one table,
`TRANSITIONS`, plus three rules that depend on the message rather than the event type:

    IDLE --head--> SEND_BODY --Data--> SEND_BODY --EndOfMessage--> DONE
    DONE + DONE, keep-alive           -> both IDLE (next request/response cycle)
    DONE, not keep-alive              -> MUST_CLOSE (further bytes are discarded, RFC 9112 §9.6)
    upgrade/CONNECT request complete  -> MIGHT_SWITCH until the response: 101 (or 2xx to
                                         CONNECT) -> SWITCHED, anything else -> DONE
    any RemoteProtocolError           -> their side ERROR; LocalProtocolError -> our side ERROR

Pipelined requests are not parsed while a response is owed: `next_event()` says `PAUSED` and
the adapter should stop reading the socket until it has sent the response (as in h11), which is
what keeps the receive buffer bounded. After `SWITCHED`, `trailing_data` hands the bytes that
followed the head to whoever takes the connection over (a WebSocket or CONNECT tunnel).

Limits (`HTTP1Limits`), each a DoS defence with its precedent:

* `max_head_bytes` 64 KiB: request line plus header section. Envoy's default
  `max_request_headers_kb` is 60 KiB, nginx allows 4 x 8 KiB, Node.js 16 KiB; 64 KiB admits
  every header set Envoy would pass. Over it: 431 (and 431 for the trailer section too).
* `max_target_length` 8 KiB: nginx's and Apache's request-line buffers (8 KiB / 8190 bytes),
  the size RFC 9112 §3 asks servers to support at least. Over it: 414.
* `max_header_count` 100: Envoy's default `max_headers_count`. Over it: 431.
* `max_chunk_line` 4 KiB: a chunk-size line with extensions; nothing legitimate comes close.
* `max_body_bytes` None (requests only): bodies stream through as `Data` and are never buffered,
  so the default is no cap, like Envoy; set it to answer 413 past a size.

Error hints: the HTTP status to answer (400, 413, 414, 431, 501, 505). Errors in an upstream's
response carry 502, what the proxy answers its client instead.

Path normalization for `rules.http` matching lives in `proxy/http_path.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from enum import Enum
from typing import Final, Literal

from netstrata.proxy._http1_body import (
    BodyReader,
    BodyWriter,
    ChunkedReader,
    ChunkedWriter,
    CloseReader,
    CloseWriter,
    LengthReader,
    LengthWriter,
    encode_fields,
)
from netstrata.proxy._http1_fast import parse_plain_request_head, parse_plain_response_head
from netstrata.proxy._http1_head import (
    BLANK_LINE_RE,
    Framing,
    body_framing,
    is_keep_alive,
    is_valid_token,
    parse_request_head,
    parse_response_head,
    response_framing,
)
from netstrata.proxy.errors import LocalProtocolError, RemoteProtocolError
from netstrata.proxy.http1_events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    InformationalResponse,
    RequestHead,
    ResponseHead,
)
from netstrata.proxy.sansio import Sentinel

Role = Literal["server", "client"]


class State(Enum):
    """Where one side of the connection stands in the request/response cycle."""

    IDLE = "IDLE"
    SEND_BODY = "SEND_BODY"
    DONE = "DONE"
    MUST_CLOSE = "MUST_CLOSE"
    CLOSED = "CLOSED"
    MIGHT_SWITCH = "MIGHT_SWITCH"
    SWITCHED = "SWITCHED"
    ERROR = "ERROR"


TRANSITIONS: Final[dict[tuple[State, type], State]] = {
    (State.IDLE, RequestHead): State.SEND_BODY,
    (State.IDLE, ResponseHead): State.SEND_BODY,
    (State.IDLE, InformationalResponse): State.IDLE,
    (State.SEND_BODY, Data): State.SEND_BODY,
    (State.SEND_BODY, EndOfMessage): State.DONE,
    (State.IDLE, ConnectionClosed): State.CLOSED,
    (State.DONE, ConnectionClosed): State.CLOSED,
    (State.MUST_CLOSE, ConnectionClosed): State.CLOSED,
    (State.CLOSED, ConnectionClosed): State.CLOSED,
}
"""(state, event type) -> next state, for both sides; anything missing is a protocol error."""


@dataclass(frozen=True, slots=True)
class HTTP1Limits:
    """Caps on what a connection buffers or accepts; see the module docstring for the numbers."""

    max_head_bytes: int = 64 * 1024
    """Request/status line plus header section, bytes (431 / 502 past it)."""
    max_target_length: int = 8 * 1024
    """Request-target, bytes (414 past it)."""
    max_header_count: int = 100
    """Header fields per head or trailer section (431 past it)."""
    max_chunk_line: int = 4 * 1024
    """One chunk-size line including extensions, bytes (400 past it)."""
    max_body_bytes: int | None = None
    """Request body, bytes (413 past it); None streams any size."""

    @property
    def max_buffered(self) -> int:
        """The most an idle or mid-body reader keeps buffered after `next_event()` asks for
        data: an incomplete head, trailer section or chunk-size line."""
        return max(self.max_head_bytes, self.max_chunk_line)


DEFAULT_LIMITS: Final = HTTP1Limits()

ACCESS_DENIED_BODY: Final = b"Access denied\r\n"
"""The body Cilium's Envoy sends with its 403 (`--http-403-msg`, default "Access denied")."""


class HTTP1Connection:
    """One side of an HTTP/1.1 connection; see the module docstring for the life cycle."""

    def __init__(self, role: Role, *, limits: HTTP1Limits = DEFAULT_LIMITS) -> None:
        self.role: Final = role
        self.limits: Final = limits
        self.our_state = State.IDLE
        self.their_state = State.IDLE
        self._buf = bytearray()
        self._eof = False
        self._search_from = 0
        self._reader: BodyReader | None = None
        self._writer: BodyWriter | None = None
        self._remote_status = 400 if role == "server" else 502
        self.last_head_wire = b""
        """The bytes of the last head `next_event()` returned, exactly as received (what a
        proxy forwards when it changes nothing; see `send(..., wire=)`)."""
        self._reset_cycle()

    def _reset_cycle(self) -> None:
        self._method: str | None = None
        self._upgrade_requested = False
        self._keep_alive = True

    # ---- receiving -------------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf)

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """After SWITCHED: (bytes that followed the head, whether the peer already sent EOF)."""
        return bytes(self._buf), self._eof

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; b"" means the peer closed its sending side."""
        if data:
            if self._eof:
                raise LocalProtocolError("received data after EOF")
            self._buf += data
        else:
            self._eof = True

    def accept_request_head(self, head: RequestHead) -> None:
        """Take a request head parsed outside the core from bytes that were never passed to
        `receive_data` (the layer's fast path, `_http1_fast.parse_plain_request_head`): the
        connection moves exactly as if `next_event()` had returned `head`. The body bytes that
        followed it go to `receive_data` as usual.

        Raises:
            LocalProtocolError: not a server core waiting for a request with nothing buffered.
        """
        if self.role != "server" or self.their_state is not State.IDLE or self._buf or self._eof:
            raise LocalProtocolError("a request head can only be accepted between requests")
        self._their_transition(head)

    def accept_whole_response(self, head: ResponseHead, wire: bytes, body: bytes) -> bool:
        """Take a final response that arrived whole, parsed outside the core (the layer's fast
        path): `wire` is its head as received, `body` exactly the bytes that followed it, none
        of which were passed to `receive_data`. When its framing says the message is exactly
        `head` + `body` (Content-Length of `len(body)`, or no body), the connection moves as if
        `next_event()` had returned `head`, `Data(body)` and `EndOfMessage()`, and True is
        returned; otherwise nothing changes (False) and the bytes go to `receive_data`.
        """
        method = self._method
        if (
            self.role != "client"
            or self.their_state is not State.IDLE
            or self._buf
            or self._eof
            or method is None
            or method == "CONNECT"
        ):
            return False
        try:
            framing = response_framing(head, method)
        except RemoteProtocolError:
            return False  # the full path refuses it, with its usual hint
        if not (
            (framing.kind == "length" and framing.length == len(body))
            or (framing.kind == "none" and not body)
        ):
            return False
        self.last_head_wire = wire
        # TRANSITIONS: IDLE -ResponseHead-> SEND_BODY -Data-> SEND_BODY -EndOfMessage-> DONE
        self._keep_alive = self._keep_alive and head.keep_alive
        self._upgrade_requested = False
        self._reader = None
        self.their_state = State.DONE
        self._maybe_cycle()
        return True

    def next_event(self) -> Event | Sentinel:
        """The next event, or NEED_DATA / PAUSED.

        Raises:
            RemoteProtocolError: the peer broke the protocol; `hint` is the status to answer.
        """
        if self.their_state is State.ERROR:
            raise RemoteProtocolError("peer already broke the protocol", hint=self._remote_status)
        try:
            event = self._extract_event()
            if not isinstance(event, Sentinel):
                self._their_transition(event)
            return event
        except RemoteProtocolError:
            self.their_state = State.ERROR
            self._keep_alive = False  # an error reply may still be sent; then the connection closes
            raise

    def _extract_event(self) -> Event | Sentinel:
        state = self.their_state
        if state in (State.MIGHT_SWITCH, State.SWITCHED):
            return PAUSED
        if state is State.MUST_CLOSE:
            self._buf.clear()  # RFC 9112 §9.6: nothing after a closing message is processed
            return ConnectionClosed() if self._eof else NEED_DATA
        if state is State.DONE and self._buf:
            return PAUSED
        if state in (State.DONE, State.CLOSED):
            return ConnectionClosed() if self._eof else NEED_DATA
        if state is State.IDLE:
            return self._read_head()
        assert self._reader is not None
        event = self._reader.read(self._buf, self._eof)
        return NEED_DATA if event is None else event

    def _read_head(self) -> Event | Sentinel:
        if not self._buf:  # between messages of a keep-alive connection: nothing to scan
            return ConnectionClosed() if self._eof else NEED_DATA
        if self.role == "server":
            while self._buf[:2] == b"\r\n":  # RFC 9112 §2.2: ignore empty lines before a request
                del self._buf[:2]
                self._search_from = 0
        elif self._buf and self._method is None:
            raise RemoteProtocolError("upstream sent data before any request", hint=502)
        match = BLANK_LINE_RE.search(self._buf, self._search_from)
        end = match.end() if match else -1
        too_big = 431 if self.role == "server" else 502
        if end > self.limits.max_head_bytes or (
            end < 0 and len(self._buf) > self.limits.max_head_bytes
        ):
            raise RemoteProtocolError(f"head over {self.limits.max_head_bytes} bytes", hint=too_big)
        if end < 0:
            self._search_from = max(0, len(self._buf) - 3)
            if not self._eof:
                return NEED_DATA
            if self._buf:
                raise RemoteProtocolError(
                    "connection closed inside a head", hint=self._remote_status
                )
            return ConnectionClosed()
        head = self.last_head_wire = bytes(self._buf[:end])
        del self._buf[:end]
        self._search_from = 0
        limits = self.limits
        if self.role == "server":
            # the plain case in one regex pass; anything else (and every refusal) is the full
            # parser's (`_http1_fast.py`)
            return parse_plain_request_head(
                head,
                max_target=limits.max_target_length,
                max_fields=limits.max_header_count,
                max_body=limits.max_body_bytes,
            ) or parse_request_head(
                head,
                max_target=limits.max_target_length,
                max_fields=limits.max_header_count,
                max_body=limits.max_body_bytes,
            )
        return parse_plain_response_head(
            head, max_fields=limits.max_header_count
        ) or parse_response_head(head, max_fields=limits.max_header_count)

    def _their_transition(self, event: Event) -> None:
        new = TRANSITIONS.get((self.their_state, type(event)))
        if new is None:  # the parser only produces events its state allows
            raise RemoteProtocolError(
                f"unexpected {type(event).__name__}", hint=self._remote_status
            )
        self.their_state = new
        if isinstance(event, RequestHead):
            self._method = event.method
            self._upgrade_requested = (
                event.method == "CONNECT" or event.header("upgrade") is not None
            )
            self._keep_alive = event.keep_alive
            self._reader = self._request_reader(event)
        elif isinstance(event, ResponseHead):
            self._on_their_response(event)
        elif isinstance(event, InformationalResponse):
            if event.status == 101 and self._upgrade_requested:
                self.their_state = self.our_state = State.SWITCHED
        elif isinstance(event, EndOfMessage):
            if self.role == "server" and self._upgrade_requested:
                self.their_state = State.MIGHT_SWITCH
            self._maybe_cycle()

    def _request_reader(self, head: RequestHead) -> BodyReader:
        if head.chunked:
            return ChunkedReader(
                max_line=self.limits.max_chunk_line,
                max_trailer=self.limits.max_head_bytes,
                max_fields=self.limits.max_header_count,
                max_body=self.limits.max_body_bytes,
                status=400,
            )
        return LengthReader(head.content_length or 0, 400)

    def _on_their_response(self, head: ResponseHead) -> None:
        assert self._method is not None
        framing = response_framing(head, self._method)
        self._keep_alive = self._keep_alive and head.keep_alive and framing.kind != "close"
        if self._method == "CONNECT" and 200 <= head.status < 300:
            self.their_state = self.our_state = State.SWITCHED
            return
        self._upgrade_requested = False
        self._reader = _reader_for(framing, self.limits)

    # ---- sending ---------------------------------------------------------------------------

    def send(self, event: Event, *, wire: bytes | None = None) -> bytes:
        """Bytes to write for `event` (a head, Data, EndOfMessage or ConnectionClosed).

        `wire`, for a head only: its bytes as a peer sent them, which this core's parser
        accepted and parsed into exactly `event` (a proxy forwarding a head it did not change);
        they are returned as they are instead of re-encoding `event`, and the state moves the
        same way.

        Raises:
            LocalProtocolError: the event is not allowed now or cannot be written.
        """
        if self.our_state is State.ERROR:
            raise LocalProtocolError("cannot send after a local protocol error")
        try:
            return self._send(event, wire)
        except LocalProtocolError:
            self.our_state = State.ERROR
            raise

    def _send(self, event: Event, wire: bytes | None = None) -> bytes:
        if isinstance(event, ConnectionClosed):
            self.our_state = State.CLOSED
            return b""
        new = TRANSITIONS.get((self.our_state, type(event)))
        if new is None or not self._may_send(event):
            raise LocalProtocolError(f"cannot send {type(event).__name__} in {self.our_state.name}")
        out = self._encode_head(event, wire)
        self.our_state = new
        if isinstance(event, Data):
            assert self._writer is not None
            return self._writer.write(event.data)
        if isinstance(event, EndOfMessage):
            assert self._writer is not None
            out = self._writer.finish(event.trailers)
            self._maybe_cycle()
        elif isinstance(event, InformationalResponse) and event.status == 101:
            self.our_state = self.their_state = State.SWITCHED
        elif isinstance(event, ResponseHead) and self._method == "CONNECT" and event.status < 300:
            self.our_state = self.their_state = State.SWITCHED
        return out

    def _may_send(self, event: Event) -> bool:
        if self.role == "client":
            return not isinstance(event, (ResponseHead, InformationalResponse))
        if isinstance(event, RequestHead):
            return False
        if isinstance(event, (ResponseHead, InformationalResponse)):
            if self.their_state is State.IDLE:  # no request to answer yet
                return False
            if isinstance(event, InformationalResponse) and event.status == 101:
                return self._upgrade_requested
        return True

    def _encode_head(self, event: Event, wire: bytes | None) -> bytes:
        if isinstance(event, RequestHead):
            out = encode_request_head(event) if wire is None else wire
            self._method = event.method
            self._upgrade_requested = (
                event.method == "CONNECT" or event.header("upgrade") is not None
            )
            self._keep_alive = is_keep_alive(event.version, event.headers)
            if wire is not None and not event.chunked:
                # our parser framed these very bytes into the head's fields: no second pass
                self._writer = LengthWriter(event.content_length or 0)
            else:
                self._writer = _writer_for(_own_framing(event, event.method))
            return out
        if isinstance(event, ResponseHead):
            # no method yet: an error reply to a request whose head could not be parsed
            out = encode_response_head(event) if wire is None else wire
            framing = _own_framing(event, self._method or "GET")
            self._keep_alive = (
                self._keep_alive
                and event.keep_alive
                and is_keep_alive(event.version, event.headers)
                and framing.kind != "close"
            )
            self._writer = _writer_for(framing)
            switching = self._method == "CONNECT" and event.status < 300
            if self.their_state is State.MIGHT_SWITCH and not switching:
                self.their_state = State.DONE  # the upgrade was declined
            self._upgrade_requested = False
            return out
        if isinstance(event, InformationalResponse):
            return encode_response_head(event)
        return b""

    def _maybe_cycle(self) -> None:
        if not self._keep_alive:
            if self.our_state is State.DONE:
                self.our_state = State.MUST_CLOSE
            if self.their_state is State.DONE:
                self.their_state = State.MUST_CLOSE
        elif self.our_state is State.DONE and self.their_state is State.DONE:
            self.our_state = self.their_state = State.IDLE
            self._reader = self._writer = None
            self._reset_cycle()


def _reader_for(framing: Framing, limits: HTTP1Limits) -> BodyReader:
    if framing.kind == "chunked":
        return ChunkedReader(
            max_line=limits.max_chunk_line,
            max_trailer=limits.max_head_bytes,
            max_fields=limits.max_header_count,
            max_body=None,
            status=502,
        )
    if framing.kind == "close":
        return CloseReader()
    return LengthReader(framing.length if framing.kind == "length" else 0, 502)


def _writer_for(framing: Framing) -> BodyWriter:
    if framing.kind == "chunked":
        return ChunkedWriter()
    if framing.kind == "close":
        return CloseWriter()
    return LengthWriter(framing.length if framing.kind == "length" else 0)


def _own_framing(head: RequestHead | ResponseHead, method: str) -> Framing:
    """Framing of a head we are about to send; a complaint about it is our bug, not the peer's."""
    try:
        if isinstance(head, RequestHead):
            return body_framing(head.headers, head.version, status=400, is_request=True)
        return response_framing(head, method)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"refusing to send: {exc.message}") from exc


def encode_request_head(head: RequestHead) -> bytes:
    """Serialize a request head exactly as given: method, target, version, headers in order."""
    if not is_valid_token(head.method):
        raise LocalProtocolError(f"invalid method {head.method[:40]!r}")
    if not head.target or not all(0x21 <= ord(c) <= 0x7E for c in head.target):
        raise LocalProtocolError(f"invalid request-target {head.target[:40]!r}")
    if head.version not in ("1.0", "1.1"):
        raise LocalProtocolError(f"invalid HTTP version {head.version!r}")
    line = f"{head.method} {head.target} HTTP/{head.version}\r\n".encode("ascii")
    return line + encode_fields(head.headers) + b"\r\n"


def encode_response_head(head: ResponseHead | InformationalResponse) -> bytes:
    """Serialize a status line and header section."""
    version = head.version if isinstance(head, ResponseHead) else "1.1"
    if not 100 <= head.status <= 999 or version not in ("1.0", "1.1"):
        raise LocalProtocolError(f"invalid status {head.status} or version {version!r}")
    if any(c in head.reason for c in "\r\n\0"):
        raise LocalProtocolError("invalid reason phrase")
    line = f"HTTP/{version} {head.status} {head.reason}\r\n".encode("latin-1")
    return line + encode_fields(head.headers) + b"\r\n"


_REASONS: Final = {
    200: "OK",
    307: "Temporary Redirect",
    400: "Bad Request",
    403: "Forbidden",
    413: "Payload Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def local_reply(
    status: int,
    body: bytes = b"",
    *,
    now: float | None = None,
    close: bool = False,
    extra_headers: Headers = (),
    content_type: str = "text/plain",
) -> tuple[ResponseHead, Data]:
    """A response the proxy answers itself, shaped like Envoy's local replies.

    Args:
        status: HTTP status code.
        body: full body; Content-Length is set from it.
        now: Unix time for the Date header (cores take time in; None omits Date).
        close: add `connection: close` and make this the connection's last response.
        extra_headers: e.g. `(("location", "/a/b"),)` for a 307.
        content_type: sent only with a non-empty body.

    Returns:
        The head and the body, to pass to `HTTP1Connection.send` followed by `EndOfMessage()`.
    """
    headers: list[tuple[str, str]] = [("content-length", str(len(body)))]
    if body:
        headers.append(("content-type", content_type))
    if now is not None:
        headers.append(("date", formatdate(now, usegmt=True)))
    headers.append(("server", "netstrata"))
    headers.extend(extra_headers)
    if close:
        headers.append(("connection", "close"))
    head = ResponseHead(
        status=status,
        reason=_REASONS.get(status, ""),
        headers=tuple(headers),
        keep_alive=not close,
    )
    return head, Data(body)


def access_denied(*, now: float | None = None, close: bool = False) -> tuple[ResponseHead, Data]:
    """The 403 Cilium's Envoy answers a request no `rules.http` entry allows."""
    return local_reply(403, ACCESS_DENIED_BODY, now=now, close=close)


__all__ = [
    "ACCESS_DENIED_BODY",
    "DEFAULT_LIMITS",
    "NEED_DATA",
    "PAUSED",
    "TRANSITIONS",
    "HTTP1Connection",
    "HTTP1Limits",
    "Role",
    "State",
    "access_denied",
    "encode_request_head",
    "encode_response_head",
    "local_reply",
]
