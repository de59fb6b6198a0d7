"""The mTLS tunnel between node proxies (asyncio adapter; the decisions are pure elsewhere).

    app ──TCP──► source node proxy ══TLS 1.3, source workload cert══► destination node proxy
                 (OutboundListener,    CONNECT <ip:port> (mesh.hbone)  (TunnelServer: verify
                  TunnelClient)                                         chain + trust domain,
                                                                        PeerAuthentication,
                                                                        handler) ──TCP──► app

- `TunnelClient.open(source, target, via)`: one TLS 1.3 connection to the destination proxy
  `via`, presenting the *source workload's* current certificate, checking the destination
  proxy's certificate, then `CONNECT target`; returns the streams once `200` came back.
- `TunnelServer`: the mTLS listener (HBONE's 15008 role) and an optional plaintext listener
  (the inbound-capture role) for connections that did not come through a tunnel. For each
  connection it learns the peer (`Peer(mtls=True, principal=<td>/ns/<ns>/sa/<sa>)` or
  plaintext), asks an `InboundAdmission` (by default `PeerAuthenticationGate`: STRICT /
  PERMISSIVE / DISABLE) and passes admitted ones to an `InboundHandler`, which is where the
  node proxy's L7 layers and `mesh.evaluate` plug in. The default handler forwards bytes.
- `OutboundListener`: a local listener that asks a `route` callback where each accepted
  connection goes (tunnel, or plaintext when bypassed) and pipes it there.

Tasks: every connection runs in the task asyncio's server makes for it, and its two copy
directions in a `TaskGroup`; nothing here spawns free-standing tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, final

from netstrata.api.istio import IstioObject
from netstrata.mesh import hbone
from netstrata.mesh.ca import PeerCertificateError
from netstrata.mesh.peerauth import PeerAuthDecision, decide_peer_authentication
from netstrata.mesh.spiffe import SpiffeId
from netstrata.mesh.tls import Clock, MeshCredentials
from netstrata.mesh.types import MeshConfig, Peer, Workload

log = logging.getLogger(__name__)

Address = tuple[str, int]
PREAMBLE_TIMEOUT_S: Final = 10.0
"""How long a peer may take to send its CONNECT after the handshake (slowloris defence)."""
COPY_CHUNK: Final = 65536
_DROP_ERRORS: Final = (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError)


class TunnelRefused(ConnectionError):
    """The destination proxy answered the CONNECT with a refusal (its HTTP status)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"mesh tunnel refused with HTTP {status}")
        self.status = status


@dataclass(frozen=True, slots=True)
class InboundConnection:
    """An admitted connection as the destination proxy hands it to the L7 layers."""

    peer: Peer
    """What authorization sees (`source.principal` is `peer.principal`)."""
    target: Address
    """The original destination (workload IP and target port)."""
    workload: Workload | None
    decision: PeerAuthDecision
    source_address: Address
    """The socket peer: the source node proxy for a tunnel, the client for plaintext."""
    forwarded_for: str | None = None
    """The source workload's address as the tunnel's `Forwarded` field names it."""
    delivery: socket.socket | None = None
    """The connection to the workload already opened by the server's `deliver` hook (the
    handler owns it: uses it as the upstream, or closes it)."""


Deliver = Callable[[Address, str], Awaitable[socket.socket | None]]
"""Opens the connection to the original destination from the source workload's address
(target, source IP); None when it could not be opened (the kernel dropped it)."""

