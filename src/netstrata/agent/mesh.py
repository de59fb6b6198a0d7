"""The mesh's inbound side in the node proxy: tunnelled connections meet the proxy's HTTP layers.

The destination node proxy's `TunnelServer` (mesh/tunnel.py) verifies the source workload's
certificate and applies PeerAuthentication; what it admits is handed to this node's
`NodeProxy`, so HTTP/1.1, h2c and gRPC are parsed by the same layers that enforce Cilium's L7
rules, and each request is then decided by `mesh.evaluate` with the peer principal the
handshake proved (`mesh_authorizer`, plugged in through `NodeProxy.mesh_authorize`).

The hand-off is one local TCP hop: `MeshInbound.handle` connects to the proxy's mesh listener
and registers the connection under the local address it connected from; the listener's
`PolicySource` (`MeshHandOffSource`) looks that address up, so the layers see the original
destination and the source as the tunnel told them, and the authorizer sees the
`InboundConnection` (peer, workload, target). The connection's client address becomes the
source workload's (with the hop's port), so a transparent mesh listener's upstream leaves
from the source workload's address; a delivery the `TunnelServer` already opened
(`InboundConnection.delivery`) is used as that upstream (`NodeProxy.upstream_socket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netstrata.api.istio import IstioObject
from netstrata.mesh import MeshRequest, evaluate
from netstrata.mesh.authz import GRPC_UNAUTHENTICATED
from netstrata.mesh.tunnel import InboundConnection, pipe
from netstrata.mesh.types import JwksFetcher, MeshConfig, MeshDecision
from netstrata.policy.l7 import HTTPRequest
from netstrata.policy.types import Direction, ResolvedPolicy
from netstrata.proxy.layers.context import MeshAuthorize
from netstrata.proxy.policy_source import Address, ConnectionInfo, PolicySource
from netstrata.proxy.server import ListenerSpec, NodeProxy

log = logging.getLogger(__name__)

MESH_LISTENER = "mesh-inbound"
"""Name of the proxy listener that takes the hand-off (HTTP parser, ingress side)."""


def mesh_authorizer(
    objects: Sequence[IstioObject],
    conn: InboundConnection,
    mesh: MeshConfig,
    *,
    source_ip: str,
    clock: Callable[[], float] = time.time,
    jwks_fetcher: JwksFetcher | None = None,
    on_decision: OnDecision | None = None,
) -> MeshAuthorize:
    """The per-request decision of one admitted connection: None forwards, else the local
    reply Istio's proxy would make (403 `RBAC: access denied`, 401 for a rejected JWT)."""
    workload = conn.workload
    target = conn.target

    def authorize(request: HTTPRequest, grpc: bool) -> tuple[int, bytes] | None:
        if workload is None:  # admission let no workload through; fail closed
            return 403, b"RBAC: access denied"
        decision = evaluate(
            tuple(objects),
            MeshRequest(
                workload=workload,
                destination_port=target[1],
                protocol="grpc" if grpc else "http",
                source_ip=source_ip,
                destination_ip=target[0],
                method=request.method,
                host=request.host,
                path=request.path,
                headers=tuple(request.headers),
            ),
            conn.peer,
            mesh,
            now=clock(),
            jwks_fetcher=jwks_fetcher,
        )
        if on_decision is not None:
            request_id = next((v for k, v in request.headers if k.lower() == "x-request-id"),
                              None)
            on_decision(MeshDecisionRecord(source_ip, target, request.method, request.path,
                                           conn.peer.principal, decision, request_id))
        if decision.allowed:
            return None
        log.info(
            "mesh denied %s %s from %s: %s",
            request.method,
            request.path,
            conn.peer.principal,
            decision.decided_by,
        )
        # the decision states a gRPC denial in its wire form (:status 200, grpc-status); the
        # layers take the HTTP status and make that form themselves
        status = 401 if decision.grpc_status == GRPC_UNAUTHENTICATED else decision.status
        if status is None or status < 400:
            status = 403
        return status, (decision.body or "RBAC: access denied").encode()

    return authorize


@dataclass(frozen=True, slots=True)
class MeshDecisionRecord:
    """One request the destination proxy's mesh authorization decided, as it saw it (for the
    lab's report: which rule decided and which principal authorization was shown)."""

    source_ip: str
    target: tuple[str, int]
    method: str
    path: str
    peer_principal: str | None
    """The principal of the mTLS peer; None for plaintext or under PeerAuthentication DISABLE."""
    decision: MeshDecision
    request_id: str | None = None
    """The request's `x-request-id` (Envoy's access-log key for one request), if it had one."""


OnDecision = Callable[[MeshDecisionRecord], None]


@dataclass(slots=True)
class _HandOff:
    conn: InboundConnection
    source_ip: str
    delivery: socket.socket | None = None
    """The upstream already opened to the workload; None once the proxy took it."""


