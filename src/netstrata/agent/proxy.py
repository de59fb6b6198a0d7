"""The node proxy as one node's agent runs it: listeners, and the tables it answers from.

The kernel redirects a connection whose policy entry carries a proxy port to a socket of this
node's proxy (`datapath/bpf/proxy.h`, docs/proxy-redirect.md): ingress redirects to
127.0.0.1:<port>, egress redirects to 127.0.0.2:<port>. `NodeProxyRunner` binds one
transparent listener per parser and direction there, for every parser whose wiring is a
plain TCP accept (HTTP, which also takes h2c/gRPC, and Kafka). DNS is not started: answering
a redirected UDP query needs a reply sent from the original server address, which the DNS
proxy does not do yet; the kernel drops redirected UDP while no socket takes it (fail closed).

One truth: `update()` fills the proxy's `InMemoryPolicySource` from what the agent has just
pushed into the kernel, the same `ResolvedPolicy` objects (`NodeAgent.policies`) and the same
ipcache entries (`NodeAgent.ipcache_entries`), so the kernel and the proxy never judge from
different revisions for longer than one sync.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Final

from netstrata.agent.node import NodeAgent
from netstrata.datapath.maps import ProxyRedirect
from netstrata.lab.simulate import ReferenceLab
from netstrata.netns import socket_in_netns
from netstrata.observe.flow import Flow
from netstrata.policy.resolve import DEFAULT_PROXY_PORTS
from netstrata.policy.types import Direction
from netstrata.proxy.policy_source import InMemoryPolicySource, LocalEndpoint
from netstrata.proxy.server import ListenerSpec, NodeProxy, Parser, ProxyConfig

log = logging.getLogger(__name__)

TCP_PARSERS: Final[tuple[Parser, ...]] = ("http", "kafka")
"""Parsers whose listeners the runner starts (see the module docstring for DNS)."""

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


class NodeProxyRunner:
    """One node's `NodeProxy`, fed from its `NodeAgent` (see the module docstring).

    Args:
        agent: the node's agent; `update()` reads its last sync.
        netns: the node's namespace when this process is not in it (lab check), else None.
        on_flow: receives every L7 flow (the agent's flow store).
    """

    def __init__(self, agent: NodeAgent, *, netns: str | None = None,
                 on_flow: Callable[[Flow], object] | None = None) -> None:
        self.agent = agent
        self.on_flow = on_flow
        self.source = InMemoryPolicySource()
        factory: Callable[[int, int], socket.socket] = socket.socket
        if netns is not None:
            factory = lambda family, kind: socket_in_netns(netns, family, kind)  # noqa: E731
        self.proxy = NodeProxy(self.source, on_flow=self._record, socket_factory=factory,
                               config=ProxyConfig(node_name=f"{agent.cluster}/{agent.node}"))
        self._prefixes: set[str] = set()

    def _record(self, flow: Flow) -> None:
        if self.on_flow is not None:
            self.on_flow(flow)

    async def start(self, ports: Mapping[str, int] = DEFAULT_PROXY_PORTS) -> None:
        """Bind every listener; a port that cannot be bound is an error (nothing would take
        the redirected traffic, which the kernel then drops)."""
        for spec in listener_specs(ports):
            await self.proxy.add_listener(spec)

    def update(self, view: ReferenceLab) -> None:
        """Take the endpoints, policies and ipcache the agent's last `sync(view)` pushed."""
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

    async def aclose(self) -> None:
        await self.proxy.aclose()


__all__ = ["LISTEN_ADDRESS", "TCP_PARSERS", "UPSTREAM_MARK", "NodeProxyRunner", "listener_specs"]
