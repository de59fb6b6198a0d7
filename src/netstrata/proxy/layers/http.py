"""HTTP/1.1 enforcement layer: per-request `rules.http` verdicts on a keep-alive connection.

Sits between two `HTTP1Connection` cores, one facing the client (`server` role) and one facing
the upstream (`client` role), and decides every request the way Cilium's Envoy does (reference
§1.5.1, §3.3):

1. The request head is parsed (the core refuses smuggling, bad framing and oversized heads
   with the status in its error's `hint`; we answer it with `connection: close` and close).
2. The path is normalized as `PathPolicy` says (`http_path.py`): a `reject` is 400 and close,
   a `redirect` (escaped slashes) is a 307 to the normalized path, otherwise the normalized
   `:path` is what rules see and what the upstream receives.
3. `l7_check` walks the port's rule set for the connection's peer identity, the same function
   the reference datapath calls, so proxy and reference never disagree. No rule set (the port
   no longer redirects, or the endpoint is gone) or one for another parser: denied, fail closed.
4. Denied: `403 Access denied\\r\\n` (Cilium's body) without touching the upstream; the request
   body is read and discarded, and the connection stays usable. Allowed: the request, header
   rewrites applied, goes to the original destination over an upstream connection that is
   opened on first use and reused while the upstream keeps it alive; the response streams back.
5. Every request gives two flows: a REQUEST record (FORWARDED or DROPPED, the deciding rule)
   and a RESPONSE record with the status and latency (ERROR for the proxy's own error replies).

Hop-by-hop headers (RFC 9110 §7.6.1: Connection and the fields it names, Keep-Alive,
Proxy-Connection, TE, Upgrade) are not forwarded in either direction; framing headers always
are, even when Connection names them, so a client cannot desynchronize the two cores. Upgrades
are therefore never carried out: the upstream sees a plain request. CONNECT gets 501: the
proxy does not tunnel.

Error replies and their causes: 400/413/414/431/501/505 from the client core, 408 when a
client is too slow (`Timeouts`), 502 when the upstream breaks the protocol or closes early,
503 when it cannot be reached, 504 when it does not answer in time. All of them close the
connection except 503 (the request body is discarded and the connection goes on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from netstrata.datapath.reference.l7 import l7_check
from netstrata.observe.builders import flow_from_l7_http
from netstrata.observe.flow import Flow, L7FlowType
from netstrata.observe.flow import Verdict as FlowVerdict
from netstrata.policy.l7 import HTTPRequest
from netstrata.policy.types import L7Policy, ResolvedPolicy
from netstrata.proxy._http1_fast import parse_plain_request_head, parse_plain_response_head
from netstrata.proxy.errors import LocalProtocolError, RemoteProtocolError
from netstrata.proxy.http1 import (
    DEFAULT_LIMITS,
    HTTP1Connection,
    HTTP1Limits,
    State,
    access_denied,
    encode_response_head,
    local_reply,
)
from netstrata.proxy.http1_events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    InformationalResponse,
    RequestHead,
    ResponseHead,
)
from netstrata.proxy.http_path import CILIUM_DEFAULT, PathPolicy, apply_path_policy
from netstrata.proxy.layers.commands import (
    Close,
    Command,
    Log,
    OpenServer,
    SendToClient,
    SendToServer,
    Verdict,
)
from netstrata.proxy.layers.context import (
    DEFAULT_TIMEOUTS,
    LayerContext,
    Timeouts,
    policy_refs,
    redact,
)
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

UPSTREAM_CONNECT_FAILURE: Final = (
    b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)
"""Envoy's 503 body when the upstream cannot be reached."""
UPSTREAM_TIMEOUT: Final = b"upstream request timeout"
"""Envoy's 504 body."""

_HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "proxy-connection", "te", "upgrade"})
_FRAMING: Final = frozenset({"content-length", "transfer-encoding", "host"})


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    """Per-listener HTTP settings."""

    limits: HTTP1Limits = DEFAULT_LIMITS
    """Head, target, header-count and body caps of the client-facing core."""
    path_policy: PathPolicy = CILIUM_DEFAULT
    """Path normalization before matching (Cilium's `--http-normalize-path`)."""
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    """Slow-client and upstream timeouts."""