class MeshHandOffSource(PolicySource):
    """The node proxy's policy source, told where the mesh listener's connections come from.

    Connections of `MESH_LISTENER` are resolved as if the source had connected to the original
    destination itself (ingress, the destination workload's policy); everything else goes to
    `inner` unchanged.
    """

    def __init__(self, inner: PolicySource) -> None:
        self.inner = inner
        self._pending: dict[Address, _HandOff] = {}
        self._as_source: dict[Address, _HandOff] = {}
        """The same hand-offs under (source workload IP, hop port), the client they resolve to."""

    def expect(self, local: Address, hand_off: _HandOff) -> None:
        self._pending[local] = hand_off
        self._as_source[(hand_off.source_ip, local[1])] = hand_off

    def forget(self, local: Address) -> None:
        found = self._pending.pop(local, None)
        if found is not None:
            self._as_source.pop((found.source_ip, local[1]), None)

    def hand_off(self, client: Address) -> _HandOff | None:
        """The hand-off of a connection, by its hop address or its resolved client address."""
        return self._as_source.get(client) or self._pending.get(client)

    def resolve(
        self, listener: str, direction: Direction, proto: int, client: Address, local: Address
    ) -> ConnectionInfo | None:
        if listener != MESH_LISTENER:
            return self.inner.resolve(listener, direction, proto, client, local)
        found = self._pending.get(client)
        if found is None:  # not one of ours: fail closed
            return None
        info = self.inner.resolve(
            listener, Direction.INGRESS, proto, (found.source_ip, client[1]), found.conn.target
        )
        if info is None:
            return None
        # the source workload is the client (a transparent listener's upstream leaves from
        # it); the hop's port keeps it unique for `hand_off`
        return ConnectionInfo(
            info.endpoint_id,
            info.direction,
            info.peer_identity,
            (found.source_ip, client[1]),
            info.original_dst,
            info.proto,
            info.source,
            info.destination,
        )

    def policy(self, endpoint_id: int) -> ResolvedPolicy | None:
        return self.inner.policy(endpoint_id)


class MeshInbound:
    """Wires a `TunnelServer`'s admitted connections into a `NodeProxy` (module docstring).

    Args:
        proxy: the node proxy; its source must be the `MeshHandOffSource` given here.
        source: the hand-off source the proxy resolves with.
        objects: the current Istio objects of this cluster (re-read per connection).
        mesh: this cluster's meshConfig.
    """

    def __init__(
        self,
        proxy: NodeProxy,
        source: MeshHandOffSource,
        objects: Callable[[], Sequence[IstioObject]],
        mesh: MeshConfig,
        *,
        clock: Callable[[], float] = time.time,
        jwks_fetcher: JwksFetcher | None = None,
        on_decision: OnDecision | None = None,
    ) -> None:
        self.proxy, self.source, self.objects, self.mesh = proxy, source, objects, mesh
        self.clock, self.jwks_fetcher = clock, jwks_fetcher
        self.on_decision = on_decision
        """Told every authorization decision (the lab reports them per probe)."""
        self.address: Address | None = None
        proxy.mesh_authorize = self._authorizer
        proxy.upstream_socket = self._delivery

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, upstream_mark: int | None = None
    ) -> Address:
        """Start the proxy's mesh listener (HTTP/1.1 and h2c, ingress policy).

        `upstream_mark` makes it transparent (in the proxy's socket factory's namespace):
        upstreams leave from the source workload's address with that SO_MARK (the kernel lab:
        the ingress proxy's mark, so the destination's L3/L4 policy still applies)."""
        spec = ListenerSpec(MESH_LISTENER, "http", Direction.INGRESS, host, port)
        if upstream_mark is not None:
            spec = ListenerSpec(MESH_LISTENER, "http", Direction.INGRESS, host, port,
                                transparent=True, upstream_mark=upstream_mark)
        self.address = await self.proxy.add_listener(spec)
        return self.address

    def _delivery(self, spec: ListenerSpec, info: ConnectionInfo) -> socket.socket | None:
        if spec.name != MESH_LISTENER:
            return None
        found = self.source.hand_off(info.client)
        if found is None or found.delivery is None:
            return None
        sock, found.delivery = found.delivery, None
        return sock

    def _authorizer(self, spec: ListenerSpec, info: ConnectionInfo) -> MeshAuthorize | None:
        if spec.name != MESH_LISTENER:
            return None
        found = self.source.hand_off(info.client)
        if found is None:
            return lambda request, grpc: (403, b"RBAC: access denied")
        return mesh_authorizer(
            self.objects(),
            found.conn,
            self.mesh,
            source_ip=found.source_ip,
            clock=self.clock,
            jwks_fetcher=self.jwks_fetcher,
            on_decision=self.on_decision,
        )

    async def handle(
        self,
        conn: InboundConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        source_ip: str | None = None,
    ) -> None:
        """A `TunnelServer` handler: carry `conn` into the proxy's mesh listener.

        `source_ip` is the source workload's address when known, else the tunnel's
        `Forwarded` address, else the socket peer of the tunnel."""
        assert self.address is not None, "start() first"
        # registered before connecting: the proxy may resolve the accept before we resume
        # (the hop's socket in the proxy's namespace: its mesh listener is there)
        sock = self.proxy.socket_factory(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.address[0], 0))
        sock.setblocking(False)
        host, port = sock.getsockname()[:2]
        local = (str(host), int(port))
        hand_off = _HandOff(
            conn, source_ip or conn.forwarded_for or conn.source_address[0], conn.delivery
        )
        self.source.expect(local, hand_off)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.address)
            hop = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            self._drop(local, hand_off)
            writer.close()
            return
        try:
            await pipe((reader, writer), hop)
        finally:
            self._drop(local, hand_off)
            with contextlib.suppress(Exception):
                hop[1].close()

    def _drop(self, local: Address, hand_off: _HandOff) -> None:
        self.source.forget(local)
        if hand_off.delivery is not None:  # never taken (denied before any upstream)
            hand_off.delivery.close()
            hand_off.delivery = None


__all__ = [
    "MESH_LISTENER",
    "MeshDecisionRecord",
    "MeshHandOffSource",
    "MeshInbound",
    "OnDecision",
    "mesh_authorizer",
]
