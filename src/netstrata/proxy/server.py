"""The node proxy's asyncio adapter: listeners, connections, and the commands layers yield.

`NodeProxy` owns the listeners (one per `ListenerSpec`: HTTP and Kafka over TCP, DNS over
UDP and TCP through `dnsproxy.DNSProxy`). For each accepted TCP connection it asks the
`PolicySource` whose connection it is, builds the enforcement layer for the listener's parser
(`layers.http_detect.HTTPDetectLayer`, which picks `layers.http.HTTPLayer` or
`layers.http2.H2Layer` by the connection preface; `layers.kafka.KafkaLayer`) and runs one `_Connection`, which is the
only code that touches the sockets (aioquic's `asyncio/protocol.py` pattern). It is driven by
asyncio protocol callbacks, not by reader tasks: a request costs a callback per socket read and
no task switch, no `drain()` and no timer re-arm (measured in `netstrata bench proxy`):

* client bytes become `ClientData`/`ClientEof`, upstream bytes `ServerData`/`ServerEof`, and
  the layer's commands are executed in the same callback;
* the client is read only while the layer says `wants_client_data` (pipelining, upstream not
  yet open, too many Kafka responses owed) and the upstream takes what we write; the upstream
  is read only while the client takes what we write; so nothing is buffered without bound;
* `OpenServer` starts one connect task (connect timeout) to the original destination;
* the layer's timer is one `call_later` handle, moved only when the deadline comes earlier.

Failure containment: a layer that raises anything is logged and its connection closed (the
`except Exception` at the connection edge, STYLE.md: fail closed); other connections and the
listeners go on. Writes that a client or an upstream leaves unread for `Timeouts.read` close
the connection, so a peer that stops reading cannot pin a connection (and its buffers) forever.

Closing a client after an error reply is a lingering close (nginx's `lingering_close`): we
send FIN and discard what the client still sends for up to `ProxyConfig.linger` seconds, so
that closing with unread bytes does not turn into a RST that destroys the reply in flight.

uvloop: `run()` uses it when it is importable (`event_loop_factory()`); the proxy itself works
on any asyncio loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

from netstrata.datapath.reference.l7 import SecretLookup
from netstrata.observe.flow import Flow, L7FlowType
from netstrata.observe.flow import Verdict as FlowVerdict
from netstrata.policy.types import Direction, Proto
from netstrata.proxy.dnsproxy import DEFAULT_DNS_SETTINGS, DNSProxy, DNSSettings
from netstrata.proxy.layers._h2_streams import DEFAULT_H2_LIMITS, H2Limits
from netstrata.proxy.layers.commands import (
    Close,
    Command,
    Log,
    OpenServer,
    SendToClient,
    SendToServer,
    Verdict,
)
from netstrata.proxy.layers.context import Layer, LayerContext, MeshAuthorize
from netstrata.proxy.layers.dns import FQDNLearner
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
from netstrata.proxy.layers.http import DEFAULT_HTTP_SETTINGS, HTTPSettings
from netstrata.proxy.layers.http_detect import HTTPDetectLayer
from netstrata.proxy.layers.kafka import DEFAULT_KAFKA_SETTINGS, KafkaLayer, KafkaSettings
from netstrata.proxy.policy_source import Address, ConnectionInfo, PolicySource

log = logging.getLogger(__name__)

T = TypeVar("T")
_IP_TRANSPARENT: Final = getattr(socket, "IP_TRANSPARENT", 19)
"""Linux's IP_TRANSPARENT (19): bind to and send from addresses that are not local."""
Parser = Literal["http", "kafka", "dns"]


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One proxy listener (Cilium runs one per parser and direction)."""

    name: str
    """Unique name; `PolicySource.resolve` receives it."""
    parser: Parser
    """Which enforcement layer its connections get."""
    direction: Direction
    """Whose policy applies: the destination's (INGRESS) or the source's (EGRESS)."""
    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = 0
    """Port to bind; 0 picks a free one (see `NodeProxy.addresses`)."""
    transparent: bool = False
    """Receives connections the kernel redirected (docs/proxy-redirect.md): the listener is
    IP_TRANSPARENT, and each upstream connection leaves from the client's own address (so the
    destination's policy sees the client's identity) with `upstream_mark` as its SO_MARK."""
    upstream_mark: int = 0
    """SO_MARK of upstream sockets of a transparent listener (0: none)."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Node-wide proxy settings."""

    node_name: str = ""
    """Recorded in flows."""
    http: HTTPSettings = DEFAULT_HTTP_SETTINGS
    http2: H2Limits = DEFAULT_H2_LIMITS
    """HTTP/2 limits on `http` listeners (which take HTTP/1.1 and prior-knowledge HTTP/2)."""
    kafka: KafkaSettings = DEFAULT_KAFKA_SETTINGS
    dns: DNSSettings = DEFAULT_DNS_SETTINGS
    max_connections: int = 10_000
    """Open client connections over all TCP listeners; more are closed on accept (fail closed
    rather than run out of file descriptors)."""
    read_size: int = 64 * 1024
    """Bytes per socket read, which with the cores' caps bounds what a connection buffers."""
    linger: float = 1.0
    """Seconds of lingering close (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ProxyStatistics:
    """A snapshot of the proxy's counters."""

    connections_active: int
    connections_total: int
    connections_refused: int
    """Closed on accept: unknown to the policy source, or over `max_connections`."""
    connections_failed: int
    """Ended by an unexpected exception (logged)."""
    requests_forwarded: int
    """L7 REQUEST flows with verdict FORWARDED."""
    requests_denied: int
    """L7 REQUEST flows with verdict DROPPED."""


