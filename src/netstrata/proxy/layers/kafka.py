"""Kafka enforcement layer: per-request `rules.kafka` verdicts, responses kept in request order.

Every request frame from the client (`KafkaRequestParser`) becomes a `policy.l7.KafkaRequest`
(apiKey, apiVersion, clientID, topics) and goes through `l7_check`, the reference datapath's
own rule walk (reference §1.5.1):

* allowed: the frame is forwarded unchanged to the original destination (the upstream
  connection is opened on the first allowed request);
* denied, for produce, fetch, list-offsets, metadata, offset-commit, offset-fetch and
  find-coordinator: the proxy answers itself with error 29 TOPIC_AUTHORIZATION_FAILED on every
  topic/partition, keeping the correlation id (`build_error_response`);
* denied, any other apiKey (or a Produce with acks=0): dropped without an answer, as Cilium
  does; the client's own request timeout reports it.

A topic-bearing request whose topics could not be read (an undecoded version, topics named by
id) matches only rules without a topic: fail closed.

Ordering: a Kafka client matches responses to requests by correlation id but also expects
them in request order on a connection (the broker guarantees it). When the proxy answers some
requests itself, those answers wait in `_pending` behind the broker's responses to earlier
requests; broker responses must arrive in the order of the forwarded requests, and one that
does not is a protocol violation (the connection closes).

Robustness: garbage or oversized frames close the connection (a client that sends garbage is
not worth resynchronizing with); so does an upstream that closes or breaks framing. At most
`max_in_flight` responses may be owed before the layer stops reading the client, which bounds
what it holds. Flows: one REQUEST record per request and topic (verdict FORWARDED/DROPPED with
the deciding rule), one RESPONSE record per answer (error_code 29 for the proxy's own).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Final

from netstrata.datapath.reference.l7 import l7_check
from netstrata.observe.builders import PolicyRef, flow_from_l7_kafka
from netstrata.observe.flow import Flow, L7FlowType
from netstrata.observe.flow import Verdict as FlowVerdict
from netstrata.policy.l7 import KafkaRequest as RuleRequest
from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.kafka import (
    DEFAULT_MAX_FRAME_SIZE,
    TOPIC_AUTHORIZATION_FAILED,
    KafkaRequest,
    KafkaRequestParser,
    KafkaResponse,
    KafkaResponseParser,
    build_error_response,
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
from netstrata.proxy.layers.context import DEFAULT_TIMEOUTS, LayerContext, Timeouts, policy_refs
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
from netstrata.proxy.sansio import NEED_DATA, ConnectionClosed


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Per-listener Kafka settings."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    """Largest request or response frame (the broker's `socket.request.max.bytes`)."""
    max_in_flight: int = 256
    """Responses owed to the client before the layer stops reading it. A Java producer keeps
    at most 5 requests in flight per connection; 256 leaves room for any client."""
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    """`idle` between requests, `read` inside a frame."""


DEFAULT_KAFKA_SETTINGS: Final = KafkaSettings()


@dataclass(slots=True)
class _Pending:
    """A response owed to the client, in request order."""

    request: KafkaRequest
    started: float
    local: bytes | None = None
    """The proxy's own answer; None when the broker answers."""
    policies: tuple[PolicyRef, ...] = ()
    revision: int = 0


def rule_request(request: KafkaRequest) -> RuleRequest:
    """What the Kafka rules look at; topics named only by id count as unknown (fail closed)."""
    return RuleRequest(request.api_key, request.api_version, request.client_id, request.topics,
                       topics_known=request.body_parsed and not request.topic_ids)


class KafkaLayer:
    """One proxied Kafka client connection; see the module docstring."""

    def __init__(self, ctx: LayerContext,
                 settings: KafkaSettings = DEFAULT_KAFKA_SETTINGS) -> None:
        self.ctx: Final = ctx
        self.settings: Final = settings
        self._requests = KafkaRequestParser(max_frame_size=settings.max_frame_size)
        self._responses = KafkaResponseParser(max_frame_size=settings.max_frame_size)
        self._upstream = "none"  # none | opening | open
        self._held: deque[_Pending] = deque()
        """Allowed requests waiting for the upstream connection."""
        self._pending: deque[_Pending] = deque()
        self._closed = False
        self._client_eof = False
        self._client_eof_seen = False
        self._server_eof_seen = False
        self._last_rx = 0.0
        self._idle_since = 0.0

    # ---- adapter interface -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the layer has asked to close the client connection."""
        return self._closed

    @property
    def wants_client_data(self) -> bool:
        return not (self._closed or self._held
                    or len(self._pending) >= self.settings.max_in_flight)

    def handle(self, event: Event, now: float) -> list[Command]:
        out: list[Command] = []
        if self._closed:
            return out
        if isinstance(event, ClientData | ClientEof):
            if self._client_eof_seen:
                return out  # nothing can follow an EOF
            self._client_eof_seen = isinstance(event, ClientEof)
            self._last_rx = now
            self._requests.receive_data(event.data if isinstance(event, ClientData) else b"")
            self._process_client(now, out)
        elif isinstance(event, ServerData | ServerEof):
            if self._server_eof_seen:
                return out
            self._server_eof_seen = isinstance(event, ServerEof)
            self._responses.receive_data(event.data if isinstance(event, ServerData) else b"")
            self._process_upstream(now, out)
        elif isinstance(event, ServerOpened):
            self._upstream = "open"
            while self._held and not self._closed:
                self._forward(self._held.popleft(), out)
            self._process_client(now, out)
        elif isinstance(event, ServerOpenFailed):
            out.append(Log(f"broker {self.ctx.info.original_dst} unreachable: {event.reason}",
                           logging.WARNING))
            self._close(out)
        elif isinstance(event, Start):
            self._last_rx = self._idle_since = now
        return out

    def get_timer(self) -> float | None:
        if self._closed:
            return None
        t = self.settings.timeouts
        if self._requests.buffered_bytes:
            return self._last_rx + t.read
        if not self._pending and not self._held:
            return max(self._idle_since, self._last_rx) + t.idle
        return None

    def handle_timer(self, now: float) -> list[Command]:
        out: list[Command] = []
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            slow = self._requests.buffered_bytes > 0
            out.append(Log("client too slow sending a frame" if slow else "idle connection closed",
                           logging.INFO if slow else logging.DEBUG))
            self._close(out)
        return out

    # ---- client side -------------------------------------------------------------------------

    def _process_client(self, now: float, out: list[Command]) -> None:
        while not self._closed and not self._held:
            if len(self._pending) >= self.settings.max_in_flight:
                return
            try:
                event = self._requests.next_event()
            except RemoteProtocolError as exc:
                out.append(Log(f"client broke the Kafka protocol: {exc.message}", logging.INFO))
                self._close(out)
                return
            if event is NEED_DATA:
                return
            if isinstance(event, ConnectionClosed):
                self._client_eof = True
                self._maybe_close_after_eof(out)
                return
            if isinstance(event, KafkaRequest):
                self._on_request(event, now, out)

    def _on_request(self, request: KafkaRequest, now: float, out: list[Command]) -> None:
        l7, policy = self.ctx.l7_policy()
        revision = policy.revision if policy is not None else 0
        if l7 is None or l7.parser != "kafka":
            out.append(Log(f"no kafka rule set for port {self.ctx.info.original_dst[1]}: deny",
                           logging.INFO))
            allowed, cookie = False, None
        else:
            verdict = l7_check(l7, self.ctx.info.peer_identity, rule_request(request))
            allowed, cookie = verdict.allowed, verdict.cookie
        pending = _Pending(request, now, policies=policy_refs(policy, cookie), revision=revision)
        # Audit mode (netstrata's L7 extension): report the would-be denial and forward.
        audited = not allowed and policy is not None and policy.audit
        for flow in self._request_flows(pending, allowed, now, audited):
            out.append(Verdict(flow))
        allowed = allowed or audited
        if allowed:
            if self._upstream == "open":
                self._forward(pending, out)
                return
            self._held.append(pending)
            if self._upstream == "none":
                self._upstream = "opening"
                out.append(OpenServer(self.ctx.info.original_dst))
            return
        answer = build_error_response(request)
        if answer is None:
            out.append(Log(f"denied {request.api_name} dropped without an answer"))
            return
        pending.local = answer
        self._pending.append(pending)
        self._flush_local(now, out)

    def _forward(self, pending: _Pending, out: list[Command]) -> None:
        out.append(SendToServer(pending.request.frame))
        if pending.request.expects_response:
            self._pending.append(pending)

    # ---- upstream side -----------------------------------------------------------------------

    def _process_upstream(self, now: float, out: list[Command]) -> None:
        while not self._closed:
            try:
                event = self._responses.next_event()
            except RemoteProtocolError as exc:
                out.append(Log(f"broker broke the Kafka protocol: {exc.message}", logging.INFO))
                self._close(out)
                return
            if event is NEED_DATA:
                return
            if isinstance(event, ConnectionClosed):
                out.append(Log("broker closed the connection"))
                self._close(out)
                return
            if isinstance(event, KafkaResponse):
                self._on_response(event, now, out)

    def _on_response(self, response: KafkaResponse, now: float, out: list[Command]) -> None:
        head = self._pending[0] if self._pending else None
        if head is None or head.local is not None or (
                head.request.correlation_id != response.correlation_id):
            out.append(Log(f"broker answered correlation id {response.correlation_id} out of "
                           "order", logging.WARNING))
            self._close(out)
            return
        self._pending.popleft()
        out.append(SendToClient(response.frame))
        out.append(Verdict(self._response_flow(head, 0, FlowVerdict.FORWARDED, now)))
        self._flush_local(now, out)

    def _flush_local(self, now: float, out: list[Command]) -> None:
        while self._pending and self._pending[0].local is not None:
            pending = self._pending.popleft()
            assert pending.local is not None
            out.append(SendToClient(pending.local))
            out.append(Verdict(self._response_flow(pending, TOPIC_AUTHORIZATION_FAILED,
                                                   FlowVerdict.DROPPED, now)))
        if not self._pending:
            self._idle_since = now
        self._maybe_close_after_eof(out)

    def _maybe_close_after_eof(self, out: list[Command]) -> None:
        if self._client_eof and not self._pending and not self._held:
            self._close(out)

    def _close(self, out: list[Command]) -> None:
        if self._closed:
            return
        self._closed = True
        if self._upstream != "none":
            out.append(Close("server"))
        out.append(Close("client"))

    # ---- flows -------------------------------------------------------------------------------

    def _request_flows(self, pending: _Pending, allowed: bool, now: float,
                       audited: bool = False) -> list[Flow]:
        request = pending.request
        verdict = FlowVerdict.FORWARDED if allowed else FlowVerdict.DROPPED
        if audited:
            verdict = FlowVerdict.AUDIT
        return [
            flow_from_l7_kafka(
                self.ctx.packet(), api_key=request.api_name, topic=topic,
                api_version=request.api_version, correlation_id=request.correlation_id,
                l7_type=L7FlowType.REQUEST, verdict=verdict, direction=self.ctx.info.direction,
                time_ns=int(now * 1e9), node_name=self.ctx.node_name,
                policies=pending.policies, revision=pending.revision)
            for topic in (request.topics or ("",))
        ]

    def _response_flow(self, pending: _Pending, error_code: int, verdict: FlowVerdict,
                       now: float) -> Flow:
        request = pending.request
        return flow_from_l7_kafka(
            self.ctx.packet(), api_key=request.api_name,
            topic=request.topics[0] if request.topics else "", api_version=request.api_version,
            correlation_id=request.correlation_id, error_code=error_code,
            l7_type=L7FlowType.RESPONSE, verdict=verdict, direction=self.ctx.info.direction,
            time_ns=int(now * 1e9), node_name=self.ctx.node_name,
            latency_ns=max(0, int((now - pending.started) * 1e9)), policies=pending.policies,
            revision=pending.revision)


__all__ = ["DEFAULT_KAFKA_SETTINGS", "KafkaLayer", "KafkaSettings", "rule_request"]
