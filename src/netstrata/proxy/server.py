"""The node proxy's asyncio adapter: listeners, connections, and the commands layers yield.

`NodeProxy` owns the listeners (one per `ListenerSpec`: HTTP and Kafka over TCP, DNS over
UDP and TCP through `dnsproxy.DNSProxy`). For each accepted TCP connection it asks the
`PolicySource` whose connection it is, builds the enforcement layer for the listener's parser
(`layers.http_detect.HTTPDetectLayer`, which picks `layers.http.HTTPLayer` or
`layers.http2.H2Layer` by the connection preface; `layers.kafka.KafkaLayer`) and runs one `_Connection`, which is the
only code that touches the sockets (aioquic's `asyncio/protocol.py` pattern):

* a client pump: read, feed `ClientData`/`ClientEof`, execute the commands, await drain;
  it waits while the layer says `wants_client_data` is false (pipelining, upstream not yet
  open, too many Kafka responses owed), so nothing is buffered without bound;
* an upstream pump per `OpenServer`: connect to the original destination (connect timeout),
  then read and feed `ServerData`/`ServerEof`;
* a timer task: sleeps until `layer.get_timer()` and calls `handle_timer(now)`.

The three live in one `asyncio.TaskGroup`; the connection ends when the layer closes the
client. Failure containment: a connection that raises anything is logged and closed (the
`except Exception` at the connection edge, STYLE.md: fail closed); other connections and the
listeners go on. Writes that a client or an upstream leaves unread for `Timeouts.read` close
the connection, so a peer that stops reading cannot pin a pump (and its buffers) forever.

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
from typing import Any, Final, Literal, TypeVar

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
from netstrata.proxy.layers.context import Layer, LayerContext
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
        self.clock: Final = clock
        self.socket_factory: Final = socket_factory
        """Makes the TCP sockets of transparent listeners and their upstreams (family, type):
        an agent outside its node's namespace passes one that creates them inside it."""
        self._servers: dict[str, asyncio.Server] = {}
        self._dns: dict[str, DNSProxy] = {}
        self._addresses: dict[str, Address] = {}
        self._connections: dict[asyncio.Task[None], _Connection | None] = {}
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
            server = await asyncio.start_server(
                lambda r, w: self._on_client(spec, r, w), sock=self._transparent_listener(spec))
            sockname = server.sockets[0].getsockname()
            address = (sockname[0], int(sockname[1]))
            self._servers[spec.name] = server
        else:
            server = await asyncio.start_server(
                lambda r, w: self._on_client(spec, r, w), spec.host, spec.port,
                reuse_address=True)
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
                                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
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
        return await asyncio.open_connection(sock=sock)

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

        Connections are asked to stop (they flush and close like any other) rather than
        cancelled: asyncio's stream server logs a cancelled handler as an error on 3.11. One
        that has not ended after the lingering time is cancelled all the same.
        """
        for name in list(self._addresses):
            await self.remove_listener(name)
        for conn in self._connections.values():
            if conn is not None:
                conn.stop()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.linger + 1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

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

    def _make_layer(self, spec: ListenerSpec, info: ConnectionInfo) -> Layer:
        ctx = LayerContext(info, lambda: self.source.policy(info.endpoint_id), self.secrets,
                           self.config.node_name)
        if spec.parser == "kafka":
            return KafkaLayer(ctx, self.config.kafka)
        # HTTP/1.1 or h2c (gRPC), told apart by the connection preface
        return HTTPDetectLayer(ctx, self.config.http, self.config.http2)

    async def _on_client(self, spec: ListenerSpec, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn_id = f"{spec.name}#{next(self._ids)}"
        self._connections[task] = None
        self._total += 1
        try:
            info = self._identify(spec, writer)
            if info is None or len(self._connections) > self.config.max_connections:
                self._refused += 1
                log.warning("[%s] refused: %s", conn_id, "connection limit reached"
                            if info is not None else "not a known endpoint's connection")
                writer.transport.abort()
                return
            conn_log = _ConnLog(log, {"conn": conn_id})
            conn = self._connections[task] = _Connection(
                self, self._make_layer(spec, info), reader, writer, conn_log)
            if spec.transparent:
                client = info.client
                conn.open_upstream = lambda address: self._open_transparent(spec, client, address)
            await conn.run()
        except Exception:  # the connection edge: log, fail closed, keep serving the others
            self._failed += 1
            log.exception("[%s] connection failed; closed", conn_id)
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)

    def _identify(self, spec: ListenerSpec, writer: asyncio.StreamWriter) -> ConnectionInfo | None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        if not peer or not local:
            return None
        return self.source.resolve(spec.name, spec.direction, Proto.TCP,
                                   (peer[0], int(peer[1])), (local[0], int(local[1])))


@dataclass(slots=True)
class _Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dirty: bool = False


class _Connection:
    """Executes one layer's commands against one client socket and its upstream."""

    def __init__(self, proxy: NodeProxy, layer: Layer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, conn_log: _ConnLog) -> None:
        self._proxy = proxy
        self._layer = layer
        self._reader = reader
        self._writer = writer
        self._log = conn_log
        self._timeouts = proxy.config.kafka.timeouts if isinstance(layer, KafkaLayer) else (
            proxy.config.http.timeouts)
        self._up: _Upstream | None = None
        self.open_upstream: Callable[[Address], Awaitable[
            tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = _open_plain
        self._client_dirty = False
        self._done = asyncio.Event()
        self._readable = asyncio.Event()
        self._timer_changed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def stop(self) -> None:
        """End the connection as if the layer had closed it (proxy shutdown)."""
        self._done.set()
        self._readable.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._feed(Start())
                self._tasks.append(tg.create_task(self._pump_client(), name="client pump"))
                self._tasks.append(tg.create_task(self._run_timer(), name="timer"))
                await self._flush()
                await self._done.wait()
                self._tg = None
                self._close_upstream()
                for task in self._tasks:
                    task.cancel()
            await self._linger()
        finally:
            self._close_upstream()
            if not self._writer.is_closing():
                self._writer.transport.abort()

    # ---- commands ----------------------------------------------------------------------------

    def _feed(self, event: Event) -> None:
        self._execute(self._layer.handle(event, self._proxy.clock()))

    def _execute(self, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, SendToClient):
                if not self._done.is_set():
                    self._writer.write(cmd.data)
                    self._client_dirty = True
            elif isinstance(cmd, SendToServer):
                if self._up is not None:
                    self._up.writer.write(cmd.data)
                    self._up.dirty = True
            elif isinstance(cmd, Verdict):
                self._proxy._emit(cmd.flow)
            elif isinstance(cmd, Log):
                self._log.log(cmd.level, cmd.message)
            elif isinstance(cmd, OpenServer):
                if self._tg is not None:
                    self._tasks = [t for t in self._tasks if not t.done()]
                    self._tasks.append(self._tg.create_task(self._pump_server(cmd.address),
                                                            name="server pump"))
            elif isinstance(cmd, Close):
                self._close_upstream()
                if cmd.side == "client":
                    self._done.set()
        if self._layer.wants_client_data and not self._done.is_set():
            self._readable.set()
        else:
            self._readable.clear()
        self._timer_changed.set()

    async def _flush(self) -> None:
        """Backpressure: wait until both transports took what we wrote."""
        if self._client_dirty and not self._writer.is_closing():
            self._client_dirty = False
            try:
                async with asyncio.timeout(self._timeouts.read):
                    await self._writer.drain()
            except TimeoutError:
                self._log.info("client does not read; closed")
                self._done.set()
            except ConnectionError:
                self._done.set()
        up = self._up
        if up is not None and up.dirty:
            up.dirty = False
            try:
                async with asyncio.timeout(self._timeouts.read):
                    await up.writer.drain()
            except TimeoutError:
                self._log.info("upstream does not read; closed")
                self._done.set()
            except ConnectionError:
                if up is self._up:
                    self._feed(ServerEof())

    def _close_upstream(self) -> None:
        up, self._up = self._up, None
        if up is not None:
            up.writer.close()

    # ---- pumps -------------------------------------------------------------------------------

    async def _pump_client(self) -> None:
        size = self._proxy.config.read_size
        while not self._done.is_set():
            await self._readable.wait()
            try:
                data = await self._reader.read(size)
            except ConnectionError:
                data = b""
            if self._done.is_set():
                return
            self._feed(ClientData(data) if data else ClientEof())
            await self._flush()
            if not data:
                return

    async def _pump_server(self, address: Address) -> None:
        try:
            async with asyncio.timeout(self._timeouts.connect):
                reader, writer = await self.open_upstream(address)
        except (OSError, TimeoutError) as exc:
            self._feed(ServerOpenFailed(_describe(exc)))
            await self._flush()
            return
        up = self._up = _Upstream(reader, writer)
        self._feed(ServerOpened())
        await self._flush()
        size = self._proxy.config.read_size
        while up is self._up:
            try:
                data = await reader.read(size)
            except ConnectionError:
                data = b""
            if up is not self._up:
                break
            self._feed(ServerData(data) if data else ServerEof())
            await self._flush()
            if not data:
                break
        writer.close()

    async def _run_timer(self) -> None:
        clock = self._proxy.clock
        while not self._done.is_set():
            self._timer_changed.clear()
            deadline = self._layer.get_timer()
            if deadline is None:
                await self._timer_changed.wait()
                continue
            delay = deadline - clock()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._timer_changed.wait()
                    continue
                except TimeoutError:
                    pass
            self._execute(self._layer.handle_timer(clock()))
            await self._flush()

    async def _linger(self) -> None:
        """Flush, half-close, discard late client bytes for a while, then close."""
        writer = self._writer
        if writer.is_closing():
            return
        try:
            async with asyncio.timeout(self._proxy.config.linger):
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                discarded = 0
                while discarded < 1 << 20:
                    chunk = await self._reader.read(self._proxy.config.read_size)
                    if not chunk:
                        break
                    discarded += len(chunk)
        except (TimeoutError, ConnectionError, OSError):
            pass
        writer.close()


async def _open_plain(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(address[0], address[1])


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
