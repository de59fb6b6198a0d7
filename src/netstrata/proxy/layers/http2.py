"""HTTP/2 (and so gRPC) enforcement layer: per-stream `rules.http` verdicts on one connection.

Two h2 cores, one facing the client (server role) and one facing the upstream (client role),
with every stream decided on its own the way Cilium's Envoy decides it (reference §1.5.1):

1. A stream's request headers arrive (`:method`, `:path`, `:authority` and the rest). The path
   goes through the same `PathPolicy` as HTTP/1.1 (`http_path.py`; a gRPC request gets 400
   where HTTP/1.1 would get a redirect) and the request goes to `l7_check`, the function the
   reference datapath calls. A gRPC method is a path `/pkg.Service/Method` with method POST,
   so gRPC rules are HTTP rules (Cilium's gRPC guide).
2. Denied: `403 Access denied\\r\\n` for plain HTTP/2; a gRPC request gets Envoy's trailers-only
   local reply with `grpc-status: 7` (PERMISSION_DENIED, see `_h2_streams.py` for why). The
   stream's request body is acknowledged and discarded; the upstream never sees the stream.
3. Allowed: the stream is opened on the one upstream HTTP/2 connection (opened on first use,
   prior knowledge, to the original destination) with the same headers (header rewrites of
   the matching rule applied) and its DATA, trailers and END_STREAM follow; the response comes
   back the same way. Flow control is end to end: bytes are acknowledged to the sender only
   once the receiver's window took them, so the peers' windows bound what we buffer.
4. Other streams are untouched by a denial, a reset or a local reply.

Refusals (each one the proxy's answer to a misbehaving client; other connections go on):

* malformed frames, bad preface, frames over SETTINGS_MAX_FRAME_SIZE, a stream over
  SETTINGS_MAX_CONCURRENT_STREAMS: GOAWAY with h2's error code (PROTOCOL_ERROR,
  FRAME_SIZE_ERROR, ...), then close;
* more than 64 CONTINUATION frames in one header block (h2's cap): GOAWAY PROTOCOL_ERROR;
* a header list over SETTINGS_MAX_HEADER_LIST_SIZE once decoded (HPACK bomb), an empty
  token bucket of resets/PINGs/SETTINGS/PRIORITY/empty DATA
  (rapid reset): GOAWAY ENHANCE_YOUR_CALM, then close;
* slow clients: no request headers within `Timeouts.header` of the connection start, or no
  stream for `Timeouts.idle`: GOAWAY NO_ERROR and close; a stream whose request body stalls for
  `Timeouts.read`: RST_STREAM CANCEL (408 in its flow); an upstream that does not answer a
  stream within `Timeouts.upstream`: 504 on that stream.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable
from typing import Any, Final

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings

from netstrata.datapath.reference.l7 import l7_check
from netstrata.observe.builders import flow_from_l7_http
from netstrata.observe.flow import Flow, L7FlowType
from netstrata.observe.flow import Verdict as FlowVerdict
from netstrata.policy.l7 import HTTPRequest
from netstrata.proxy.http1 import ACCESS_DENIED_BODY
from netstrata.proxy.http_path import apply_path_policy
from netstrata.proxy.layers._h2_streams import (
    CANCEL,
    DEFAULT_H2_LIMITS,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    REFUSED_STREAM,
    H2Headers,
    H2Limits,
    H2Stream,
    TokenBucket,
    local_reply_headers,
)
from netstrata.proxy.layers.commands import (
    Close,
    Command,
    Log,
    OpenServer,
    SendToClient,
    SendToServer,
    Verdict,
)
from netstrata.proxy.layers.context import LayerContext, policy_refs, redact
from netstrata.proxy.layers.events import (
    ClientData,
    ClientEof,
    Event,
    ServerData,
    ServerEof,
    ServerOpened,
    ServerOpenFailed,
    Start,
)
from netstrata.proxy.layers.http import (
    DEFAULT_HTTP_SETTINGS,
    UPSTREAM_CONNECT_FAILURE,
    UPSTREAM_TIMEOUT,
    HTTPSettings,
    _secret_headers,
)

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""RFC 9113 §3.4: the first bytes of every prior-knowledge HTTP/2 (h2c) connection."""
UPSTREAM_RESET: Final = (
    b"upstream connect error or disconnect/reset before headers. reset reason: remote reset"
)
"""Envoy's 503 body when the upstream resets a stream before answering."""
_ABUSE: Final = (PingReceived, RemoteSettingsChanged, PriorityUpdated)