class _ConnLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the connection id (aioquic's QuicConnectionAdapter)."""

    def process(self, msg: str, kwargs: MutableMapping[str, Any]) -> tuple[str, MutableMapping[str, Any]]:
        assert self.extra is not None
        return f"[{self.extra['conn']}] {msg}", kwargs


class NodeProxy:
    """The node's L7 proxy; see the module docstring.

    Usage::

        async with NodeProxy(source, config=ProxyConfig(node_name="c1/node-a"),
                             on_flow=store.add, learner=fqdn_learner) as proxy:
            address = await proxy.add_listener(
                ListenerSpec("http-ingress", "http", Direction.INGRESS, "0.0.0.0", 15001))
            ...
    """

    def __init__(
        self,
        source: PolicySource,
        *,
        config: ProxyConfig | None = None,
        secrets: SecretLookup | None = None,
        on_flow: Callable[[Flow], None] | None = None,
        learner: FQDNLearner | None = None,
        clock: Callable[[], float] = time.time,
        socket_factory: Callable[[int, int], socket.socket] = socket.socket,
    ) -> None:
        self.source: Final = source
        self.config: Final = config or ProxyConfig()
        self.secrets = secrets
        self.on_flow = on_flow
        self.learner = learner
        self.mesh_authorize: Callable[[ListenerSpec, ConnectionInfo], MeshAuthorize | None] | None = None
        """Set by the agent's mesh (agent/mesh.py): the mesh's per-request decision for a
        connection of one of its listeners, None for every other listener."""
        self.upstream_socket: Callable[[ListenerSpec, ConnectionInfo], socket.socket | None] | None = None
        """Set by the agent's mesh: an upstream connection its delivery already opened for
        this client (agent/mesh.py), used instead of opening one; None opens as usual."""
        self.clock: Final = clock
        self.socket_factory: Final = socket_factory
        """Makes the TCP sockets of transparent listeners and their upstreams (family, type):
        an agent outside its node's namespace passes one that creates them inside it."""
        self._servers: dict[str, asyncio.Server] = {}
        self._dns: dict[str, DNSProxy] = {}
        self._addresses: dict[str, Address] = {}
        self._connections: set[_Connection] = set()
        self._ids = itertools.count(1)
        self._total = self._refused = self._failed = 0
        self._forwarded = self._denied = 0

    async def __aenter__(self) -> NodeProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- listeners ---------------------------------------------------------------------------

    @property
    def addresses(self) -> dict[str, Address]:
        """Listener name -> the address it is bound to."""
        return dict(self._addresses)

    async def add_listener(self, spec: ListenerSpec) -> Address:
        """Start a listener; returns its bound address.

        Raises:
            ValueError: a listener with that name exists.
            OSError: the address cannot be bound.
        """
        if spec.name in self._addresses:
            raise ValueError(f"listener {spec.name!r} already exists")
        if spec.parser == "dns":
            dns = DNSProxy(spec.name, spec.direction, self.source, settings=self.config.dns,
                           node_name=self.config.node_name, learner=self.learner,
                           emit=self._emit, clock=self.clock)
            address = await dns.start(spec.host, spec.port)
            self._dns[spec.name] = dns
        elif spec.transparent:
            server = await asyncio.get_running_loop().create_server(
                lambda: _ClientProtocol(self, spec), sock=self._transparent_listener(spec))
            sockname = server.sockets[0].getsockname()
            address = (sockname[0], int(sockname[1]))
            self._servers[spec.name] = server
        else:
            server = await asyncio.get_running_loop().create_server(
                lambda: _ClientProtocol(self, spec), spec.host, spec.port, reuse_address=True)
            sockname = server.sockets[0].getsockname()
            address = (sockname[0], int(sockname[1]))
            self._servers[spec.name] = server
        self._addresses[spec.name] = address
        log.info("proxy listener %s (%s, %s) on %s:%d", spec.name, spec.parser,
                 spec.direction.name.lower(), *address)
        return address

    def _transparent_listener(self, spec: ListenerSpec) -> socket.socket:
        sock = self.socket_factory(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # the SYN-ACK leaves from the original destination, an address not local here
            sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
            sock.bind((spec.host, spec.port))
            sock.listen(1024)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _open_transparent(self, spec: ListenerSpec, client: Address, address: Address
                                ) -> socket.socket:
        """An upstream connection from the client's own address, marked as the proxy's."""
        sock = self.socket_factory(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
            if spec.upstream_mark:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, spec.upstream_mark)
            sock.bind((client[0], 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def remove_listener(self, name: str) -> None:
        """Stop accepting on a listener (its open connections go on until they end)."""
        self._addresses.pop(name, None)
        server = self._servers.pop(name, None)
        if server is not None:
            server.close()
        dns = self._dns.pop(name, None)
        if dns is not None:
            await dns.aclose()

    async def aclose(self) -> None:
        """Stop every listener and end every connection.

        Connections are asked to stop (they flush and linger-close like any other); one that
        has not ended after the lingering time is aborted.
        """
        for name in list(self._addresses):
            await self.remove_listener(name)
        conns = list(self._connections)
        for conn in conns:
            conn.stop()
        if conns:
            _, pending = await asyncio.wait([c.finished for c in conns],
                                            timeout=self.config.linger + 1.0)
            if pending:
                for conn in conns:
                    if not conn.finished.done():
                        conn.abort()
                await asyncio.wait(pending, timeout=1.0)

    def statistics(self) -> ProxyStatistics:
        """Counters since start."""
        return ProxyStatistics(len(self._connections), self._total, self._refused, self._failed,
                               self._forwarded, self._denied)

    # ---- connections -------------------------------------------------------------------------

    def _emit(self, flow: Flow) -> None:
        if flow.l7 is not None and flow.l7.type == L7FlowType.REQUEST:
            if flow.verdict == FlowVerdict.FORWARDED:
                self._forwarded += 1
            elif flow.verdict == FlowVerdict.DROPPED:
                self._denied += 1
        if self.on_flow is not None:
            self.on_flow(flow)

    def _emit_verdict(self, cmd: Verdict) -> None:
        """A layer's verdict: counted, and its flow built only when someone consumes flows."""
        if cmd.is_request:
            if cmd.verdict == FlowVerdict.FORWARDED:
                self._forwarded += 1
            elif cmd.verdict == FlowVerdict.DROPPED:
                self._denied += 1
        if self.on_flow is not None:
            self.on_flow(cmd.flow)

    def _make_layer(self, spec: ListenerSpec, info: ConnectionInfo) -> Layer:
        mesh = self.mesh_authorize(spec, info) if self.mesh_authorize is not None else None
        ctx = LayerContext(info, lambda: self.source.policy(info.endpoint_id), self.secrets,
                           self.config.node_name, mesh)
        if spec.parser == "kafka":
            return KafkaLayer(ctx, self.config.kafka)
        # HTTP/1.1 or h2c (gRPC), told apart by the connection preface
        return HTTPDetectLayer(ctx, self.config.http, self.config.http2)

    def _client_protocol(self, spec: ListenerSpec) -> _ClientProtocol:
        return _ClientProtocol(self, spec)

    def _accept(self, spec: ListenerSpec, proto: _ClientProtocol,
                transport: asyncio.Transport) -> _Connection | None:
        """A new client connection: its layer and `_Connection`, or None when refused."""
        conn_id = f"{spec.name}#{next(self._ids)}"
        self._total += 1
        info = self._identify(spec, transport)
        if info is None or len(self._connections) >= self.config.max_connections:
            self._refused += 1
            log.warning("[%s] refused: %s", conn_id, "connection limit reached"
                        if info is not None else "not a known endpoint's connection")
            transport.abort()
            return None
        conn = _Connection(self, self._make_layer(spec, info), transport,
                           _ConnLog(log, {"conn": conn_id}))
        ready = self.upstream_socket(spec, info) if self.upstream_socket is not None else None
        if ready is not None:
            conn.open_socket = lambda address: _opened(ready)
        elif spec.transparent:
            client = info.client
            conn.open_socket = lambda address: self._open_transparent(spec, client, address)
        self._connections.add(conn)
        return conn

    def _identify(self, spec: ListenerSpec, transport: asyncio.BaseTransport
                  ) -> ConnectionInfo | None:
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if not peer or not local:
            return None
        return self.source.resolve(spec.name, spec.direction, Proto.TCP,
                                   (peer[0], int(peer[1])), (local[0], int(local[1])))


class _ClientProtocol(asyncio.Protocol):
    """A client socket's callbacks, handed to its `_Connection`."""

    __slots__ = ("_proxy", "_spec", "conn")

    def __init__(self, proxy: NodeProxy, spec: ListenerSpec) -> None:
        self._proxy = proxy
        self._spec = spec
        self.conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is no asyncio.Transport subclass, hence the cast
        self.conn = self._proxy._accept(self._spec, self, cast(asyncio.Transport, transport))
        if self.conn is not None:
            self.conn.start()

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.client_data(data)

    def eof_received(self) -> bool:
        if self.conn is not None:
            self.conn.client_eof()
        return True  # half-open: the reply in flight still goes out, then we close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.client_lost()

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.client_write_paused(True)

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.client_write_paused(False)


class _UpstreamProtocol(asyncio.Protocol):
    """One upstream socket's callbacks; ignored by the connection once it is not current."""

    __slots__ = ("_conn", "transport", "eof")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.transport: asyncio.Transport | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._conn.server_data(self, data)

    def eof_received(self) -> bool:
        self._conn.server_eof(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn.server_eof(self)  # a reset reads as the end of what the upstream sent

    def pause_writing(self) -> None:
        self._conn.server_write_paused(self, True)

    def resume_writing(self) -> None:
        self._conn.server_write_paused(self, False)


class _Connection:
    """Executes one layer's commands against one client transport and its upstream.

    Everything happens in the transports' callbacks (no task per connection or per read):
    bytes in become events, the layer's commands are carried out at once. Backpressure is
    the transports' own: the client is read only while the layer wants data and the upstream
    takes what we write (and vice versa); a side that stops reading for `Timeouts.read`
    closes the connection. The layer's timer is one `call_later` handle that is moved only
    when the layer's deadline comes earlier; a later deadline is found when the handle fires
    (so a keep-alive request does not cancel and re-arm a timer).
    """

    def __init__(self, proxy: NodeProxy, layer: Layer, transport: asyncio.Transport,
                 conn_log: _ConnLog) -> None:
        self._proxy = proxy
        self._clock = proxy.clock
        self._layer = layer
        self._client = transport
        self._log = conn_log
        self._timeouts = proxy.config.kafka.timeouts if isinstance(layer, KafkaLayer) else (
            proxy.config.http.timeouts)
        self._loop = asyncio.get_running_loop()
        self._up: _UpstreamProtocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.open_socket: Callable[[Address], Awaitable[socket.socket]] | None = None
        """Makes the connected upstream socket (transparent listeners); None: a plain one."""
        self._done = False
        self._lost = False
        self._client_eof = False
        self._reading = True
        self._client_stalled = False
        self._server_stalled = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._linger_timer: asyncio.TimerHandle | None = None
        self._discarded = 0
        self.finished: asyncio.Future[None] = self._loop.create_future()

    # ---- the client's callbacks --------------------------------------------------------------

    def start(self) -> None:
        self._feed(Start())

    def stop(self) -> None:
        """End the connection as if the layer had closed it (proxy shutdown)."""
        self._end()

    def abort(self) -> None:
        """Drop both sockets at once (a shutdown that lingered too long)."""
        self._done = True
        self._close_upstream()
        self._client.abort()

    def client_data(self, data: bytes) -> None:
        if self._done:
            self._discard(len(data))
            return
        self._feed(ClientData(data))

    def client_eof(self) -> None:
        self._client_eof = True
        if self._done:
            self._client.close()  # lingering close: the client is done too
            return
        self._feed(ClientEof())

    def client_lost(self) -> None:
        self._lost = True
        if not self._done and not self._client_eof:
            self._feed(ClientEof())
        self._end()
        for handle in (self._timer, self._stall_timer, self._linger_timer):
            if handle is not None:
                handle.cancel()
        self._proxy._connections.discard(self)
        if not self.finished.done():
            self.finished.set_result(None)

    def client_write_paused(self, paused: bool) -> None:
        self._client_stalled = paused
        self._update_stall()
        up = self._up
        if up is not None and up.transport is not None and not up.transport.is_closing():
            if paused:
                up.transport.pause_reading()
            else:
                up.transport.resume_reading()

    # ---- the upstream's callbacks ------------------------------------------------------------

    def server_data(self, up: _UpstreamProtocol, data: bytes) -> None:
        if up is self._up and not self._done:
            self._feed(ServerData(data))

    def server_eof(self, up: _UpstreamProtocol) -> None:
        if up.eof:
            return
        up.eof = True
        if up is self._up and not self._done:
            self._feed(ServerEof())

    def server_write_paused(self, up: _UpstreamProtocol, paused: bool) -> None:
        if up is self._up:
            self._server_stalled = paused
            self._update_stall()
            self._update_reading()

    async def _connect(self, address: Address) -> None:
        up = _UpstreamProtocol(self)
        try:
            async with asyncio.timeout(self._timeouts.connect):
                if self.open_socket is None:
                    await self._loop.create_connection(lambda: up, address[0], address[1])
                else:
                    sock = await self.open_socket(address)
                    await self._loop.create_connection(lambda: up, sock=sock)
        except (OSError, TimeoutError) as exc:
            self._connecting = None
            if not self._done:
                self._feed(ServerOpenFailed(_describe(exc)))
            return
        self._connecting = None
        if self._done:
            assert up.transport is not None
            up.transport.close()
            return
        self._up = up
        self._feed(ServerOpened())

    # ---- commands ----------------------------------------------------------------------------

    def _feed(self, event: Event) -> None:
        try:
            self._execute(self._layer.handle(event, self._clock()))
        except Exception:  # the connection edge: log, fail closed, keep serving the others
            self._fail()

    def _fail(self) -> None:
        self._proxy._failed += 1
        self._log.exception("connection failed; closed")
        self._close_upstream()
        self._done = True
        self._client.abort()

    def _execute(self, commands: list[Command]) -> None:
        # the client's writes of one batch go out as one write (a response head and its body
        # are two commands, one syscall); flushed before anything that may close the client
        pending: list[bytes] = []
        for cmd in commands:
            if type(cmd) is SendToClient:
                if not self._done and not self._lost:
                    pending.append(cmd.data)
                continue
            if pending and type(cmd) is Close:
                self._client.write(b"".join(pending))
                pending.clear()
            if type(cmd) is SendToServer:
                up = self._up
                if up is not None and up.transport is not None:
                    up.transport.write(cmd.data)
            elif type(cmd) is Verdict:
                self._proxy._emit_verdict(cmd)
            elif type(cmd) is Log:
                self._log.log(cmd.level, cmd.message)
            elif type(cmd) is OpenServer:
                if not self._done:
                    self._connecting = _spawn(self._connect(cmd.address), "upstream connect")
            elif type(cmd) is Close:
                self._close_upstream()
                if cmd.side == "client":
                    self._end()
        if pending:
            self._client.write(pending[0] if len(pending) == 1 else b"".join(pending))
        if not self._done:
            self._update_reading()
            self._update_timer()

    def _update_reading(self) -> None:
        want = self._layer.wants_client_data and not self._server_stalled and not self._done
        if want != self._reading and not self._client.is_closing():
            self._reading = want
            if want:
                self._client.resume_reading()
            else:
                self._client.pause_reading()

    def _close_upstream(self) -> None:
        up, self._up = self._up, None
        self._server_stalled = False
        if up is not None and up.transport is not None:
            up.transport.close()
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()

    # ---- timers ------------------------------------------------------------------------------

    def _update_timer(self) -> None:
        deadline = self._layer.get_timer()
        if deadline is None:
            return  # a pending handle finds no deadline and does nothing
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # fires first and re-arms for the later deadline
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._done:
            return
        now = self._clock()
        deadline = self._layer.get_timer()
        if deadline is None:
            return
        if deadline > now:
            self._update_timer()
            return
        try:
            self._execute(self._layer.handle_timer(now))
        except Exception:
            self._fail()

    def _update_stall(self) -> None:
        stalled = self._client_stalled or self._server_stalled
        if stalled and self._stall_timer is None:
            self._stall_timer = self._loop.call_later(self._timeouts.read, self._on_stall)
        elif not stalled and self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _on_stall(self) -> None:
        self._stall_timer = None
        if self._client_stalled:
            self._log.info("client does not read; closed")
            self._close_upstream()
            self._done = True
            self._client.abort()
        elif self._server_stalled:
            self._log.info("upstream does not read; closed")
            self._end()

    # ---- the end -----------------------------------------------------------------------------

    def _end(self) -> None:
        """Close the upstream and linger-close the client (see the module docstring)."""
        if self._done:
            return
        self._done = True
        self._close_upstream()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        client = self._client
        if self._lost or client.is_closing():
            return
        if self._client_eof:
            client.close()  # nothing more can come: flush and close, no lingering needed
            return
        if client.can_write_eof():
            client.write_eof()  # after what is buffered; then discard late client bytes
        if not self._reading:
            self._reading = True
            client.resume_reading()
        self._linger_timer = self._loop.call_later(self._proxy.config.linger, self._linger_over)

    def _discard(self, n: int) -> None:
        self._discarded += n
        if self._discarded >= 1 << 20:
            self._linger_over()

    def _linger_over(self) -> None:
        self._linger_timer = None
        client = self._client
        if client.is_closing():
            return
        if client.get_write_buffer_size():
            client.abort()  # the client never read the reply; do not keep it buffered
        else:
            client.close()


_background: set[asyncio.Task[None]] = set()


async def _opened(sock: socket.socket) -> socket.socket:
    return sock


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A named task kept referenced until it ends (a bare task can be garbage-collected)."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when uvloop is importable, else None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the proxy's main coroutine, on uvloop when available."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)


__all__ = [
    "ListenerSpec",
    "NodeProxy",
    "Parser",
    "ProxyConfig",
    "ProxyStatistics",
    "event_loop_factory",
    "run",
]
