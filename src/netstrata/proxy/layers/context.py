"""What every enforcement layer is given, and the interface every layer offers its adapter.

A layer is built per connection from a `LayerContext`: who the connection belongs to
(`ConnectionInfo`), how to read the endpoint's *current* policy (looked up per request, so a
new revision applies to the next request), the Secret resolver for `headerMatches`, and the
node name for flows. Layers never read a clock: `now` (Unix seconds, float) comes in with every
event, and `get_timer()` tells the adapter when to call `handle_timer(now)` (aioquic's design).

Timeouts (`Timeouts`), each a slow-client or stuck-upstream defence with its precedent:

* `idle` 300 s: a keep-alive connection with no request in progress (Envoy's HTTP
  `idle_timeout` is 1 h, nginx `keepalive_timeout` 75 s; Kafka clients close idle connections
  after 9 min, `connections.max.idle.ms`).
* `header` 10 s: from the first byte of a request head to its end. Slowloris sends a head a
  byte at a time; a per-read timeout alone never fires on it. Envoy's
  `request_headers_timeout` is off by default, nginx `client_header_timeout` is 60 s; 10 s is
  ample for any real client on a pod network.
* `read` 30 s: the longest pause between bytes of a request body, or of a Kafka frame
  (nginx `client_body_timeout` 60 s); also how long a client may leave our writes unread.
* `upstream` 30 s: from the end of a forwarded HTTP request to the response head (Envoy's
  route timeout is 15 s; Cilium leaves it at Envoy's default). Kafka has none: Fetch long-polls.
* `connect` 5 s: the upstream TCP connect (Envoy's `connect_timeout` default 5 s).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from netstrata.datapath.reference.l7 import SecretLookup
from netstrata.observe.builders import Packet, PolicyRef
from netstrata.policy.l7 import HTTPRequest
from netstrata.policy.types import L7Policy, Proto, ResolvedPolicy
from netstrata.proxy.layers.commands import Command
from netstrata.proxy.layers.events import Event
from netstrata.proxy.policy_source import ConnectionInfo

MeshAuthorize = Callable[[HTTPRequest, bool], tuple[int, bytes] | None]
"""The mesh's say on one HTTP request after Cilium's L7 rules allowed it: (request, is it
gRPC) -> None to forward, or (status, body) of the local reply (Istio's 403 `RBAC: access
denied`, 401 for a rejected JWT; a gRPC request gets the trailers-only form)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; see the module docstring for each default."""

    idle: float = 300.0
    header: float = 10.0
    read: float = 30.0
    upstream: float = 30.0
    connect: float = 5.0


DEFAULT_TIMEOUTS: Final = Timeouts()


@dataclass(frozen=True, slots=True)
class LayerContext:
    """Everything a layer knows besides the bytes."""

    info: ConnectionInfo
    """Whose connection this is."""
    current_policy: Callable[[], ResolvedPolicy | None]
    """The endpoint's policy now (None: the endpoint is gone, deny)."""
    secrets: SecretLookup | None = None
    """(namespace, name) -> Secret value, for `headerMatches` with `secret`."""
    node_name: str = ""
    """For flows."""
    mesh_authorize: MeshAuthorize | None = None
    """Set on the mesh's inbound listener (agent/mesh.py): Cilium's L7 rules apply first (no
    rule set for the port means Cilium has nothing to say), then this decides."""

    def l7_policy(self) -> tuple[L7Policy | None, ResolvedPolicy | None]:
        """(the rule set of the original destination's port, the policy it came from)."""
        policy = self.current_policy()
        if policy is None:
            return None, None
        port = self.info.original_dst[1]
        return policy.find_l7(self.info.direction, self.info.proto, port), policy

    def packet(self) -> Packet:
        """The connection as client -> original destination, for the flow builders."""
        info = self.info
        return Packet(info.client[0], info.original_dst[0], int(info.proto), info.client[1],
                      info.original_dst[1], source=info.source, destination=info.destination)


class Layer(Protocol):
    """What the adapter drives: events in, commands out, one timer."""

    def handle(self, event: Event, now: float) -> list[Command]:
        """Process one event; return the commands to execute, in order."""
        ...

    def handle_timer(self, now: float) -> list[Command]:
        """The deadline from `get_timer()` has passed (or not: a layer re-checks)."""
        ...

    def get_timer(self) -> float | None:
        """Unix time of the next deadline, or None."""
        ...

    @property
    def wants_client_data(self) -> bool:
        """False while the layer cannot take more client bytes (backpressure)."""
        ...


def policy_refs(policy: ResolvedPolicy | None, cookie: int | None) -> tuple[PolicyRef, ...]:
    """The rule behind a cookie as Hubble's `(kind, namespace, name)`.

    Cookies name descriptions like `CiliumNetworkPolicy shop/api ingress[0]` (namespaced) or
    `CiliumClusterwideNetworkPolicy deny-all egress[1]`.
    """
    if policy is None or not cookie:
        return ()
    text = policy.cookies.get(cookie)
    if not text:
        return ()
    parts = text.split()
    if len(parts) < 2:
        return ()
    kind, ref = parts[0], parts[1]
    namespace, _, name = ref.rpartition("/")
    return ((kind, namespace, name),)


SENSITIVE_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie",
                                      "set-cookie"})


def redact(headers: Sequence[tuple[str, str]], extra: frozenset[str] = frozenset()
           ) -> tuple[tuple[str, str], ...]:
    """Headers safe for a flow record: credentials and Secret-derived values replaced."""
    hidden = SENSITIVE_HEADERS | extra
    return tuple((k, "[redacted]" if k.lower() in hidden else v) for k, v in headers)


def is_tcp(info: ConnectionInfo) -> bool:
    """Whether the connection is TCP (HTTP and Kafka layers refuse anything else)."""
    return int(info.proto) == int(Proto.TCP)


__all__ = [
    "DEFAULT_TIMEOUTS",
    "SENSITIVE_HEADERS",
    "Layer",
    "LayerContext",
    "MeshAuthorize",
    "Timeouts",
    "is_tcp",
    "policy_refs",
    "redact",
]