def _client_core(limits: H2Limits) -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    # replaced before initiate_connection, so these are the values we advertise and enforce
    # from the first frame on (h2 applies initial values without waiting for an ACK)
    conn.local_settings = Settings(
        client=False,
        initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
        },
    )
    conn.decoder.max_header_list_size = limits.max_header_list_size
    conn.max_inbound_frame_size = limits.max_frame_size
    return conn


def _upstream_core() -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.local_settings = Settings(
        client=True,
        initial_values={
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            SettingCodes.MAX_HEADER_LIST_SIZE: 2**16,
        },
    )
    return conn


def _text(headers: H2Headers) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)


class H2Layer:
    """One proxied HTTP/2 client connection; see the module docstring."""

    def __init__(
        self,
        ctx: LayerContext,
        settings: HTTPSettings = DEFAULT_HTTP_SETTINGS,
        limits: H2Limits = DEFAULT_H2_LIMITS,
    ) -> None:
        self.ctx: Final = ctx
        self.settings: Final = settings
        self.limits: Final = limits
        self._client = _client_core(limits)
        self._up: H2Connection | None = None
        self._up_opening = False
        self._streams: dict[int, H2Stream] = {}
        self._by_up: dict[int, int] = {}
        self._closed = False
        self._seen_request = False
        self._started = self._last_rx = self._idle_since = 0.0
        self._budget = TokenBucket(limits.abuse_burst, limits.abuse_rate)
        self._client_handlers: dict[type[Any], Callable[[Any, float, list[Command]], None]] = {
            RequestReceived: self._on_request,
            DataReceived: self._on_request_data,
            TrailersReceived: self._on_request_trailers,
            StreamEnded: self._on_request_end,
            StreamReset: self._on_client_reset,
            WindowUpdated: self._on_client_window,
            ConnectionTerminated: self._on_client_goaway,
        }
        self._up_handlers: dict[type[Any], Callable[[Any, float, list[Command]], None]] = {
            ResponseReceived: self._on_response,
            InformationalResponseReceived: self._on_info,
            DataReceived: self._on_response_data,
            TrailersReceived: self._on_response_trailers,
            StreamEnded: self._on_response_end,
            StreamReset: self._on_upstream_reset,
            WindowUpdated: self._on_upstream_window,
            ConnectionTerminated: lambda ev, now, out: self._upstream_broke(
                "upstream sent GOAWAY", now, out
            ),
        }

    # ---- adapter interface -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the layer has asked to close the client connection."""
        return self._closed

    @property
    def wants_client_data(self) -> bool:
        # HTTP/2 flow control bounds what a client can make us buffer; control frames are
        # bounded by the abuse budget and by the adapter's write timeout
        return not self._closed

    @property
    def stream_count(self) -> int:
        """Streams in progress (for tests and statistics)."""
        return len(self._streams)

    def handle(self, event: Event, now: float) -> list[Command]:
        out: list[Command] = []
        if self._closed:
            return out
        if isinstance(event, ClientData):
            self._last_rx = now
            self._receive_client(event.data, now, out)
        elif isinstance(event, ClientEof):
            self._close(out)
        elif isinstance(event, ServerData):
            self._receive_upstream(event.data, now, out)
        elif isinstance(event, ServerEof):
            self._upstream_broke("upstream closed the connection", now, out)
        elif isinstance(event, ServerOpened):
            self._on_server_opened(now, out)
        elif isinstance(event, ServerOpenFailed):
            self._on_server_failed(event.reason, now, out)
        elif isinstance(event, Start):
            self._started = self._last_rx = self._idle_since = now
            self._client.initiate_connection()
        self._drain(out)
        return out

    def get_timer(self) -> float | None:
        if self._closed:
            return None
        t = self.settings.timeouts
        if not self._seen_request:
            return self._started + t.header
        if not self._streams:
            return self._idle_since + t.idle
        deadlines = [self._last_rx + t.read for s in self._streams.values() if not s.request_done]
        deadlines += [
            s.request_sent_at + t.upstream
            for s in self._streams.values()
            if s.forward and s.request_sent_at is not None and not s.response_started
        ]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Command]:
        out: list[Command] = []
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return out
        t = self.settings.timeouts
        if not self._seen_request or not self._streams:
            why = "no request in time" if not self._seen_request else "idle connection"
            out.append(Log(f"HTTP/2 {why}: GOAWAY", logging.INFO))
            self._goaway(NO_ERROR, why.encode(), out)
        for s in list(self._streams.values()):
            if self._closed:
                break
            if not s.request_done and now >= self._last_rx + t.read:
                out.append(
                    Log(f"stream {s.client_id}: client too slow sending a body", logging.INFO)
                )
                out.append(Verdict(self._response_flow(s, 408, FlowVerdict.ERROR, now)))
                self._reset_both(s, CANCEL, now, out)
            elif (
                s.forward
                and s.request_sent_at is not None
                and not s.response_started
                and now >= s.request_sent_at + t.upstream
            ):
                out.append(Log(f"stream {s.client_id}: upstream did not answer", logging.INFO))
                self._reset_upstream(s, CANCEL)
                self._reply(s, 504, UPSTREAM_TIMEOUT, FlowVerdict.ERROR, now, out)
        self._drain(out)
        return out

    # ---- client side -------------------------------------------------------------------------

    def _receive_client(self, data: bytes, now: float, out: list[Command]) -> None:
        try:
            events = self._client.receive_data(data)
        except ProtocolError as exc:
            # h2 has queued GOAWAY with the error's code (RFC 9113 §5.4.1)
            out.append(Log(f"client broke HTTP/2: {exc}", logging.INFO))
            self._close(out)
            return
        except H2Error as exc:
            out.append(Log(f"client broke HTTP/2: {exc}", logging.INFO))
            self._goaway(1, b"", out)
            return
        for ev in events:
            if self._closed:
                return
            if isinstance(ev, _ABUSE) or (
                isinstance(ev, DataReceived) and not ev.data and not ev.stream_ended
            ):
                if not self._spend(now, out):
                    return
            handler = self._client_handlers.get(type(ev))
            if handler is not None:
                handler(ev, now, out)

    def _spend(self, now: float, out: list[Command]) -> bool:
        if self._budget.take(now):
            return True
        out.append(Log("HTTP/2 control-frame or reset flood: GOAWAY", logging.WARNING))
        self._goaway(ENHANCE_YOUR_CALM, b"too many resets or control frames", out)
        return False

    def _on_request(self, ev: RequestReceived, now: float, out: list[Command]) -> None:
        self._seen_request = True
        headers = ev.headers or []
        pseudo = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k.startswith(b":")
        }
        regular = _text([(k, v) for k, v in headers if not k.startswith(b":")])
        method, target = pseudo.get(":method", ""), pseudo.get(":path", "")
        authority = pseudo.get(":authority") or self._authority()
        grpc = any(k == "content-type" and v.startswith("application/grpc") for k, v in regular)
        s = H2Stream(ev.stream_id, method, f"http://{authority}{target}", now, grpc, regular)
        self._streams[ev.stream_id] = s
        if method == "CONNECT" or not target:
            out.append(Verdict(self._request_flow(s, FlowVerdict.ERROR, now)))
            self._reply(s, 501, b"", FlowVerdict.ERROR, now, out)
            return
        outcome = apply_path_policy(target, self.settings.path_policy, grpc=grpc)
        s.url = f"http://{authority}{outcome.path}"
        if outcome.action != "forward":
            verdict = FlowVerdict.ERROR if outcome.action == "reject" else FlowVerdict.FORWARDED
            out.append(Verdict(self._request_flow(s, verdict, now)))
            if outcome.action == "reject":
                self._reply(s, 400, b"", FlowVerdict.ERROR, now, out)
            else:
                self._reply(
                    s,
                    307,
                    b"",
                    FlowVerdict.FORWARDED,
                    now,
                    out,
                    extra=[(b"location", outcome.path.encode("latin-1"))],
                )
            return
        request = HTTPRequest(method, outcome.path, pseudo.get(":authority"), regular)
        self._decide(s, request, pseudo.get(":scheme", "http"), now, out)

    def _decide(
        self, s: H2Stream, request: HTTPRequest, scheme: str, now: float, out: list[Command]
    ) -> None:
        l7, policy = self.ctx.l7_policy()
        s.revision = policy.revision if policy is not None else 0
        mesh = self.ctx.mesh_authorize
        forwarded: object
        if (l7 is None or l7.parser != "http") and mesh is not None:
            allowed, cookie, forwarded = True, None, request  # Cilium has no HTTP rules here
        elif l7 is None or l7.parser != "http":
            out.append(
                Log(
                    f"no http rule set for port {self.ctx.info.original_dst[1]}: deny", logging.INFO
                )
            )
            allowed, cookie, forwarded = False, None, None
        else:
            verdict = l7_check(l7, self.ctx.info.peer_identity, request, self.ctx.secrets)
            allowed, cookie, forwarded = verdict.allowed, verdict.cookie, verdict.forwarded
        s.policies = policy_refs(policy, cookie)
        denial = None
        if allowed and mesh is not None and isinstance(forwarded, HTTPRequest):
            denial = mesh(forwarded, s.grpc)  # Cilium's L7 first, then the mesh (stratum 3)
        out.append(
            Verdict(
                self._request_flow(
                    s,
                    FlowVerdict.FORWARDED if allowed and denial is None else FlowVerdict.DROPPED,
                    now,
                    _secret_headers(l7),
                )
            )
        )
        if denial is not None:
            self._reply(s, denial[0], denial[1], FlowVerdict.DROPPED, now, out)
            return
        if not allowed or not isinstance(forwarded, HTTPRequest):
            self._reply(s, 403, ACCESS_DENIED_BODY, FlowVerdict.DROPPED, now, out)
            return
        s.forward = True
        host = forwarded.host or self._authority()
        s.upstream_headers = [
            (b":method", forwarded.method.encode("latin-1")),
            (b":scheme", scheme.encode("latin-1")),
            (b":path", forwarded.path.encode("latin-1")),
            (b":authority", host.encode("latin-1")),
        ]
        s.upstream_headers += [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in forwarded.headers
        ]
        if self._up is not None:
            self._open_upstream_stream(s, now, out)
        elif not self._up_opening:
            self._up_opening = True
            out.append(OpenServer(self.ctx.info.original_dst))

    def _on_request_data(self, ev: DataReceived, now: float, out: list[Command]) -> None:
        s = self._streams.get(ev.stream_id)
        data = ev.data or b""
        size = ev.flow_controlled_length or 0
        if s is None or not s.forward or s.reset:
            if size:  # denied or answered locally: discard, but keep the windows open
                self._client.acknowledge_received_data(size, ev.stream_id)
            return
        if size > len(data):  # padding is ours to acknowledge now
            self._client.acknowledge_received_data(size - len(data), ev.stream_id)
        s.to_up.data += data
        self._flush_to_upstream(s, now)

    def _on_request_trailers(self, ev: TrailersReceived, now: float, out: list[Command]) -> None:
        s = self._streams.get(ev.stream_id)
        if s is not None and s.forward:
            s.to_up.trailers = list(ev.headers or [])

    def _on_request_end(self, ev: StreamEnded, now: float, out: list[Command]) -> None:
        s = self._streams.get(ev.stream_id)
        if s is None:
            return
        s.request_done = True
        if s.forward:
            s.to_up.end = True
            self._flush_to_upstream(s, now)
        self._forget_if_finished(s, now)

    def _on_client_reset(self, ev: StreamReset, now: float, out: list[Command]) -> None:
        if not self._spend(now, out):
            return
        s = self._streams.get(ev.stream_id)
        if s is not None:
            s.reset = True
            self._reset_upstream(s, CANCEL)
            self._forget_if_finished(s, now)

    def _on_client_window(self, ev: WindowUpdated, now: float, out: list[Command]) -> None:
        targets = (
            list(self._streams.values())
            if not ev.stream_id
            else [s for s in (self._streams.get(ev.stream_id),) if s is not None]
        )
        for s in targets:
            self._flush_to_client(s, now)

    def _on_client_goaway(self, ev: ConnectionTerminated, now: float, out: list[Command]) -> None:
        out.append(Log(f"client sent GOAWAY ({ev.error_code})"))
        self._close(out)

    # ---- upstream side -----------------------------------------------------------------------

    def _on_server_opened(self, now: float, out: list[Command]) -> None:
        self._up_opening = False
        self._up = _upstream_core()
        self._up.initiate_connection()
        for s in list(self._streams.values()):
            if s.forward and s.up_id is None and not s.reset:
                self._open_upstream_stream(s, now, out)

    def _on_server_failed(self, reason: str, now: float, out: list[Command]) -> None:
        self._up_opening = False
        out.append(
            Log(f"upstream {self.ctx.info.original_dst} unreachable: {reason}", logging.WARNING)
        )
        for s in list(self._streams.values()):
            if s.forward and s.up_id is None:
                self._reply(s, 503, UPSTREAM_CONNECT_FAILURE, FlowVerdict.ERROR, now, out)

    def _open_upstream_stream(self, s: H2Stream, now: float, out: list[Command]) -> None:
        up = self._up
        assert up is not None
        try:
            up_id = up.get_next_available_stream_id()
            up.send_headers(up_id, s.upstream_headers)
        except H2Error as exc:  # the upstream's own stream limit, or it is going away
            out.append(Log(f"stream {s.client_id} refused upstream: {exc}", logging.INFO))
            out.append(Verdict(self._response_flow(s, 503, FlowVerdict.ERROR, now)))
            self._reset_client(s, REFUSED_STREAM, now)
            return
        s.up_id = up_id
        self._by_up[up_id] = s.client_id
        self._flush_to_upstream(s, now)

    def _receive_upstream(self, data: bytes, now: float, out: list[Command]) -> None:
        up = self._up
        if up is None:
            return
        try:
            events = up.receive_data(data)
        except H2Error as exc:
            self._upstream_broke(f"upstream broke HTTP/2: {exc}", now, out)
            return
        for ev in events:
            if self._closed or up is not self._up:
                return
            handler = self._up_handlers.get(type(ev))
            if handler is not None:
                handler(ev, now, out)

    def _stream_of_up(self, up_id: int | None) -> H2Stream | None:
        cid = self._by_up.get(up_id or 0)
        return self._streams.get(cid) if cid is not None else None

    def _on_info(self, ev: InformationalResponseReceived, now: float, out: list[Command]) -> None:
        s = self._stream_of_up(ev.stream_id)
        if s is not None and not s.reset:
            self._client.send_headers(s.client_id, list(ev.headers or []))

    def _on_response(self, ev: ResponseReceived, now: float, out: list[Command]) -> None:
        s = self._stream_of_up(ev.stream_id)
        if s is None or s.reset:
            return
        headers = list(ev.headers or [])
        status = next((int(v) for k, v in headers if k == b":status" and v.isdigit()), 0)
        s.response_started = True
        if ev.stream_ended is not None:
            # a trailers-only response (gRPC's error form: one HEADERS frame with END_STREAM)
            # must stay one frame; headers now and an empty END_STREAM DATA later is a
            # response without trailers, which gRPC clients reject ("Stream removed")
            s.to_client.trailers = headers
        else:
            self._client.send_headers(s.client_id, headers)
        out.append(Verdict(self._response_flow(s, status, FlowVerdict.FORWARDED, now)))

    def _on_response_data(self, ev: DataReceived, now: float, out: list[Command]) -> None:
        s = self._stream_of_up(ev.stream_id)
        data = ev.data or b""
        size = ev.flow_controlled_length or 0
        up = self._up
        assert up is not None
        if s is None or s.reset:
            if size:
                up.acknowledge_received_data(size, ev.stream_id)
            return
        if size > len(data):
            up.acknowledge_received_data(size - len(data), ev.stream_id)
        s.to_client.data += data
        self._flush_to_client(s, now)

    def _on_response_trailers(self, ev: TrailersReceived, now: float, out: list[Command]) -> None:
        s = self._stream_of_up(ev.stream_id)
        if s is not None:
            s.to_client.trailers = list(ev.headers or [])

    def _on_response_end(self, ev: StreamEnded, now: float, out: list[Command]) -> None:
        s = self._stream_of_up(ev.stream_id)
        if s is not None:
            s.to_client.end = True
            self._flush_to_client(s, now)

    def _on_upstream_reset(self, ev: StreamReset, now: float, out: list[Command]) -> None:
        s = self._stream_of_up(ev.stream_id)
        if s is None or s.reset:
            return
        self._by_up.pop(ev.stream_id, None)
        s.up_id = None
        if s.to_client.owes_end or s.to_client.finished:
            return  # the response is complete; a reset now only stops the request body
        if s.response_started:
            self._reset_client(s, ev.error_code or INTERNAL_ERROR, now)
        else:
            self._reply(s, 503, UPSTREAM_RESET, FlowVerdict.ERROR, now, out)

    def _on_upstream_window(self, ev: WindowUpdated, now: float, out: list[Command]) -> None:
        targets = (
            list(self._streams.values())
            if not ev.stream_id
            else [s for s in (self._stream_of_up(ev.stream_id),) if s is not None]
        )
        for s in targets:
            self._flush_to_upstream(s, now)

    def _upstream_broke(self, reason: str, now: float, out: list[Command]) -> None:
        """The upstream connection is unusable: streams still waiting on it fail, later
        streams open a new one."""
        if self._up is None and not self._up_opening:
            return
        out.append(Log(reason, logging.INFO))
        out.append(Close("server"))
        self._drain(out)
        self._up, self._up_opening = None, False
        self._by_up.clear()
        for s in list(self._streams.values()):
            if not s.forward or s.reset or s.to_client.owes_end or s.to_client.finished:
                continue
            s.up_id = None
            if s.response_started:
                self._reset_client(s, INTERNAL_ERROR, now)
            else:
                self._reply(s, 503, UPSTREAM_RESET, FlowVerdict.ERROR, now, out)

    # ---- moving bytes ------------------------------------------------------------------------

    def _flush_to_upstream(self, s: H2Stream, now: float) -> None:
        up, p = self._up, s.to_up
        if up is None or s.up_id is None or s.reset or p.finished:
            return
        try:
            while p.data:
                n = min(
                    up.local_flow_control_window(s.up_id), up.max_outbound_frame_size, len(p.data)
                )
                if n <= 0:
                    return
                chunk = bytes(p.data[:n])
                del p.data[:n]
                up.send_data(s.up_id, chunk)
                self._client.acknowledge_received_data(n, s.client_id)
            if p.owes_end:
                if p.trailers is not None:
                    up.send_headers(s.up_id, p.trailers, end_stream=True)
                else:
                    up.end_stream(s.up_id)
                p.finished = True
                s.request_sent_at = now
        except H2Error:  # the upstream stream went away meanwhile; its reset event follows
            p.data.clear()

    def _flush_to_client(self, s: H2Stream, now: float) -> None:
        p, conn = s.to_client, self._client
        if s.reset or p.finished:
            return
        try:
            while p.data:
                n = min(
                    conn.local_flow_control_window(s.client_id),
                    conn.max_outbound_frame_size,
                    len(p.data),
                )
                if n <= 0:
                    return
                chunk = bytes(p.data[:n])
                del p.data[:n]
                conn.send_data(s.client_id, chunk)
                if self._up is not None and s.up_id is not None:
                    self._up.acknowledge_received_data(n, s.up_id)
            if p.owes_end:
                if p.trailers is not None:
                    conn.send_headers(s.client_id, p.trailers, end_stream=True)
                else:
                    conn.end_stream(s.client_id)
                p.finished = True
        except H2Error:  # the client reset the stream meanwhile
            s.reset = True
        self._forget_if_finished(s, now)

    def _reply(
        self,
        s: H2Stream,
        status: int,
        body: bytes,
        verdict: FlowVerdict,
        now: float,
        out: list[Command],
        extra: H2Headers | None = None,
    ) -> None:
        """Answer the stream ourselves (the request body, if any, is discarded)."""
        s.forward = False
        s.to_up.data.clear()
        date = email.utils.formatdate(now, usegmt=True)
        headers, data = local_reply_headers(status, body, grpc=s.grpc, date=date)
        try:
            self._client.send_headers(s.client_id, headers + (extra or []), end_stream=not data)
        except H2Error:
            s.reset = True
            self._forget_if_finished(s, now)
            return
        s.response_started = True
        if data:
            s.to_client.data += data
            s.to_client.end = True
        else:
            s.to_client.finished = True
        out.append(Verdict(self._response_flow(s, status, verdict, now)))
        self._flush_to_client(s, now)

    def _reset_client(self, s: H2Stream, code: int, now: float) -> None:
        if not s.reset:
            s.reset = True
            try:
                self._client.reset_stream(s.client_id, code)
            except H2Error:
                pass
        self._forget_if_finished(s, now)

    def _reset_upstream(self, s: H2Stream, code: int) -> None:
        if self._up is not None and s.up_id is not None:
            self._by_up.pop(s.up_id, None)
            try:
                self._up.reset_stream(s.up_id, code)
            except H2Error:
                pass
            s.up_id = None

    def _reset_both(self, s: H2Stream, code: int, now: float, out: list[Command]) -> None:
        self._reset_upstream(s, code)
        self._reset_client(s, code, now)

    def _forget_if_finished(self, s: H2Stream, now: float) -> None:
        if not s.finished or self._streams.get(s.client_id) is not s:
            return
        if s.up_id is not None and not s.to_up.finished:
            self._reset_upstream(s, CANCEL)
        if s.up_id is not None:
            self._by_up.pop(s.up_id, None)
        del self._streams[s.client_id]
        if not self._streams:
            self._idle_since = now

    # ---- connection end ----------------------------------------------------------------------

    def _goaway(self, code: int, debug: bytes, out: list[Command]) -> None:
        try:
            self._client.close_connection(code, additional_data=debug or None)
        except H2Error:
            pass
        self._close(out)

    def _close(self, out: list[Command]) -> None:
        if self._closed:
            return
        self._drain(out)
        self._closed = True
        if self._up is not None or self._up_opening:
            out.append(Close("server"))
        self._up = None
        out.append(Close("client"))

    def _drain(self, out: list[Command]) -> None:
        if self._closed:
            return
        data = self._client.data_to_send()
        if data:
            out.append(SendToClient(data))
        if self._up is not None:
            up_data = self._up.data_to_send()
            if up_data:
                out.append(SendToServer(up_data))

    # ---- flows -------------------------------------------------------------------------------

    def _authority(self) -> str:
        host, port = self.ctx.info.original_dst
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _request_flow(
        self, s: H2Stream, verdict: FlowVerdict, now: float, hidden: frozenset[str] = frozenset()
    ) -> Flow:
        return flow_from_l7_http(
            self.ctx.packet(),
            method=s.method,
            url=s.url,
            l7_type=L7FlowType.REQUEST,
            verdict=verdict,
            direction=self.ctx.info.direction,
            time_ns=int(now * 1e9),
            node_name=self.ctx.node_name,
            protocol="HTTP/2",
            headers=redact(s.request_headers, hidden),
            policies=s.policies,
            revision=s.revision,
        )

    def _response_flow(self, s: H2Stream, status: int, verdict: FlowVerdict, now: float) -> Flow:
        return flow_from_l7_http(
            self.ctx.packet(),
            method=s.method,
            url=s.url,
            l7_type=L7FlowType.RESPONSE,
            verdict=verdict,
            direction=self.ctx.info.direction,
            time_ns=int(now * 1e9),
            node_name=self.ctx.node_name,
            protocol="HTTP/2",
            code=status,
            latency_ns=max(0, int((now - s.started) * 1e9)),
            policies=s.policies,
            revision=s.revision,
        )


__all__ = ["H2_PREFACE", "UPSTREAM_RESET", "H2Layer"]
