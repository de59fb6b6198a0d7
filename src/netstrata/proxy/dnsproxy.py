"""The DNS proxy: `rules.dns` enforcement and FQDN learning over UDP and TCP (reference §6).

One `DNSProxy` serves one DNS listener on a UDP and a TCP socket bound to the same port. For
each query it asks the `PolicySource` whose query it is, lets `layers.dns.DNSEnforcer` decide,
and then:

* refused (or malformed) queries are answered at once with the enforcer's reply;
* allowed queries are forwarded to the original destination (UDP: a fresh socket per query,
  so the source port is unpredictable to off-path spoofers; TCP: one upstream connection per
  client connection); datagrams that are not the answer to our query are ignored until
  `upstream_timeout`, after which the client gets SERVFAIL;
* an answer with addresses is first handed to the `FQDNLearner`, and released to the client
  only when the learner returns, so the ipcache holds the IPs before the client can connect
  to them (Cilium holds answers the same way, but gives up after
  `--tofqdns-proxy-response-max-delay`, 100 ms: set `response_max_delay` for that; the
  learner then still finishes in the background).

Transparent mode (`transparent=True`, the node proxy behind the kernel's redirect,
docs/proxy-redirect.md): the listeners carry `IP_TRANSPARENT` and the UDP one
`IP_RECVORIGDSTADDR`, since a redirected datagram keeps its original destination (the DNS
server) and that address is what the policy lookup and the upstream need. Answers must leave
from that server address, or the client's resolver drops them: each (server IP, port) gets
one reply socket bound to it (`IP_TRANSPARENT`, kept for the proxy's life). The upstream query
leaves from the client's own address with `upstream_mark` as its SO_MARK, so the server's
ingress policy judges the client's identity and the kernel does not redirect it again.

UDP queries go through a bounded queue (`queue_size`) to `workers` worker tasks: a flood
cannot make the proxy allocate without bound, and a full queue drops datagrams, which is what
an overloaded UDP server does anyway (the client retries). Each query's failure is contained:
it is logged and the worker takes the next one. TCP connections are sequential (one query at
a time per connection; RFC 7766 allows it) and close after `tcp_idle` seconds without a query.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from netstrata.agent.tasks import spawn
from netstrata.observe.flow import Flow
from netstrata.policy.types import Direction, Proto
from netstrata.proxy.dns import (
    REFUSED,
    DNSQuery,
    DNSResponse,
    DNSStreamParser,
    MalformedDNSMessage,
    build_error_reply,
    tcp_frame,
)
from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.layers.dns import (
    DNSEnforcer,
    DNSObservation,
    FQDNLearner,
    QueryDecision,
    ResponseDecision,
)
from netstrata.proxy.policy_source import Address, ConnectionInfo, PolicySource
from netstrata.proxy.sansio import NEED_DATA, ConnectionClosed

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DNSSettings:
    """DNS proxy settings (Cilium's `--tofqdns-*` flags where one exists)."""

    reject_rcode: int = REFUSED
    """REFUSED (5), or NXDOMAIN (3) for `--tofqdns-dns-reject-response-code=nameError`."""
    min_ttl: int = 0
    """`--tofqdns-min-ttl`: learned TTLs are at least this many seconds (default 0)."""
    upstream_timeout: float = 5.0
    """Seconds to wait for the upstream's answer before SERVFAIL (dig's default is 5 s)."""
    response_max_delay: float | None = None
    """Seconds to hold an answer for the learner at most; None waits until it returns."""
    workers: int = 64
    """UDP queries handled concurrently."""
    queue_size: int = 1024
    """UDP queries waiting for a worker before datagrams are dropped."""
    tcp_idle: float = 10.0
    """Seconds a TCP connection may sit without a query."""


_IP_TRANSPARENT: Final = getattr(socket, "IP_TRANSPARENT", 19)
_IP_RECVORIGDSTADDR: Final = getattr(socket, "IP_RECVORIGDSTADDR", 20)
"""Linux: deliver the datagram's destination (before any redirect) as IP_ORIGDSTADDR."""
_IP_ORIGDSTADDR: Final = _IP_RECVORIGDSTADDR
_SOCKADDR_IN: Final = struct.Struct("!2xH4s")
"""sockaddr_in after the family: port, address (network order)."""
SocketFactory = Callable[[int, int], socket.socket]
QueueItem = tuple[bytes, Address, Address | None]
"""(datagram, client, original destination; None outside transparent mode)."""


def original_destination(ancillary: list[tuple[int, int, bytes]]) -> Address | None:
    """The IP_ORIGDSTADDR of one `recvmsg`, or None when the kernel sent none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_IP and kind == _IP_ORIGDSTADDR and len(data) >= 8:
            port, packed = _SOCKADDR_IN.unpack_from(data)
            return socket.inet_ntoa(packed), port
    return None


DEFAULT_DNS_SETTINGS: Final = DNSSettings()


class _UDPListener(asyncio.DatagramProtocol):
    """Puts datagrams on the bounded queue; never blocks the loop."""

    def __init__(self, queue: asyncio.Queue[QueueItem]) -> None:
        self.queue = queue
        self.transport: asyncio.DatagramTransport | None = None
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # not a subclass on 3.11

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.put(data, (str(addr[0]), int(addr[1])), None)

    def put(self, data: bytes, client: Address, original: Address | None) -> None:
        try:
            self.queue.put_nowait((data, client, original))
        except asyncio.QueueFull:
            self.dropped += 1


class _TransparentUDP:
    """The transparent UDP listener: `recvmsg` for the original destination of each datagram
    (asyncio's datagram transports drop ancillary data), and the reply sockets."""

    def __init__(self, sock: socket.socket, listener: _UDPListener, factory: SocketFactory
                 ) -> None:
        self.sock = sock
        self.listener = listener
        self.factory = factory
        self.replies: dict[Address, socket.socket] = {}
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(64):  # bounded per wake-up, so one flood cannot starve the loop
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.debug("DNS listener receive failed", exc_info=True)
                return
            original = original_destination(ancillary)
            if original is None:
                continue  # not redirected here by the kernel: no server to answer for
            self.listener.put(data, (str(addr[0]), int(addr[1])), original)

    def send(self, reply: bytes, server: Address, client: Address) -> None:
        """Send `reply` to `client` from `server`'s address (a reply socket bound to it)."""
        sock = self.replies.get(server)
        if sock is None:
            sock = self.factory(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(server)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self.replies[server] = sock
        try:
            sock.sendto(reply, client)
        except (BlockingIOError, InterruptedError):
            log.debug("DNS reply to %s:%d dropped: socket buffer full", *client)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        for sock in self.replies.values():
            sock.close()
        self.replies.clear()


class _UpstreamDatagram(asyncio.DatagramProtocol):
    """One query's upstream socket: the first datagram the enforcer accepts settles it."""

    def __init__(self, accept: Callable[[bytes], ResponseDecision | None]) -> None:
        self.accept = accept
        self.result: asyncio.Future[ResponseDecision | None] = (
            asyncio.get_running_loop().create_future())

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.result.done():
            return
        decision = self.accept(data)
        if decision is not None:
            self.result.set_result(decision)

    def error_received(self, exc: Exception) -> None:
        if not self.result.done():
            self.result.set_result(None)  # ICMP unreachable: no server there


@dataclass(slots=True)
class _TCPUpstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: DNSStreamParser = field(default_factory=lambda: DNSStreamParser("client"))


class DNSProxy:
    """One DNS listener (UDP and TCP on one port); see the module docstring."""

    def __init__(self, name: str, direction: Direction, source: PolicySource, *,
                 settings: DNSSettings = DEFAULT_DNS_SETTINGS, node_name: str = "",
                 learner: FQDNLearner | None = None,
                 emit: Callable[[Flow], None] | None = None,
                 clock: Callable[[], float] = time.time, transparent: bool = False,
                 upstream_mark: int = 0, socket_factory: SocketFactory = socket.socket) -> None:
        self.name: Final = name
        self.direction: Final = direction
        self.source: Final = source
        self.settings: Final = settings
        self.learner = learner
        self.emit = emit
        self.clock: Final = clock
        self.enforcer: Final = DNSEnforcer(reject_rcode=settings.reject_rcode,
                                           min_ttl=settings.min_ttl, node_name=node_name)
        self.transparent: Final = transparent
        """Behind the kernel's redirect (see the module docstring)."""
        self.upstream_mark: Final = upstream_mark
        self.socket_factory: Final = socket_factory
        """Makes the sockets of transparent mode (the lab makes them in a node's namespace)."""
        self._queue: asyncio.Queue[QueueItem] = asyncio.Queue(settings.queue_size)
        self._udp: _UDPListener | None = None
        self._tudp: _TransparentUDP | None = None
        self._tcp: asyncio.Server | None = None
        self._address: Address | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> Address | None:
        """The bound (host, port), once started."""
        return self._address

    @property
    def dropped(self) -> int:
        """UDP queries dropped because the queue was full."""
        return self._udp.dropped if self._udp is not None else 0

    async def start(self, host: str, port: int = 0) -> Address:
        """Bind UDP and TCP on `host:port` (a free port for both when `port` is 0).

        Raises:
            OSError: the port cannot be bound.
        """
        if self.transparent:
            return await self._start_transparent(host, port)
        loop = asyncio.get_running_loop()
        for attempt in range(8):
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UDPListener(self._queue), local_addr=(host, port))
            bound = transport.get_extra_info("sockname")
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, bound[1],
                                                       reuse_address=True)
            except OSError:
                transport.close()
                if port or attempt == 7:
                    raise
                continue
            self._udp = protocol
            self._address = (bound[0], int(bound[1]))
            break
        for index in range(self.settings.workers):
            self._tasks.add(spawn(self._udp_worker(), name=f"dns {self.name} worker {index}"))
        assert self._address is not None
        return self._address

    async def _start_transparent(self, host: str, port: int) -> Address:
        udp = self.socket_factory(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = self.socket_factory(socket.AF_INET, socket.SOCK_STREAM)
        try:
            for sock in (udp, tcp):
                sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setblocking(False)
            udp.setsockopt(socket.SOL_IP, _IP_RECVORIGDSTADDR, 1)
            udp.bind((host, port))
            bound = udp.getsockname()
            tcp.bind((host, bound[1]))
            tcp.listen(128)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        self._udp = _UDPListener(self._queue)
        self._tudp = _TransparentUDP(udp, self._udp, self.socket_factory)
        self._address = (str(bound[0]), int(bound[1]))
        for index in range(self.settings.workers):
            self._tasks.add(spawn(self._udp_worker(), name=f"dns {self.name} worker {index}"))
        return self._address

    def _transparent_socket(self, kind: int, client: Address) -> socket.socket:
        """An upstream socket leaving from the client's address with the upstream mark."""
        sock = self.socket_factory(socket.AF_INET, kind)
        try:
            sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
            if self.upstream_mark:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.upstream_mark)
            sock.bind((client[0], 0))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def aclose(self) -> None:
        """Stop listening and cancel queries in progress."""
        if self._tudp is not None:
            self._tudp.close()
            self._tudp = None
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- shared ------------------------------------------------------------------------------

    def _identify(self, proto: int, client: Address, local: Address | None
                  ) -> ConnectionInfo | None:
        assert self._address is not None
        return self.source.resolve(self.name, self.direction, proto, client,
                                   local or self._address)

    def _emit(self, flows: tuple[Flow, ...]) -> None:
        if self.emit is not None:
            for flow in flows:
                self.emit(flow)

    async def _learn(self, observation: DNSObservation) -> None:
        """Run the learner; return when it is done (or `response_max_delay` has passed)."""
        if self.learner is None:
            return
        task = spawn(self._run_learner(observation), name=f"dns learn {observation.qname}")
        if self.settings.response_max_delay is None:
            await asyncio.shield(task)
            return
        try:
            async with asyncio.timeout(self.settings.response_max_delay):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("FQDN learner slower than %.3fs for %s; answer released",
                        self.settings.response_max_delay, observation.qname)

    async def _run_learner(self, observation: DNSObservation) -> None:
        assert self.learner is not None
        try:
            await self.learner(observation)
        except Exception:  # a learner edge: the answer is still released (the kernel decides)
            log.exception("FQDN learner failed for %s", observation.qname)

    # ---- UDP ---------------------------------------------------------------------------------

    async def _udp_worker(self) -> None:
        while True:
            data, client, original = await self._queue.get()
            try:
                await self._answer_udp(data, client, original)
            except Exception:  # one query's edge: log it, take the next one
                log.exception("DNS query from %s:%d failed", *client)

    async def _answer_udp(self, data: bytes, client: Address, original: Address | None) -> None:
        info = self._identify(Proto.UDP, client, original)
        if info is None:
            log.debug("DNS query from unknown client %s dropped", client[0])
            return
        send = self._udp_sender(client, original)
        started = self.clock()
        decision = self.enforcer.on_query(data, info, self.source.policy(info.endpoint_id),
                                          started)
        self._emit(decision.flows)
        if decision.action == "answer" and decision.reply is not None:
            send(decision.reply)
        if decision.action != "forward":
            return
        response = await self._exchange_udp(decision, info, started)
        await self._release(response, send)

    def _udp_sender(self, client: Address, original: Address | None) -> Callable[[bytes], None]:
        """Sends a reply to `client`: from the original server's address when transparent."""
        if self._tudp is not None and original is not None:
            tudp = self._tudp
            return lambda reply: tudp.send(reply, original, client)
        udp = self._udp
        assert udp is not None and udp.transport is not None
        transport = udp.transport
        return lambda reply: transport.sendto(reply, client)

    async def _exchange_udp(self, decision: QueryDecision, info: ConnectionInfo,
                            started: float) -> ResponseDecision:
        query = decision.query
        assert query is not None
        loop = asyncio.get_running_loop()

        def accept(wire: bytes) -> ResponseDecision | None:
            result = self.enforcer.on_response(decision, wire, info, started, self.clock())
            return None if result.action == "ignore" else result

        if self.transparent:
            sock = self._transparent_socket(socket.SOCK_DGRAM, info.client)
            try:
                sock.connect(info.original_dst)
            except BaseException:
                sock.close()
                raise
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UpstreamDatagram(accept), sock=sock)
        else:
            family = socket.AF_INET6 if ":" in info.original_dst[0] else socket.AF_INET
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UpstreamDatagram(accept), remote_addr=info.original_dst,
                family=family)
        try:
            transport.sendto(query.wire)
            async with asyncio.timeout(self.settings.upstream_timeout):
                result = await protocol.result
        except TimeoutError:
            result = None
        finally:
            transport.close()
        if result is None:
            return self.enforcer.on_failure(decision, info, started, self.clock())
        return result

    async def _release(self, response: ResponseDecision, send: Callable[[bytes], None]) -> None:
        self._emit(response.flows)
        if response.observation is not None:
            await self._learn(response.observation)
        if response.reply is not None:
            send(response.reply)

    # ---- TCP ---------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname") if self.transparent else None
        upstream: list[_TCPUpstream] = []
        try:
            info = (self._identify(Proto.TCP, (peer[0], int(peer[1])),
                                   (str(local[0]), int(local[1])) if local else None)
                    if peer else None)
            if info is None:
                return
            await self._tcp_session(info, reader, writer, upstream)
        except Exception:  # the connection edge: log, close, keep serving
            log.exception("DNS TCP connection from %s failed; closed", peer)
        finally:
            for up in upstream:
                up.writer.close()
            writer.close()

    async def _tcp_session(self, info: ConnectionInfo, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter, upstream: list[_TCPUpstream]) -> None:
        parser = DNSStreamParser("server")
        while True:
            try:
                async with asyncio.timeout(self.settings.tcp_idle):
                    data = await reader.read(65536)
            except (TimeoutError, ConnectionError):
                return
            parser.receive_data(data)
            while True:
                try:
                    event = parser.next_event()
                except MalformedDNSMessage as exc:
                    reply = build_error_reply(exc)
                    if reply is not None:
                        writer.write(tcp_frame(reply))
                    continue
                except RemoteProtocolError:
                    return
                if event is NEED_DATA:
                    break
                if isinstance(event, ConnectionClosed):
                    return
                if isinstance(event, DNSQuery):
                    await self._answer_tcp(event, info, writer, upstream)
            await writer.drain()
            if not data:
                return

    async def _answer_tcp(self, query: DNSQuery, info: ConnectionInfo,
                          writer: asyncio.StreamWriter, upstream: list[_TCPUpstream]) -> None:
        started = self.clock()
        decision = self.enforcer.on_query(query.wire, info,
                                          self.source.policy(info.endpoint_id), started)
        self._emit(decision.flows)
        if decision.action == "answer" and decision.reply is not None:
            writer.write(tcp_frame(decision.reply))
        if decision.action != "forward":
            return
        try:
            async with asyncio.timeout(self.settings.upstream_timeout):
                response = await self._exchange_tcp(decision, info, started, upstream)
        except (TimeoutError, OSError, RemoteProtocolError):
            for up in upstream:
                up.writer.close()
            upstream.clear()
            response = self.enforcer.on_failure(decision, info, started, self.clock())
        await self._release(response, lambda reply: writer.write(tcp_frame(reply)))

    async def _exchange_tcp(self, decision: QueryDecision, info: ConnectionInfo, started: float,
                            upstream: list[_TCPUpstream]) -> ResponseDecision:
        assert decision.query is not None
        if not upstream:
            if self.transparent:
                sock = self._transparent_socket(socket.SOCK_STREAM, info.client)
                try:
                    await asyncio.get_running_loop().sock_connect(sock, info.original_dst)
                except BaseException:
                    sock.close()
                    raise
                reader, writer = await asyncio.open_connection(sock=sock)
            else:
                reader, writer = await asyncio.open_connection(*info.original_dst)
            upstream.append(_TCPUpstream(reader, writer))
        up = upstream[0]
        up.writer.write(tcp_frame(decision.query.wire))
        await up.writer.drain()
        while True:
            try:
                event = up.parser.next_event()
            except MalformedDNSMessage:
                return self.enforcer.on_failure(decision, info, started, self.clock())
            if event is NEED_DATA:
                data = await up.reader.read(65536)
                up.parser.receive_data(data)
                continue
            if isinstance(event, ConnectionClosed):
                raise OSError("upstream closed the connection")
            if isinstance(event, DNSResponse):
                result = self.enforcer.on_response(decision, event.wire, info, started,
                                                   self.clock())
                if result.action == "release":
                    return result


__all__ = ["DEFAULT_DNS_SETTINGS", "DNSProxy", "DNSSettings", "original_destination"]
