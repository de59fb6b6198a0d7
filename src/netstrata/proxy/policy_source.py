"""How the node proxy learns whose connection it holds and which policy applies to it.

For every accepted connection (or DNS datagram) the proxy needs four things (reference §3.3):

* the **local endpoint** whose policy decides: the destination pod for an ingress redirect,
  the source pod for an egress redirect;
* the **direction** (which of the endpoint's policies: the listener says it, as Cilium runs
  separate ingress and egress listeners);
* the **peer identity**: the security identity of the other side, what `L7Entry.identities`
  is matched against;
* the **original destination**: where the client meant to go, which is where the proxy's
  upstream connection goes and whose port selects the L7 rule set (`ResolvedPolicy.find_l7`).

`PolicySource` is that question as an interface. The kernel redirect (TPROXY keeps the
original destination as the accepted socket's local address; the source identity comes from
the ipcache, as Cilium's proxy reads it) will answer it from the BPF maps. Until then
`InMemoryPolicySource` answers it from tables the agent or a test fills in: local endpoints
with their current `ResolvedPolicy`, an ipcache of IP/CIDR -> identity, and, for listeners
that receive plain (non-transparent) connections, a pinned original destination.

The policy is looked up again for every request, not once per connection: a new policy
revision applies to the next request on a keep-alive connection, as Envoy applies a policy
update. Nothing here does I/O; all methods are plain functions the adapters call on the loop.
"""

from __future__ import annotations

import abc
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from netstrata.observe.flow import Endpoint
from netstrata.policy.types import Direction, Proto, ResolvedPolicy

Address = tuple[str, int]
"""(IP text, port)."""

WORLD_IDENTITY: Final = 2
"""reserved:world, what Cilium's ipcache answers for an address it does not know."""


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Who one proxied connection belongs to; fixed for the connection's life."""

    endpoint_id: int
    """The local endpoint whose policy decides."""
    direction: Direction
    """INGRESS: the endpoint is the destination; EGRESS: the endpoint is the client."""
    peer_identity: int
    """Security identity of the other side (the client on ingress, the server on egress)."""
    client: Address
    """The connecting client's address."""
    original_dst: Address
    """Where the client was going; the proxy's upstream connection goes here."""
    proto: int = Proto.TCP
    """IANA protocol of the redirected traffic (TCP, or UDP for DNS)."""
    source: Endpoint | None = None
    """Flow description of the client side."""
    destination: Endpoint | None = None
    """Flow description of the server side."""


class PolicySource(abc.ABC):
    """What the proxy asks about every connection; see the module docstring."""

    @abc.abstractmethod
    def resolve(
        self, listener: str, direction: Direction, proto: int, client: Address, local: Address
    ) -> ConnectionInfo | None:
        """Identify a new connection accepted on `listener` (None: unknown, close it).

        Args:
            listener: the listener's name (`ListenerSpec.name`).
            direction: the listener's direction.
            proto: TCP or UDP.
            client: the peer address of the accepted socket.
            local: the local address of the accepted socket (the original destination under
                a transparent redirect).
        """

    @abc.abstractmethod
    def policy(self, endpoint_id: int) -> ResolvedPolicy | None:
        """The endpoint's current policy, or None when the endpoint is gone (deny)."""


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """A pod on this node, as the proxy needs to know it."""

    endpoint_id: int
    """Cilium-style endpoint id (unique on the node)."""
    identity: int
    """Its security identity."""
    ips: tuple[str, ...]
    """Its addresses."""
    policy: ResolvedPolicy | None = None
    """Its current resolved policy; None until the agent computed one (requests are denied)."""
    namespace: str = ""
    pod_name: str = ""
    labels: tuple[str, ...] = ()
    """`source:key=value` strings, as in flows."""
    cluster_name: str = ""

    def flow_endpoint(self) -> Endpoint:
        """This endpoint as one side of a flow."""
        return Endpoint(id=self.endpoint_id, identity=self.identity,
                        cluster_name=self.cluster_name, namespace=self.namespace,
                        labels=tuple(sorted(self.labels)), pod_name=self.pod_name)


@dataclass(slots=True)
class _IPCache:
    """IP/CIDR -> identity, longest prefix wins (a small table; the kernel has the LPM trie)."""

    prefixes: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, int] = field(
        default_factory=dict)

    def lookup(self, ip: str) -> int | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        best: tuple[int, int] | None = None
        for net, identity in self.prefixes.items():
            if addr.version == net.version and addr in net:
                if best is None or net.prefixlen > best[0]:
                    best = (net.prefixlen, identity)
        return best[1] if best else None


