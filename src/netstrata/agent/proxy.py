"""The node proxy as one node's agent runs it: listeners, and the tables it answers from.

The kernel redirects a connection whose policy entry carries a proxy port to a socket of this
node's proxy (`datapath/bpf/proxy.h`, docs/proxy-redirect.md): ingress redirects to
127.0.0.1:<port>, egress redirects to 127.0.0.2:<port>. `NodeProxyRunner` binds one
transparent listener per parser and direction there: HTTP (which also takes h2c/gRPC) and
Kafka through `NodeProxy`, DNS (UDP and TCP on one port) as a transparent `DNSProxy` that
answers from the original server's address (docs/proxy-redirect.md).

toFQDNs: every allowed answer with addresses goes to `learn()` before the client sees it. New
IPs for names some `toFQDNs` selector matches get their FQDN identity in the view
(`ReferenceLab.learn_fqdn`, the engine's local identity allocator), and `program(view)` writes
the new ipcache entries and policy entries into the kernel; only then is the answer released.
Each IP is held for its record's TTL (`fqdn.DNSCache`); when no name holds it any more the
view forgets it and `program(view)` removes it again (checked at each expiry).

One truth: `update()` fills the proxy's `InMemoryPolicySource` from what the agent has just
pushed into the kernel, the same `ResolvedPolicy` objects (`NodeAgent.policies`) and the same
ipcache entries (`NodeAgent.ipcache_entries`), so the kernel and the proxy never judge from
different revisions for longer than one sync.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from netstrata.agent.node import NodeAgent
from netstrata.agent.tasks import spawn
from netstrata.datapath.maps import ProxyRedirect
from netstrata.fqdn.cache import DNSCache
from netstrata.lab.simulate import ReferenceLab
from netstrata.netns import socket_in_netns
from netstrata.observe.flow import Flow
from netstrata.policy.resolve import DEFAULT_PROXY_PORTS
from netstrata.policy.types import Direction
from netstrata.proxy.dnsproxy import DNSProxy
from netstrata.proxy.layers.dns import DNSObservation
from netstrata.proxy.policy_source import InMemoryPolicySource, LocalEndpoint
from netstrata.proxy.server import ListenerSpec, NodeProxy, Parser, ProxyConfig

log = logging.getLogger(__name__)

TCP_PARSERS: Final[tuple[Parser, ...]] = ("http", "kafka")
"""Parsers whose listeners `NodeProxy` serves; DNS has its own (`dns_listener_specs`)."""

LISTEN_ADDRESS: Final[Mapping[Direction, str]] = {
    Direction.INGRESS: str(ipaddress.IPv4Address(int(ProxyRedirect.INGRESS_ADDR))),
    Direction.EGRESS: str(ipaddress.IPv4Address(int(ProxyRedirect.EGRESS_ADDR))),
}
UPSTREAM_MARK: Final[Mapping[Direction, int]] = {
    Direction.INGRESS: int(ProxyRedirect.MARK_FROM_INGRESS_PROXY),
    Direction.EGRESS: int(ProxyRedirect.MARK_FROM_EGRESS_PROXY),
}


def listener_specs(ports: Mapping[str, int] = DEFAULT_PROXY_PORTS) -> list[ListenerSpec]:
    """The transparent listeners the kernel's redirect expects, one per parser and direction."""
    return [ListenerSpec(f"{parser}-{direction.name.lower()}", parser, direction,
                         LISTEN_ADDRESS[direction], ports[parser], transparent=True,
                         upstream_mark=UPSTREAM_MARK[direction])
            for parser in TCP_PARSERS if parser in ports
            for direction in (Direction.INGRESS, Direction.EGRESS)]


def dns_listener_specs(ports: Mapping[str, int] = DEFAULT_PROXY_PORTS) -> list[ListenerSpec]:
    """The transparent DNS listeners (UDP and TCP on each), one per direction."""
    if "dns" not in ports:
        return []
    return [ListenerSpec(f"dns-{direction.name.lower()}", "dns", direction,
                         LISTEN_ADDRESS[direction], ports["dns"], transparent=True,
                         upstream_mark=UPSTREAM_MARK[direction])
            for direction in (Direction.INGRESS, Direction.EGRESS)]


Program = Callable[[ReferenceLab], Awaitable[object]]
"""Writes a view into the kernel (the node's agent sync, or every node's in one lab)."""


