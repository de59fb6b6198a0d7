"""One node's mesh listeners on real traffic: the kernel's mesh capture meets the tunnel.

The kernel hands a meshed source's TCP connection to 127.0.0.2:15001 and plaintext bound for
a meshed destination to 127.0.0.1:15006 (datapath/bpf/mesh.h, docs/mesh.md). `NodeMesh` binds
both, transparently, in the node's network namespace, plus the node's `TunnelServer` on
<node IP>:15008:

- outbound (15001): the accepted socket's peer is the source pod, its local address the
  original destination. The source pod's SPIFFE identity (its cluster's trust domain) and the
  destination pod's node give the route; `TunnelClient` opens mutual TLS from the node's
  namespace to that node's tunnel, presenting the source pod's certificate, with the source
  pod's address in the CONNECT's `Forwarded: for=` field.
- inbound: the `TunnelServer` delivers first (`deliver`): a connection to the workload from
  the source pod's address, IP_TRANSPARENT, with the ingress proxy's mark, so the
  destination's kernel L3/L4 policy decides before the mesh does and a denied source sees
  nothing at all (its SYN was dropped). Then the peer's trust domain, PeerAuthentication, and
  the node proxy's HTTP layers with `mesh.evaluate` (`agent.mesh.MeshInbound`), whose
  upstream is that delivery.
- plaintext (15006): PeerAuthentication (STRICT closes without a reply; PERMISSIVE hands the
  connection to the same layers without a principal).

Identities: one CA per trust domain (`MeshAuthority`, kept in a state directory), workload
certificates rotated by `mesh.rotation` (the node runs `run_rotation` as a named task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from netstrata.agent.mesh import MeshDecisionRecord, MeshHandOffSource, MeshInbound
from netstrata.agent.proxy import LISTEN_ADDRESS, UPSTREAM_MARK, NodeProxyRunner
from netstrata.agent.tasks import spawn
from netstrata.api.istio import IstioObject
from netstrata.lab.simulate import ReferenceLab
from netstrata.lab.topology import PlacedWorkload
from netstrata.mesh.ca import CertificateAuthority, TrustBundle
from netstrata.mesh.enrollment import spiffe_id_for
from netstrata.mesh.peerauth import REFUSED_STRICT, PeerAuthDecision
from netstrata.mesh.rotation import RotationPolicy, WorkloadCertificates
from netstrata.mesh.spiffe import SpiffeId
from netstrata.mesh.tls import MeshCredentials, run_rotation
from netstrata.mesh.trace import cluster_trust_domain
from netstrata.mesh.tunnel import (
    OutboundListener,
    OutboundRoute,
    PeerAuthenticationGate,
    TunnelClient,
    TunnelServer,
)
from netstrata.mesh.types import MeshConfig, MeshDecision, Workload
from netstrata.policy.types import Direction
from netstrata.proxy.server import NodeProxy

log = logging.getLogger(__name__)

OUTBOUND_PORT: Final = 15001
"""Istio's outbound capture port; the kernel assigns captured sources' connections here."""
INBOUND_PORT: Final = 15006
"""Istio's inbound capture port: plaintext to a meshed destination."""
TUNNEL_PORT: Final = 15008
"""HBONE's port: the node's mTLS tunnel listener, on the node's own address."""
DECISIONS_KEPT: Final = 4096
"""Authorization decisions a node keeps for `drain_decisions` (the lab drains per batch)."""
DELIVERY_TIMEOUT_S: Final = 10.0
"""How long the destination waits for the workload's SYN-ACK: a kernel drop is silence, and
the source's client gives up on its own clock first (as after a dropped SYN)."""
_IP_TRANSPARENT: Final = getattr(socket, "IP_TRANSPARENT", 19)
SocketFactory = Callable[[int, int], socket.socket]