InboundHandler = Callable[
    [InboundConnection, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]
OnRefused = Callable[[str, Address, PeerAuthDecision], None]
"""Told each connection PeerAuthentication refused: (source address, target, decision)."""


class InboundAdmission(Protocol):
    """Decides, per connection, whether the destination workload accepts it."""

    def admit(self, target: Address, peer: Peer) -> tuple[Workload | None, PeerAuthDecision]: ...


@final
@dataclass(frozen=True, slots=True)
class PeerAuthenticationGate:
    """The default admission: PeerAuthentication of the workload at the target IP."""

    objects: Callable[[], Sequence[IstioObject]]
    """The current Istio objects (re-read per connection, so policy updates apply at once)."""
    workload_at: Callable[[str], Workload | None]
    """The local workload with this IP, or None."""
    mesh: MeshConfig = MeshConfig()

    def admit(self, target: Address, peer: Peer) -> tuple[Workload | None, PeerAuthDecision]:
        workload = self.workload_at(target[0])
        if workload is None:  # fail closed: no workload, no policy to say yes
            return None, PeerAuthDecision(
                False, "UNSET", "none", peer, f"no meshed workload at {target[0]}"
            )
        return workload, decide_peer_authentication(
            self.objects(), workload, target[1], peer, self.mesh
        )


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(COPY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close travels on; TLS cannot carry it, so it closes below
        else:
            writer.close()
    except _DROP_ERRORS:
        writer.close()


async def pipe(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy both ways until both directions end, then close both writers."""
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_copy(a[0], b[1]), name="mesh-pipe-a-to-b")
            group.create_task(_copy(b[0], a[1]), name="mesh-pipe-b-to-a")
    finally:
        for writer in (a[1], b[1]):
            await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(*_DROP_ERRORS):
        await writer.wait_closed()


async def _owned(
    tasks: set[asyncio.Task[None]], run: Awaitable[None], writer: asyncio.StreamWriter
) -> None:
    """Run one connection's handler as a task `tasks` knows (so `close` can end it). A
    cancelled connection ends here: asyncio's server would otherwise report the cancelled
    handler task as an unhandled exception."""
    task = asyncio.current_task()
    if task is not None:
        tasks.add(task)
    try:
        await run
    except asyncio.CancelledError:
        writer.transport.abort()
    finally:
        if task is not None:
            tasks.discard(task)


async def forward_to_target(
    conn: InboundConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The default handler: plain TCP to the original destination (no L7 step)."""
    try:
        upstream = await asyncio.open_connection(*conn.target)
    except OSError:
        await _close(writer)
        return
    await pipe((reader, writer), upstream)


async def _read_head(reader: asyncio.StreamReader) -> hbone.Preamble:
    async with asyncio.timeout(PREAMBLE_TIMEOUT_S):
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise ValueError("tunnel preamble too long") from exc
    head = hbone.split_head(raw)
    if head is None:  # readuntil returned without the separator: cannot happen, fail closed
        raise ValueError("tunnel preamble incomplete")
    return head


@dataclass(slots=True)
class TunnelStatistics:
    accepted: int = 0
    refused_certificate: int = 0
    refused_policy: int = 0
    bad_preamble: int = 0
    plaintext_accepted: int = 0
    plaintext_refused: int = 0


OriginalDestination = Callable[[asyncio.StreamWriter], Address]


def socket_destination(writer: asyncio.StreamWriter) -> Address:
    """The accepted socket's local address: the original destination under TPROXY."""
    host, port = writer.get_extra_info("sockname")[:2]
    return str(host), int(port)


@final
class TunnelServer:
    """The destination node proxy's inbound side: the mTLS listener and the plaintext one."""

    def __init__(
        self,
        *,
        credentials: MeshCredentials,
        identity: SpiffeId,
        admission: InboundAdmission,
        handler: InboundHandler = forward_to_target,
        clock: Clock | None = None,
        deliver: Deliver | None = None,
        on_refused: OnRefused | None = None,
    ) -> None:
        """
        Args:
            credentials: certificates and trust bundle of this node proxy.
            identity: the identity this proxy presents to sources (its own workload identity).
            admission: PeerAuthentication per connection (`PeerAuthenticationGate`).
            handler: receives every admitted connection (L7 layers, or byte forwarding).
            clock: time for certificate validity checks; the credentials' clock by default.
            deliver: opens the connection to the workload before anything is answered (the
                kernel lab: the destination's L3/L4 policy decides first, and a connection it
                drops stays silent, as a dropped SYN does); None leaves it to the handler.
            on_refused: told every connection PeerAuthentication refused (flow records).
        """
        self.credentials = credentials
        self.identity = identity
        self.admission = admission
        self.handler = handler
        self.clock = clock or credentials.clock
        self.deliver = deliver
        self.on_refused = on_refused
        self._stats = TunnelStatistics()
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(
        self, host: str | None = None, port: int = 0, *, sock: socket.socket | None = None
    ) -> Address:
        """Listen for tunnels (mTLS) on host:port or a bound `sock`; returns the address."""
        ctx = self.credentials.server(self.identity)

        async def on_tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _owned(self._connections, self._on_tunnel(reader, writer), writer)

        if sock is not None:
            server = await asyncio.start_server(on_tunnel, sock=sock, ssl=ctx)
        else:
            server = await asyncio.start_server(on_tunnel, host, port, ssl=ctx)
        return self._keep(server)

    async def start_plaintext(
        self,
        host: str | None = None,
        port: int = 0,
        *,
        original_destination: OriginalDestination = socket_destination,
        sock: socket.socket | None = None,
    ) -> Address:
        """Listen for captured plaintext connections (host:port or a bound `sock`)."""

        async def on_plaintext(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            run = self._on_plaintext(reader, writer, original_destination)
            await _owned(self._connections, run, writer)

        if sock is not None:
            return self._keep(await asyncio.start_server(on_plaintext, sock=sock))
        return self._keep(await asyncio.start_server(on_plaintext, host, port))

    def _keep(self, server: asyncio.Server) -> Address:
        self._servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def statistics(self) -> TunnelStatistics:
        s = self._stats
        return TunnelStatistics(
            s.accepted,
            s.refused_certificate,
            s.refused_policy,
            s.bad_preamble,
            s.plaintext_accepted,
            s.plaintext_refused,
        )

    async def close(self) -> None:
        """Stop listening, end every connection still open, and wait for them."""
        self._closing = True
        for server in self._servers:
            server.close()
        for task in self._connections:
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=2.0)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await server.wait_closed()
        self._servers.clear()

    def _peer_of(self, writer: asyncio.StreamWriter) -> Peer:
        """Verify the client certificate (raises PeerCertificateError)."""
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise PeerCertificateError("no client certificate")
        identity = self.credentials.peers.verify(der, now=self.clock())
        return Peer(mtls=True, principal=identity.principal)

    async def _on_tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[:2]
        try:
            head = await _read_head(reader)
            target = hbone.decode_connect(head.line)
            forwarded = hbone.forwarded_for(head)
        except (ValueError, TimeoutError, *_DROP_ERRORS) as exc:
            self._stats.bad_preamble += 1
            log.warning("mesh tunnel from %s: bad preamble: %s", source, exc)
            with contextlib.suppress(*_DROP_ERRORS):
                writer.write(hbone.encode_status(400))
            await _close(writer)
            return
        # the chain was checked by the handshake; the kernel's L3/L4 verdict comes before
        # the mesh's own checks, so a dropped connection looks dropped (no reply at all)
        delivery = None
        if self.deliver is not None:
            delivery = await self.deliver(target, forwarded or source[0])
            if delivery is None:
                await _close(writer)
                return
        try:
            peer = self._peer_of(writer)
        except PeerCertificateError as exc:
            self._stats.refused_certificate += 1
            log.warning("mesh tunnel from %s refused: %s", source, exc)
            await self._refuse(writer, delivery, 403)
            return
        workload, decision = self.admission.admit(target, peer)
        if not decision.accepted:
            self._stats.refused_policy += 1
            if self.on_refused is not None:
                self.on_refused(forwarded or source[0], target, decision)
            await self._refuse(writer, delivery, 403)
            return
        self._stats.accepted += 1
        writer.write(hbone.encode_status(200))
        await writer.drain()
        conn = InboundConnection(
            decision.peer, target, workload, decision, source, forwarded, delivery
        )
        await self.handler(conn, reader, writer)

    async def _refuse(
        self, writer: asyncio.StreamWriter, delivery: socket.socket | None, status: int
    ) -> None:
        if delivery is not None:
            delivery.close()
        with contextlib.suppress(*_DROP_ERRORS):
            writer.write(hbone.encode_status(status))
        await _close(writer)

    async def _on_plaintext(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        original_destination: OriginalDestination,
    ) -> None:
        source = writer.get_extra_info("peername")[:2]
        target = original_destination(writer)
        workload, decision = self.admission.admit(target, Peer(mtls=False))
        if not decision.accepted:
            # Istio resets a plaintext connection to a STRICT port: no reply, just a close
            self._stats.plaintext_refused += 1
            if self.on_refused is not None:
                self.on_refused(source[0], target, decision)
            await _close(writer)
            return
        delivery = None
        if self.deliver is not None:
            delivery = await self.deliver(target, source[0])
            if delivery is None:
                await _close(writer)
                return
        self._stats.plaintext_accepted += 1
        conn = InboundConnection(
            decision.peer, target, workload, decision, source, source[0], delivery
        )
        await self.handler(conn, reader, writer)


@final
class TunnelClient:
    """The source node proxy's side: opens tunnels presenting source workload certificates."""

    def __init__(
        self,
        credentials: MeshCredentials,
        *,
        accept_server: Callable[[SpiffeId], bool] | None = None,
        socket_factory: Callable[[int, int], socket.socket] | None = None,
    ) -> None:
        """
        Args:
            credentials: certificates and trust bundle of this node proxy.
            accept_server: extra check of the destination proxy's identity (after chain and
                trust domain); any identity of the bundle by default.
            socket_factory: makes the tunnel's TCP socket (family, type), e.g. inside the
                node's network namespace; a plain socket by default.
        """
        self.credentials = credentials
        self.accept_server = accept_server
        self.socket_factory = socket_factory

    def _check_server(self, writer: asyncio.StreamWriter) -> SpiffeId:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        identity = self.credentials.peers.verify(der, now=self.credentials.clock())
        if self.accept_server is not None and not self.accept_server(identity):
            raise PeerCertificateError(f"destination proxy {identity} is not the expected one")
        return identity

    async def open(
        self,
        source: SpiffeId,
        target: Address,
        via: Address,
        *,
        forwarded_for: str | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a tunnel for `source` to `target` through the destination proxy at `via`;
        `forwarded_for` is the source workload's address, sent in the `Forwarded` field.

        Raises:
            TunnelRefused: the destination proxy answered with a non-200 status.
            PeerCertificateError: the destination proxy's certificate is not acceptable.
            ssl.SSLError, OSError: the handshake or the connection failed.
        """
        ctx = self.credentials.client(source)
        if self.socket_factory is None:
            reader, writer = await asyncio.open_connection(*via, ssl=ctx, server_hostname=None)
        else:
            sock = self.socket_factory(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, via)
            except BaseException:
                sock.close()
                raise
            # "" is asyncio's "no host name" for a given socket (mesh peers are named by SAN)
            reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="")
        try:
            self._check_server(writer)
            writer.write(hbone.encode_connect(*target, forwarded_for))
            await writer.drain()
            status = hbone.decode_status((await _read_head(reader)).line)
        except BaseException:
            await _close(writer)
            raise
        if status != 200:
            await _close(writer)
            raise TunnelRefused(status)
        return reader, writer


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    """Where the source proxy sends one captured connection."""

    target: Address
    """The original destination."""
    source: SpiffeId | None = None
    """The source workload's identity; None sends plaintext (not meshed, or bypassed)."""
    via: Address | None = None
    """The destination node proxy's tunnel address; None connects to `target` directly."""


@final
class OutboundListener:
    """A local listener whose connections go through the mesh as `route` says."""

    def __init__(
        self, client: TunnelClient, route: Callable[[asyncio.StreamWriter], OutboundRoute | None]
    ) -> None:
        self.client = client
        self.route = route
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(
        self, host: str | None = None, port: int = 0, *, sock: socket.socket | None = None
    ) -> Address:
        """Listen on host:port or a bound `sock` (a transparent one, in the node's netns)."""

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _owned(self._connections, self._on_connection(reader, writer), writer)

        if sock is not None:
            self._server = await asyncio.start_server(on_connection, sock=sock)
        else:
            self._server = await asyncio.start_server(on_connection, host, port)
        bound = self._server.sockets[0].getsockname()[:2]
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        """Stop listening and end every connection still open."""
        if self._server is not None:
            self._server.close()
        for task in self._connections:
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        route = self.route(writer)
        if route is None:  # no route: fail closed
            await _close(writer)
            return
        try:
            if route.source is not None and route.via is not None:
                client_ip = writer.get_extra_info("peername")[0]
                upstream = await self.client.open(
                    route.source, route.target, route.via, forwarded_for=client_ip
                )
            else:
                upstream = await asyncio.open_connection(*route.target)
        except (
            TunnelRefused,
            PeerCertificateError,
            TimeoutError,
            ValueError,
            *_DROP_ERRORS,
        ) as exc:
            log.warning("mesh route to %s failed: %s", route.target, exc)
            await _close(writer)
            return
        await pipe((reader, writer), upstream)


__all__ = [
    "Address",
    "InboundAdmission",
    "InboundConnection",
    "Deliver",
    "InboundHandler",
    "OnRefused",
    "OutboundListener",
    "OutboundRoute",
    "PeerAuthenticationGate",
    "TunnelClient",
    "TunnelRefused",
    "TunnelServer",
    "TunnelStatistics",
    "forward_to_target",
    "pipe",
    "socket_destination",
]