class NodeProxyRunner:
    """One node's `NodeProxy`, fed from its `NodeAgent` (see the module docstring).

    Args:
        agent: the node's agent; `update()` reads its last sync.
        netns: the node's namespace when this process is not in it (lab check), else None.
        on_flow: receives every L7 flow (the agent's flow store).
        program: writes a view with new or expired FQDN IPs into the kernel before an answer
            is released (default: this node's `agent.sync` in a thread, then `update`).
        carry_learned: on a new view (the daemon re-resolves from scratch on every manifest
            change) learn what the DNS cache still holds into it; False starts each new view
            from an empty DNS cache (lab check: each case is a fresh control plane).
        clock: Unix time for TTLs.
    """

    def __init__(self, agent: NodeAgent, *, netns: str | None = None,
                 on_flow: Callable[[Flow], object] | None = None,
                 program: Program | None = None, carry_learned: bool = True,
                 clock: Callable[[], float] = time.time,
                 learning_lock: asyncio.Lock | None = None) -> None:
        self.agent = agent
        self.on_flow = on_flow
        self.source = InMemoryPolicySource()
        factory: Callable[[int, int], socket.socket] = socket.socket
        if netns is not None:
            factory = lambda family, kind: socket_in_netns(netns, family, kind)  # noqa: E731
        self._factory = factory
        self.config = ProxyConfig(node_name=f"{agent.cluster}/{agent.node}")
        self.proxy = NodeProxy(self.source, on_flow=self._record, socket_factory=factory,
                               config=self.config)
        self.dns: dict[str, DNSProxy] = {}
        """The DNS listeners by name."""
        self.cache = DNSCache()
        """Learned FQDN IPs and until when they stay programmed."""
        self.program = program or self._sync_own
        self.carry_learned = carry_learned
        self.clock = clock
        self.view: ReferenceLab | None = None
        """The view of the last `update()`: what FQDN learning adds to."""
        self._prefixes: set[str] = set()
        # runners that share one view (the in-process lab: one per node, one view) must share
        # this lock: else one finds IPs another runner put in the view "already programmed"
        # and releases its answer while that runner's program(view) is still writing them
        self._learning = learning_lock or asyncio.Lock()
        self._gc: asyncio.Task[None] | None = None

    def _record(self, flow: Flow) -> None:
        if self.on_flow is not None:
            self.on_flow(flow)

    async def start(self, ports: Mapping[str, int] = DEFAULT_PROXY_PORTS) -> None:
        """Bind every listener; a port that cannot be bound is an error (nothing would take
        the redirected traffic, which the kernel then drops)."""
        for spec in listener_specs(ports):
            await self.proxy.add_listener(spec)
        for spec in dns_listener_specs(ports):
            dns = DNSProxy(spec.name, spec.direction, self.source, settings=self.config.dns,
                           node_name=self.config.node_name, learner=self.learn,
                           emit=self._record, transparent=True,
                           upstream_mark=spec.upstream_mark, socket_factory=self._factory)
            await dns.start(spec.host, spec.port)
            self.dns[spec.name] = dns
            log.info("DNS proxy listener %s on %s:%d", spec.name, spec.host, spec.port)

    # ------------------------------------------------------------------------------ toFQDNs

    async def _sync_own(self, view: ReferenceLab) -> None:
        await asyncio.to_thread(self.agent.sync, view)
        self.update(view)

    async def learn(self, observation: DNSObservation) -> None:
        """The DNS proxy's learner: program the answer's IPs, then let the answer go."""
        async with self._learning:
            view = self.view
            if view is None:
                return
            self.cache.learn(observation.qname, observation.ips, observation.ttl, self.clock())
            known = view.fqdn_ips.get(self.agent.cluster, {})
            if all(ip in known for ip in observation.ips):
                self._schedule_gc()
                return  # already programmed; only the expiry moved
            view.learn_fqdn(self.agent.cluster, observation.qname, observation.ips)
            if any(ip in view.fqdn_ips.get(self.agent.cluster, {}) for ip in observation.ips):
                await self.program(view)
            self._schedule_gc()

    def _schedule_gc(self) -> None:
        if self._gc is None or self._gc.done():
            self._gc = spawn(self._collect(), name=f"fqdn gc {self.agent.cluster}/{self.agent.node}")

    async def _collect(self) -> None:
        """Remove expired IPs from the view and the kernel, at each expiry, until none is left."""
        while (due := self.cache.next_expiry()) is not None:
            await asyncio.sleep(max(0.0, due - self.clock()) + 0.05)
            async with self._learning:
                gone = self.cache.expire(self.clock())
                view = self.view
                if gone and view is not None and view.forget_fqdn_ips(self.agent.cluster, gone):
                    log.info("FQDN IPs expired on %s/%s: %s", self.agent.cluster,
                             self.agent.node, ", ".join(gone))
                    await self.program(view)

    # ------------------------------------------------------------------------------ policy

    def update(self, view: ReferenceLab) -> None:
        """Take the endpoints, policies and ipcache the agent's last `sync(view)` pushed."""
        if view is not self.view:
            self._adopt(view)
        by_ref = {ep.ref: ep for ep in self.agent.endpoints}
        for ref, endpoint_id in self.agent.endpoint_ids.items():
            placed = view.topology.workloads[ref]
            wl = placed.workload
            self.source.upsert_endpoint(LocalEndpoint(
                endpoint_id, view.identity_of[ref], by_ref[ref].ips,
                self.agent.policies.get(endpoint_id), wl.namespace, wl.name,
                tuple(f"k8s:{k}={v}" for k, v in wl.labels), wl.cluster))
        # headerMatches secrets: what the agent may read, as the reference run reads them
        secrets = dict(view.secrets)
        self.proxy.secrets = lambda namespace, name: secrets.get((namespace, name))
        entries = self.agent.ipcache_entries(view)
        for gone in self._prefixes - set(entries):
            self.source.remove_identity(gone)
        self.source.set_identities(entries.items())
        self._prefixes = set(entries)

    def _adopt(self, view: ReferenceLab) -> None:
        """A new view: carry the DNS cache into it (and program it again: the caller synced
        the view before it held them), or start from an empty cache."""
        previous, self.view = self.view, view
        if previous is None or not self.carry_learned:
            self.cache.clear()
            return
        for ip in sorted(self.cache.ips()):
            for name in self.cache.names_of(ip):
                view.learn_fqdn(self.agent.cluster, name, (ip,))
        if self.cache.ips():
            self._schedule_gc()
            spawn(self._program_carried(view), name=f"fqdn carry {self.agent.cluster}")

    async def _program_carried(self, view: ReferenceLab) -> None:
        async with self._learning:
            if view is self.view:
                await self.program(view)

    async def aclose(self) -> None:
        if self._gc is not None:
            self._gc.cancel()
        for dns in self.dns.values():
            await dns.aclose()
        self.dns.clear()
        await self.proxy.aclose()


__all__ = ["LISTEN_ADDRESS", "TCP_PARSERS", "UPSTREAM_MARK", "NodeProxyRunner",
           "dns_listener_specs", "listener_specs"]