class MeshAuthority:
    """The lab's CAs, one per trust domain, kept under `state_dir` (a restart keeps them)."""

    def __init__(self, state_dir: Path, *, rotation: RotationPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.rotation = rotation or RotationPolicy()
        self.clock = clock
        self._cas: dict[str, CertificateAuthority] = {}

    def ca(self, trust_domain: str) -> CertificateAuthority:
        found = self._cas.get(trust_domain)
        if found is None:
            found = self._cas[trust_domain] = CertificateAuthority.load_or_create(
                self.state_dir, trust_domain, now=self.clock())
        return found

    def bundle(self, trust_domain: str, aliases: Iterable[str]) -> TrustBundle:
        """The local trust domain's root first, then its aliases'."""
        return self.ca(trust_domain).bundle(
            [self.ca(a) for a in aliases if a != trust_domain])

    def every_root(self, trust_domains: Iterable[str]) -> TrustBundle:
        """Every lab trust domain's root: what the handshake accepts (a shared mesh)."""
        tds = list(dict.fromkeys(trust_domains))
        return self.bundle(tds[0], tds[1:]) if tds else TrustBundle({})


def transparent_socket(factory: SocketFactory, host: str, port: int) -> socket.socket:
    """A listening socket that accepts connections the kernel assigned to it (any address)."""
    sock = factory(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class NodeMesh:
    """One node's mesh listeners (module docstring), fed the lab's view by `update`."""

    def __init__(self, runner: NodeProxyRunner, authority: MeshAuthority, node_ip: str,
                 node_ips: Mapping[tuple[str, str], str], *,
                 factory: SocketFactory = socket.socket, system_namespace: str = "istio-system",
                 clock: Callable[[], float] = time.time,
                 authorization_clock: Callable[[], float] | None = None) -> None:
        self.runner = runner
        self.cluster = runner.agent.cluster
        self.authority = authority
        self.node_ip = node_ip
        self.node_ips = dict(node_ips)
        self.factory = factory
        self.system_namespace = system_namespace
        self.clock = clock
        self.authorization_clock = authorization_clock
        """The time authorization evaluates at; None: the view's fixed mesh time (a case
        file's, `authorization_now`)."""
        self.view: ReferenceLab | None = None
        self.certificates: WorkloadCertificates | None = None
        self.credentials: MeshCredentials | None = None
        self.proxy = NodeProxy(MeshHandOffSource(runner.source), config=runner.config,
                               on_flow=runner._record, socket_factory=factory, clock=clock)
        self.inbound: MeshInbound | None = None
        self.tunnel: TunnelServer | None = None
        self.outbound: OutboundListener | None = None
        self._rotation: asyncio.Task[None] | None = None
        self.decisions: deque[MeshDecisionRecord] = deque(maxlen=DECISIONS_KEPT)
        """The latest authorization decisions of this node's destination proxy."""

    # ------------------------------------------------------------------------------ view

    def _config(self) -> MeshConfig:
        assert self.view is not None and self.view.mesh is not None
        return self.view.mesh_config_for(self.cluster)

    def _objects(self) -> tuple[IstioObject, ...]:
        if self.view is None or self.view.mesh is None:
            return ()
        return tuple(self.view.mesh.objects.get(self.cluster, ()))  # type: ignore[arg-type]

    def _trust_domain(self, cluster: str) -> str:
        assert self.view is not None and self.view.mesh is not None
        return cluster_trust_domain(cluster, list(self.view.topology.clusters),
                                    self.view.mesh.config)

    def _placed_at(self, ip: str) -> PlacedWorkload | None:
        assert self.view is not None
        return next((p for p in self.view.topology.pods() if ip in p.ips), None)

    def workload_at(self, ip: str) -> Workload | None:
        """The meshed workload of this node's cluster at `ip` (admission's question)."""
        placed = self._placed_at(ip)
        if placed is None or placed.workload.cluster != self.cluster or self.view is None:
            return None
        endpoint = self.view.mesh_endpoint(placed)
        if endpoint is None or not endpoint.enrollment().meshed:
            return None
        return endpoint.workload()

    def source_identity(self, ip: str) -> SpiffeId | None:
        """The SPIFFE identity of the meshed pod of this node's cluster at `ip`."""
        placed = self._placed_at(ip)
        if placed is None or placed.workload.cluster != self.cluster or self.view is None:
            return None
        endpoint = self.view.mesh_endpoint(placed)
        if endpoint is None or not endpoint.enrollment().meshed:
            return None
        w = placed.workload
        return spiffe_id_for(self._trust_domain(w.cluster), w.namespace, w.service_account)

    def route(self, writer: asyncio.StreamWriter) -> OutboundRoute | None:
        """Where a captured outbound connection goes: the destination pod's node tunnel."""
        client = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        if not client or not local:
            return None
        target = (str(local[0]), int(local[1]))
        source = self.source_identity(str(client[0]))
        placed = self._placed_at(target[0])
        if source is None or placed is None:
            log.warning("mesh outbound %s -> %s: no route (source not meshed here, or "
                        "destination unknown); closed", client[0], target)
            return None
        node_ip = self.node_ips.get((placed.workload.cluster, placed.workload.node or ""))
        if node_ip is None:
            return None
        return OutboundRoute(target, source, (node_ip, TUNNEL_PORT))

    def update(self, view: ReferenceLab) -> None:
        self.view = view

    def authorization_now(self) -> float:
        """The time authorization evaluates at (JWT validity): the view's fixed mesh time
        when it has one (a case file's, so the lab judges tokens as the reference run
        does), else the clock."""
        if self.authorization_clock is not None:
            return self.authorization_clock()
        mesh = self.view.mesh if self.view is not None else None
        return mesh.now if mesh is not None and mesh.now else self.clock()

    def drain_decisions(self) -> list[MeshDecisionRecord]:
        """The decisions recorded since the last call, oldest first."""
        found = list(self.decisions)
        self.decisions.clear()
        return found

    def _refused(self, source_ip: str, target: tuple[str, int], decision: PeerAuthDecision
                 ) -> None:
        """A connection PeerAuthentication refused, recorded as the evaluator names it (a
        reset: Istio answers nothing)."""
        decided_by = REFUSED_STRICT if decision.mode == "STRICT" else f"mtls:{decision.source}"
        self.decisions.append(MeshDecisionRecord(
            source_ip, target, "", "", decision.peer.principal,
            MeshDecision("tcp-reset", decided_by, explanation=(decision.reason,))))

    # ------------------------------------------------------------------------------ delivery

    async def deliver(self, target: tuple[str, int], source_ip: str) -> socket.socket | None:
        """The connection to the workload, from the source pod's address, marked as the
        ingress proxy's (the kernel applies the destination's L3/L4 policy to it)."""
        sock = self.factory(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, UPSTREAM_MARK[Direction.INGRESS])
            sock.bind((source_ip, 0))
            sock.setblocking(False)
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                await asyncio.get_running_loop().sock_connect(sock, target)
        except (OSError, TimeoutError) as exc:
            sock.close()
            log.info("mesh delivery %s -> %s:%d failed: %s", source_ip, *target, exc)
            return None
        except BaseException:
            sock.close()
            raise
        return sock

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self, view: ReferenceLab) -> None:
        """Bind the tunnel, outbound and plaintext listeners in the node's namespace."""
        self.update(view)
        config = self._config()
        td = config.trust_domain
        clusters = list(view.topology.clusters)
        self.certificates = WorkloadCertificates(self.authority.ca(td), self.authority.rotation)
        every_root = self.authority.every_root([td, *(self._trust_domain(c) for c in clusters)])
        # inbound peers only from the local trust domain and its aliases; the handshake takes
        # any lab root, so the destination's kernel policy speaks first (TunnelServer.deliver)
        self.credentials = MeshCredentials(
            self.certificates, self.authority.bundle(td, config.trust_domain_aliases),
            self.clock, handshake_bundle=every_root)
        # outbound: a destination node proxy of any cluster of the shared mesh
        client_credentials = MeshCredentials(self.certificates, every_root, self.clock)
        self.inbound = MeshInbound(self.proxy, self.proxy.source,  # type: ignore[arg-type]
                                   self._objects, config, clock=self.authorization_now,
                                   jwks_fetcher=view.mesh.jwks_fetcher if view.mesh else None,
                                   on_decision=self.decisions.append)
        await self.inbound.start(LISTEN_ADDRESS[Direction.INGRESS], 0,
                                 upstream_mark=UPSTREAM_MARK[Direction.INGRESS])
        self.tunnel = TunnelServer(
            credentials=self.credentials,
            identity=SpiffeId(td, self.system_namespace, "node-proxy"),
            admission=PeerAuthenticationGate(self._objects, self.workload_at, config),
            handler=self.inbound.handle, deliver=self.deliver, on_refused=self._refused)
        await self.tunnel.start(sock=transparent_socket(self.factory, self.node_ip, TUNNEL_PORT))
        await self.tunnel.start_plaintext(sock=transparent_socket(
            self.factory, LISTEN_ADDRESS[Direction.INGRESS], INBOUND_PORT))
        self.outbound = OutboundListener(
            TunnelClient(client_credentials, socket_factory=self.factory), self.route)
        await self.outbound.start(sock=transparent_socket(
            self.factory, LISTEN_ADDRESS[Direction.EGRESS], OUTBOUND_PORT))
        self._rotation = spawn(run_rotation(self.certificates, self.clock),
                               name=f"mesh rotation {self.cluster}/{self.runner.agent.node}")
        log.info("mesh listeners on %s: tunnel %s:%d, outbound %d, inbound %d (%s)",
                 self.runner.agent.node, self.node_ip, TUNNEL_PORT, OUTBOUND_PORT,
                 INBOUND_PORT, td)

    async def aclose(self) -> None:
        if self._rotation is not None:
            self._rotation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotation
        if self.outbound is not None:
            await self.outbound.close()
        if self.tunnel is not None:
            await self.tunnel.close()
        await self.proxy.aclose()


def is_meshed_view(view: ReferenceLab) -> bool:
    """Whether any workload of `view` is meshed (the lab then runs the mesh listeners)."""
    if view.mesh is None:
        return False
    for placed in view.topology.pods():
        endpoint = view.mesh_endpoint(placed)
        if endpoint is not None and endpoint.enrollment().meshed:
            return True
    return False


__all__ = ["INBOUND_PORT", "OUTBOUND_PORT", "TUNNEL_PORT", "MeshAuthority", "NodeMesh",
           "is_meshed_view", "transparent_socket"]