DEFAULT_HTTP_SETTINGS: Final = HTTPSettings()


@dataclass(slots=True)
class _Exchange:
    """One request/response cycle on the client connection."""

    head: RequestHead
    url: str
    started: float
    forward: bool
    """True while the request goes upstream; False when the proxy answers and discards the body."""
    policy: ResolvedPolicy | None = None
    """The policy that decided (its cookie's rule goes into the flows)."""
    cookie: int | None = None
    revision: int = 0
    upstream_head: RequestHead | None = None
    head_sent: bool = False
    request_done: bool = False
    request_sent_at: float | None = None
    response_started: bool = False
    response_done: bool = False
    close_after: bool = False
    deny_verdict: FlowVerdict = FlowVerdict.FORWARDED
    """Verdict of the RESPONSE flow."""
    wire: bytes | None = None
    """The request head as the client sent it, when the fast path parsed it."""
    upstream_wire: bytes | None = None
    """`wire`, when the upstream gets the head unchanged (no rewrite, nothing hop-by-hop)."""


def has_hop_by_hop(headers: Headers) -> bool:
    """Whether any field is hop-by-hop (a field Connection names implies Connection itself)."""
    for key, _ in headers:
        if key.lower() in _HOP_BY_HOP:
            return True
    return False


def _hop_by_hop_names(headers: Headers) -> frozenset[str]:
    """Lower-cased names not to forward: the hop-by-hop fields and what Connection names,
    never the framing fields (a client must not desynchronize the two cores)."""
    if not has_hop_by_hop(headers):
        return frozenset()
    named: set[str] = set()
    for key, value in headers:
        if key.lower() == "connection":
            named.update(t.strip().lower() for t in value.split(",") if t.strip())
    return (_HOP_BY_HOP | named) - _FRAMING


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Headers without hop-by-hop fields; framing fields survive even if Connection names them."""
    drop = _hop_by_hop_names(headers)
    if not drop:
        return headers
    return tuple((k, v) for k, v in headers if k.lower() not in drop)


def strip_hop_by_hop_wire(wire: bytes, headers: Headers) -> bytes | None:
    """`wire` (a head exactly as received, which the core parsed into `headers`, one field
    line per pair) without the field lines `strip_hop_by_hop` drops; the other bytes stay as
    they came. None when the lines do not pair up with `headers` (then re-encode)."""
    drop = _hop_by_hop_names(headers)
    if not drop:
        return wire
    lines = wire.split(b"\r\n")
    fields = lines[1:-2]
    if len(fields) != len(headers):
        return None
    kept = [line for line, (name, _) in zip(fields, headers, strict=True)
            if name.lower() not in drop]
    return b"\r\n".join([lines[0], *kept, b"", b""])


def _secret_headers(l7: L7Policy | None) -> frozenset[str]:
    """Names of headers whose expected value comes from a Secret (never put in a flow)."""
    if l7 is None:
        return frozenset()
    names: set[str] = set()
    for entry in l7.entries:
        for rule in entry.rules or ():
            for match in getattr(rule, "header_matches", ()):
                if match.secret is not None:
                    names.add(match.name.lower())
    return frozenset(names)


class HTTPLayer:
    """One proxied HTTP/1.1 client connection; see the module docstring."""

    def __init__(self, ctx: LayerContext, settings: HTTPSettings = DEFAULT_HTTP_SETTINGS) -> None:
        self.ctx: Final = ctx
        self.settings: Final = settings
        self._client = HTTP1Connection("server", limits=settings.limits)
        self._upstream: HTTP1Connection | None = None
        self._upstream_opening = False
        self._ex: _Exchange | None = None
        self._closed = False
        self._client_paused = False
        self._client_eof = False
        self._client_eof_seen = False
        self._server_eof_seen = False
        self._last_rx = 0.0
        self._idle_since = 0.0
        self._head_started: float | None = None

    # ---- adapter interface -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the layer has asked to close the client connection."""
        return self._closed

    @property
    def wants_client_data(self) -> bool:
        if self._closed or self._client_paused:
            return False
        ex = self._ex
        return not (ex is not None and ex.forward and not ex.head_sent)

    def handle(self, event: Event, now: float) -> list[Command]:
        out: list[Command] = []
        if self._closed:
            return out
        if isinstance(event, ClientData | ClientEof) and self._client_eof_seen:
            return out  # nothing can follow an EOF; the adapter never sends it, a fuzzer might
        if isinstance(event, ClientData):
            self._last_rx = now
            if self._ex is None and self._head_started is None:
                self._head_started = now
            if not self._fast_request_head(event.data, now, out):
                self._client.receive_data(event.data)
            self._process_client(now, out)
        elif isinstance(event, ClientEof):
            self._client_eof_seen = True
            self._client.receive_data(b"")
            self._process_client(now, out)
        elif isinstance(event, ServerData | ServerEof):
            if self._upstream is not None and not self._server_eof_seen:
                self._server_eof_seen = isinstance(event, ServerEof)
                if not (isinstance(event, ServerData) and self._fast_response(event.data, now, out)):
                    self._upstream.receive_data(
                        event.data if isinstance(event, ServerData) else b"")
                    self._process_upstream(now, out)
                if self._ex is None:
                    self._process_client(now, out)  # pipelined requests waiting their turn
        elif isinstance(event, ServerOpened):
            self._on_server_opened(now, out)
        elif isinstance(event, ServerOpenFailed):
            self._on_server_failed(event.reason, now, out)
        elif isinstance(event, Start):
            self._last_rx = self._idle_since = now
        return out

    def get_timer(self) -> float | None:
        if self._closed:
            return None
        t = self.settings.timeouts
        ex = self._ex
        if ex is None:
            if self._head_started is not None:
                return min(self._head_started + t.header, self._last_rx + t.read)
            return self._idle_since + t.idle
        deadlines = []
        if not ex.request_done:
            deadlines.append(self._last_rx + t.read)
        if ex.forward and ex.request_sent_at is not None and not ex.response_started:
            deadlines.append(ex.request_sent_at + t.upstream)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Command]:
        out: list[Command] = []
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return out
        ex = self._ex
        if ex is None:
            if self._head_started is None:
                out.append(Log("idle keep-alive connection closed"))
                self._close(out)
            else:
                out.append(Log("client too slow sending a request head", logging.INFO))
                self._fail(408, b"request timeout", now, out)
        elif not ex.request_done:
            out.append(Log("client too slow sending a request body", logging.INFO))
            self._fail(408, b"request timeout", now, out)
        else:
            out.append(Log("upstream did not answer in time", logging.INFO))
            self._drop_upstream(out)
            self._fail(504, UPSTREAM_TIMEOUT, now, out)
        return out

    # ---- client side -------------------------------------------------------------------------

    def _process_client(self, now: float, out: list[Command]) -> None:
        while not self._closed:
            ex = self._ex
            if ex is not None and ex.forward and not ex.head_sent:
                return  # the head waits for the upstream connection; so does the body
            try:
                event = self._client.next_event()
            except RemoteProtocolError as exc:
                out.append(Log(f"client broke HTTP/1.1: {exc.message}", logging.INFO))
                self._fail(exc.hint, b"", now, out)
                return
            if event is NEED_DATA:
                return
            if event is PAUSED:
                self._client_paused = True
                return
            if isinstance(event, RequestHead):
                self._on_request_head(event, now, out)
            elif isinstance(event, Data):
                self._on_request_data(event, out)
            elif isinstance(event, EndOfMessage):
                self._on_request_end(event, now, out)
            elif isinstance(event, ConnectionClosed):
                self._client_eof = True
                if self._ex is None:
                    self._close(out)
                return

    def _fast_request_head(self, data: bytes, now: float, out: list[Command]) -> bool:
        """Parse a plain request head that starts `data` without the core's full parser
        (`_http1_fast.py`); False leaves `data` to the core, which decides on anything
        else (and refuses what must be refused)."""
        client = self._client
        if self._ex is not None or client.buffered_bytes or client.their_state is not State.IDLE:
            return False
        end = data.find(b"\r\n\r\n") + 4
        limits = self.settings.limits
        if end < 4 or end > limits.max_head_bytes:
            return False
        wire = data[:end] if end < len(data) else data
        head = parse_plain_request_head(wire, max_target=limits.max_target_length,
                                        max_fields=limits.max_header_count,
                                        max_body=limits.max_body_bytes)
        if head is None:
            return False
        client.accept_request_head(head)
        if end < len(data):
            client.receive_data(data[end:])  # body bytes, or the next pipelined request
        self._on_request_head(head, now, out, wire)
        return True

    def _on_request_head(self, head: RequestHead, now: float, out: list[Command],
                         wire: bytes | None = None) -> None:
        self._head_started = None
        url = f"http://{head.host or self._authority()}{head.path}"
        ex = self._ex = _Exchange(head, url, now, forward=False, wire=wire)
        if head.method == "CONNECT":
            out.append(self._request_flow(ex, FlowVerdict.ERROR, now))
            self._fail(501, b"", now, out)
            return
        grpc = (head.header("content-type") or "").startswith("application/grpc")
        outcome = apply_path_policy(head.path, self.settings.path_policy, grpc=grpc)
        if outcome.action == "reject":
            out.append(self._request_flow(ex, FlowVerdict.ERROR, now))
            self._fail(400, b"", now, out)
            return
        ex.url = f"http://{head.host or self._authority()}{outcome.path}"
        if outcome.action == "redirect":
            out.append(self._request_flow(ex, FlowVerdict.FORWARDED, now))
            self._reply(307, b"", now, out, extra=(("location", outcome.path),))
            return
        request = HTTPRequest(head.method, outcome.path, head.host, head.headers)
        self._decide(ex, request, now, out)

    def _decide(self, ex: _Exchange, request: HTTPRequest, now: float,
                out: list[Command]) -> None:
        l7, policy = self.ctx.l7_policy()
        ex.revision = policy.revision if policy is not None else 0
        mesh = self.ctx.mesh_authorize
        forwarded: object
        if (l7 is None or l7.parser != "http") and mesh is not None:
            allowed, cookie, forwarded = True, None, request  # Cilium has no HTTP rules here
        elif l7 is None or l7.parser != "http":
            out.append(Log(f"no http rule set for port {self.ctx.info.original_dst[1]}: deny",
                           logging.INFO))
            allowed, cookie, forwarded = False, None, None
        else:
            verdict = l7_check(l7, self.ctx.info.peer_identity, request, self.ctx.secrets)
            allowed, cookie, forwarded = verdict.allowed, verdict.cookie, verdict.forwarded
        ex.policy, ex.cookie = policy, cookie
        flow_verdict = FlowVerdict.FORWARDED if allowed else FlowVerdict.DROPPED
        if not allowed and policy is not None and policy.audit:
            # Audit mode (netstrata's L7 extension): report the would-be denial, forward the
            # request as the client sent it (no rule rewrote it).
            allowed, forwarded, flow_verdict = True, request, FlowVerdict.AUDIT
        denial = None
        if allowed and mesh is not None and isinstance(forwarded, HTTPRequest):
            grpc = (ex.head.header("content-type") or "").startswith("application/grpc")
            denial = mesh(forwarded, grpc)  # Cilium's L7 first, then the mesh (stratum 3)
            if denial is not None:
                flow_verdict = FlowVerdict.DROPPED
        out.append(self._request_flow(ex, flow_verdict, now, l7))
        if denial is not None:
            ex.deny_verdict = FlowVerdict.DROPPED
            self._reply(denial[0], denial[1], now, out)
            return
        if not allowed or not isinstance(forwarded, HTTPRequest):
            head = ex.head
            # a client waiting for 100-continue may never send the body we would have to skip
            expects = (head.header("expect") or "").lower() == "100-continue"
            has_body = head.chunked or bool(head.content_length)
            ex.deny_verdict = FlowVerdict.DROPPED
            head_, body = access_denied(now=now, close=expects and has_body)
            self._send_reply(head_, body, now, out)
            return
        ex.forward = True
        ex.upstream_head = self._upstream_head(ex.head, forwarded)
        if (ex.wire is not None and forwarded is request and request.path == ex.head.target
                and not has_hop_by_hop(ex.head.headers)):
            ex.upstream_wire = ex.wire  # nothing to rewrite: the client's bytes go as they came
        if self._upstream is not None and not self._upstream_opening:
            self._send_upstream_head(now, out)
        elif not self._upstream_opening:
            self._upstream_opening = True
            out.append(OpenServer(self.ctx.info.original_dst))

    def _upstream_head(self, head: RequestHead, forwarded: HTTPRequest) -> RequestHead:
        headers = strip_hop_by_hop(forwarded.headers)
        if forwarded.host and not any(k.lower() == "host" for k, _ in headers):
            headers = (("Host", forwarded.host), *headers)
        return RequestHead(forwarded.method, forwarded.path, head.version, headers,
                           forwarded.host, keep_alive=True, content_length=head.content_length,
                           chunked=head.chunked)

    def _on_request_data(self, event: Data, out: list[Command]) -> None:
        ex = self._ex
        if ex is not None and ex.forward and self._upstream is not None and event.data:
            out.append(SendToServer(self._upstream.send(event)))

    def _on_request_end(self, event: EndOfMessage, now: float, out: list[Command]) -> None:
        ex = self._ex
        if ex is None:
            return
        ex.request_done = True
        if ex.forward and self._upstream is not None:
            data = self._upstream.send(event)
            if data:
                out.append(SendToServer(data))
            ex.request_sent_at = now
        self._maybe_finish(now, out)

    # ---- upstream side -----------------------------------------------------------------------

    def _on_server_opened(self, now: float, out: list[Command]) -> None:
        self._upstream_opening = False
        self._server_eof_seen = False
        self._upstream = HTTP1Connection("client", limits=self.settings.limits)
        if self._ex is not None and self._ex.forward and not self._ex.head_sent:
            self._send_upstream_head(now, out)
            self._process_client(now, out)

    def _on_server_failed(self, reason: str, now: float, out: list[Command]) -> None:
        self._upstream_opening = False
        self._upstream = None
        out.append(Log(f"upstream {self.ctx.info.original_dst} unreachable: {reason}",
                       logging.WARNING))
        ex = self._ex
        if ex is not None and ex.forward and not ex.head_sent:
            ex.forward = False
            self._reply(503, UPSTREAM_CONNECT_FAILURE, now, out)
            self._process_client(now, out)

    def _send_upstream_head(self, now: float, out: list[Command]) -> None:
        ex = self._ex
        assert ex is not None and ex.upstream_head is not None and self._upstream is not None
        try:
            data = self._upstream.send(ex.upstream_head, wire=ex.upstream_wire)
        except LocalProtocolError as exc:
            out.append(Log(f"cannot forward request: {exc.message}", logging.WARNING))
            ex.forward = False
            self._fail(400, b"", now, out)
            return
        ex.head_sent = True
        out.append(SendToServer(data))

    def _process_upstream(self, now: float, out: list[Command]) -> None:
        upstream = self._upstream
        while upstream is not None and upstream is self._upstream and not self._closed:
            try:
                event = upstream.next_event()
            except RemoteProtocolError as exc:
                self._upstream_broke(f"upstream broke HTTP/1.1: {exc.message}", now, out)
                return
            if event is NEED_DATA or event is PAUSED:
                return
            if isinstance(event, ConnectionClosed):
                self._upstream_broke("upstream closed the connection", now, out)
                return
            ex = self._ex
            if ex is None or not ex.forward:
                self._upstream_broke("upstream sent a response nobody asked for", now, out)
                return
            if isinstance(event, InformationalResponse):
                if event.status == 101:
                    self._upstream_broke("upstream switched protocols", now, out)
                    return
                out.append(SendToClient(self._client.send(event)))
            elif isinstance(event, ResponseHead):
                self._on_response_head(ex, event, now, out)
            elif isinstance(event, Data):
                if event.data:
                    out.append(SendToClient(self._client.send(event)))
            elif isinstance(event, EndOfMessage):
                self._on_response_end(ex, event, now, out)

    def _fast_response(self, data: bytes, now: float, out: list[Command]) -> bool:
        """A whole plain response in one read (the usual small keep-alive answer): parsed in
        one pass (`_http1_fast.py`) and handed to the upstream core whole, then relayed as the
        event loop below would. False leaves `data` to the core and `_process_upstream`."""
        ex, upstream = self._ex, self._upstream
        if (ex is None or upstream is None or not ex.forward or not ex.request_done
                or ex.response_started or upstream.buffered_bytes
                or upstream.our_state is not State.DONE):
            return False
        end = data.find(b"\r\n\r\n") + 4
        if end < 4 or end > self.settings.limits.max_head_bytes:
            return False
        wire = data[:end]
        head = parse_plain_response_head(wire, max_fields=self.settings.limits.max_header_count)
        body = data[end:]
        if head is None or not upstream.accept_whole_response(head, wire, body):
            return False
        self._on_response_head(ex, head, now, out)
        if body and not self._closed:
            out.append(SendToClient(self._client.send(Data(body))))
        if not self._closed:
            self._on_response_end(ex, EndOfMessage(), now, out)
        return True

    def _on_response_head(self, ex: _Exchange, head: ResponseHead, now: float,
                          out: list[Command]) -> None:
        ex.response_started = True
        headers = strip_hop_by_hop(head.headers)
        wire: bytes | None = None
        if ex.head.version == "1.0":
            headers = (*headers, ("Connection", "keep-alive" if ex.head.keep_alive else "close"))
        elif head.version == "1.1" and self._upstream is not None:
            # as received, less the hop-by-hop lines (no re-encoding of what stays)
            wire = strip_hop_by_hop_wire(self._upstream.last_head_wire, head.headers)
        response = ResponseHead(head.status, head.reason, "1.1", headers, keep_alive=True)
        out.append(SendToClient(self._client.send(response, wire=wire)))
        out.append(self._response_flow(ex, head.status, FlowVerdict.FORWARDED, now))

    def _on_response_end(self, ex: _Exchange, event: EndOfMessage, now: float,
                         out: list[Command]) -> None:
        data = self._client.send(event)
        if data:
            out.append(SendToClient(data))
        ex.response_done = True
        upstream = self._upstream
        if upstream is not None and not (upstream.our_state is State.IDLE
                                         and upstream.their_state is State.IDLE):
            self._drop_upstream(out)
        self._maybe_finish(now, out)

    def _upstream_broke(self, reason: str, now: float, out: list[Command]) -> None:
        """The upstream connection is unusable; answer 502 if the client still waits."""
        self._drop_upstream(out)
        ex = self._ex
        if ex is None or not ex.forward or ex.response_done:
            out.append(Log(reason))
            return
        out.append(Log(reason, logging.INFO))
        ex.forward = False
        self._fail(502, b"", now, out)

    def _drop_upstream(self, out: list[Command]) -> None:
        if self._upstream is not None or self._upstream_opening:
            out.append(Close("server"))
        self._upstream = None
        self._upstream_opening = False

    # ---- replies and the end of an exchange --------------------------------------------------

    def _reply(self, status: int, body: bytes, now: float, out: list[Command],
               extra: Headers = ()) -> None:
        """A keep-alive local reply through the client core (the request body is discarded)."""
        head, data = local_reply(status, body, now=now, extra_headers=extra)
        self._send_reply(head, data, now, out)

    def _send_reply(self, head: ResponseHead, data: Data, now: float, out: list[Command]) -> None:
        ex = self._ex
        assert ex is not None
        try:
            wire = self._client.send(head) + self._client.send(data)
            wire += self._client.send(EndOfMessage())
        except LocalProtocolError as exc:
            out.append(Log(f"cannot answer locally: {exc.message}", logging.WARNING))
            self._close(out)
            return
        ex.response_started = ex.response_done = True
        ex.close_after = ex.close_after or not head.keep_alive
        out.append(SendToClient(wire))
        verdict = ex.deny_verdict if head.status == 403 else (
            FlowVerdict.FORWARDED if head.status < 400 else FlowVerdict.ERROR)
        out.append(self._response_flow(ex, head.status, verdict, now))
        self._maybe_finish(now, out)

    def _fail(self, status: int, body: bytes, now: float, out: list[Command]) -> None:
        """Answer `status` and close, bypassing the core's state (which may be broken)."""
        ex = self._ex
        if ex is not None and ex.response_started:
            self._close(out)
            return
        head, data = local_reply(status, body, now=now, close=True)
        out.append(SendToClient(encode_response_head(head) + data.data))
        if ex is not None:
            ex.response_started = ex.response_done = True
            out.append(self._response_flow(ex, status, FlowVerdict.ERROR, now))
        self._close(out)

    def _maybe_finish(self, now: float, out: list[Command]) -> None:
        ex = self._ex
        if ex is None or not (ex.request_done and ex.response_done):
            return
        self._ex = None
        self._idle_since = now
        self._client_paused = False
        their = self._client.their_state
        if (ex.close_after or self._client_eof or self._client.our_state is not State.IDLE
                or their in (State.MUST_CLOSE, State.CLOSED)):
            self._close(out)
            return
        if self._client.buffered_bytes:
            self._head_started = now

    def _close(self, out: list[Command]) -> None:
        if self._closed:
            return
        self._closed = True
        if self._upstream is not None or self._upstream_opening:
            out.append(Close("server"))
        self._upstream = None
        out.append(Close("client"))

    # ---- flows -------------------------------------------------------------------------------

    def _authority(self) -> str:
        host, port = self.ctx.info.original_dst
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _request_flow(self, ex: _Exchange, verdict: FlowVerdict, now: float,
                      l7: L7Policy | None = None) -> Verdict:
        ctx, head, url, policy, cookie, revision = (
            self.ctx, ex.head, ex.url, ex.policy, ex.cookie, ex.revision)

        def build() -> Flow:
            return flow_from_l7_http(
                ctx.packet(), method=head.method, url=url, l7_type=L7FlowType.REQUEST,
                verdict=verdict, direction=ctx.info.direction, time_ns=int(now * 1e9),
                node_name=ctx.node_name, protocol=f"HTTP/{head.version}",
                headers=redact(head.headers, _secret_headers(l7)),
                policies=policy_refs(policy, cookie), revision=revision)

        return Verdict.lazy(True, verdict, build)

    def _response_flow(self, ex: _Exchange, status: int, verdict: FlowVerdict,
                       now: float) -> Verdict:
        ctx, head, url, policy, cookie, revision, started = (
            self.ctx, ex.head, ex.url, ex.policy, ex.cookie, ex.revision, ex.started)

        def build() -> Flow:
            return flow_from_l7_http(
                ctx.packet(), method=head.method, url=url, l7_type=L7FlowType.RESPONSE,
                verdict=verdict, direction=ctx.info.direction, time_ns=int(now * 1e9),
                node_name=ctx.node_name, protocol=f"HTTP/{head.version}", code=status,
                latency_ns=max(0, int((now - started) * 1e9)),
                policies=policy_refs(policy, cookie), revision=revision)

        return Verdict.lazy(False, verdict, build)


__all__ = [
    "DEFAULT_HTTP_SETTINGS",
    "UPSTREAM_CONNECT_FAILURE",
    "UPSTREAM_TIMEOUT",
    "HTTPLayer",
    "HTTPSettings",
    "has_hop_by_hop",
    "strip_hop_by_hop",
]