def _network(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(prefix, strict=False)
    except ValueError as exc:
        raise ValueError(f"not an IP address or CIDR: {prefix!r}") from exc


class InMemoryPolicySource(PolicySource):
    """A `PolicySource` filled in by the agent (or a test); see the module docstring.

    Typical use::

        source = InMemoryPolicySource()
        source.upsert_endpoint(LocalEndpoint(12, 48213, ("10.0.1.5",), policy=resolved))
        source.set_identity("10.0.2.0/24", 51007)
        source.set_original_destination("http-ingress", ("10.0.1.5", 8080))  # no TPROXY yet
    """

    def __init__(self, *, world_identity: int = WORLD_IDENTITY) -> None:
        self._endpoints: dict[int, LocalEndpoint] = {}
        self._by_ip: dict[str, int] = {}
        self._ipcache = _IPCache()
        self._pinned: dict[str, Address] = {}
        self._world = world_identity

    # ---- tables ------------------------------------------------------------------------------

    def upsert_endpoint(self, endpoint: LocalEndpoint) -> None:
        """Add or replace a local endpoint (addresses, identity, policy)."""
        self.remove_endpoint(endpoint.endpoint_id)
        self._endpoints[endpoint.endpoint_id] = endpoint
        for ip in endpoint.ips:
            self._by_ip[_canonical_ip(ip)] = endpoint.endpoint_id

    def remove_endpoint(self, endpoint_id: int) -> None:
        """Forget an endpoint; its connections are denied from their next request on."""
        old = self._endpoints.pop(endpoint_id, None)
        if old is not None:
            for ip in old.ips:
                if self._by_ip.get(_canonical_ip(ip)) == endpoint_id:
                    del self._by_ip[_canonical_ip(ip)]

    def set_policy(self, endpoint_id: int, policy: ResolvedPolicy | None) -> None:
        """Install a new policy revision for an endpoint.

        Raises:
            KeyError: no such endpoint.
        """
        old = self._endpoints[endpoint_id]
        self._endpoints[endpoint_id] = LocalEndpoint(
            old.endpoint_id, old.identity, old.ips, policy, old.namespace, old.pod_name,
            old.labels, old.cluster_name)

    def set_identity(self, prefix: str, identity: int) -> None:
        """ipcache: traffic from/to `prefix` (an IP or CIDR) has `identity`."""
        self._ipcache.prefixes[_network(prefix)] = identity

    def set_identities(self, entries: Iterable[tuple[str, int]]) -> None:
        """Several `set_identity` calls."""
        for prefix, identity in entries:
            self.set_identity(prefix, identity)

    def remove_identity(self, prefix: str) -> None:
        """Drop an ipcache entry (unknown addresses are `world`)."""
        self._ipcache.prefixes.pop(_network(prefix), None)

    def set_original_destination(self, listener: str, destination: Address | None) -> None:
        """Connections on `listener` were meant for `destination` (None: use the socket's
        local address, as under TPROXY)."""
        if destination is None:
            self._pinned.pop(listener, None)
        else:
            self._pinned[listener] = (destination[0], int(destination[1]))

    # ---- queries -----------------------------------------------------------------------------

    def endpoint_at(self, ip: str) -> LocalEndpoint | None:
        """The local endpoint owning `ip`, if any."""
        endpoint_id = self._by_ip.get(_canonical_ip(ip))
        return None if endpoint_id is None else self._endpoints.get(endpoint_id)

    def identity_of(self, ip: str) -> int:
        """Security identity of an address: a local endpoint's, else the ipcache's, else world."""
        endpoint = self.endpoint_at(ip)
        if endpoint is not None:
            return endpoint.identity
        found = self._ipcache.lookup(ip)
        return self._world if found is None else found

    def policy(self, endpoint_id: int) -> ResolvedPolicy | None:
        endpoint = self._endpoints.get(endpoint_id)
        return None if endpoint is None else endpoint.policy

    def resolve(
        self, listener: str, direction: Direction, proto: int, client: Address, local: Address
    ) -> ConnectionInfo | None:
        dst = self._pinned.get(listener, (local[0], int(local[1])))
        client = (client[0], int(client[1]))
        subject_ip, peer_ip = (dst[0], client[0]) if direction == Direction.INGRESS else (
            client[0], dst[0])
        endpoint = self.endpoint_at(subject_ip)
        if endpoint is None:
            return None
        peer = self.identity_of(peer_ip)
        peer_endpoint = self.endpoint_at(peer_ip)
        peer_flow = (peer_endpoint.flow_endpoint() if peer_endpoint is not None
                     else Endpoint(identity=peer))
        own = endpoint.flow_endpoint()
        source, destination = (peer_flow, own) if direction == Direction.INGRESS else (
            own, peer_flow)
        return ConnectionInfo(endpoint.endpoint_id, direction, peer, client, dst, proto,
                              source, destination)


def _canonical_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


__all__ = [
    "WORLD_IDENTITY",
    "Address",
    "ConnectionInfo",
    "InMemoryPolicySource",
    "LocalEndpoint",
    "PolicySource",
]
