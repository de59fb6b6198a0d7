"""Value types of the mesh layer: the request a sidecar sees, its workload, the mesh settings,
and the decision. Leaf module: it imports nothing else of `mesh/`.

A `MeshRequest` is what the destination workload's proxy observes (reference
istio-authz-semantics §1): socket peer address, workload port, raw `Host`/`:authority`, the
request target before normalization, headers as sent. The `Peer` is what the TLS handshake
proved. Everything derived (normalized path, remote IP, peer namespace, JWT claims) is computed
by `mesh.attributes` from these, so a test states the wire facts and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Outcome = Literal["allow", "deny-403", "deny-401", "tcp-reset", "reject-400"]
"""`reject-400`: the request never reaches authorization (`%00` in the path, a method that is
not an upper-case token); not one of the acceptance suite's words, because no case sends one."""

WorkloadKind = Literal["sidecar", "gateway", "waypoint"]

HTTP_PROTOCOLS: Final = frozenset({"http", "http2", "grpc", "grpc-web", "h2c"})
"""Port protocols that get Istio's HTTP filter chain; every other one is translated for TCP."""

GATEWAY_NAME_LABEL: Final = "gateway.networking.k8s.io/gateway-name"
"""Marks a Gateway-API gateway (or waypoint) instance; policies then attach by targetRef."""


@dataclass(frozen=True, slots=True)
class WorkloadPort:
    """A declared workload (target) port."""

    port: int
    protocol: str = "tcp"
    """Istio protocol name in lower case: http, http2, grpc, tcp, tls, ..."""


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A Service the workload backs; only waypoints attach policies by Service targetRef."""

    name: str
    namespace: str
    registry: Literal["Kubernetes", "External"] = "Kubernetes"


@dataclass(frozen=True, slots=True)
class Workload:
    """The destination workload whose proxy evaluates the request."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[WorkloadPort, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    kind: WorkloadKind = "sidecar"
    """sidecar; gateway (ingress/egress gateway, classic or Gateway API); waypoint."""
    num_trusted_proxies: int = 0
    """`proxyConfig.gatewayTopology.numTrustedProxies` (gateways only)."""
    ip: str | None = None
    services: tuple[ServiceRef, ...] = ()
    connection_settings: Mapping[str, object] = field(default_factory=dict)
    """`proxyConfig.connectionSettings` (gateways: profile EDGE, httpMergeSlashes, ...)."""

    def port_protocol(self, port: int) -> str | None:
        for p in self.ports:
            if p.port == port:
                return p.protocol
        return None

    @property
    def is_gateway_api(self) -> bool:
        return GATEWAY_NAME_LABEL in self.labels


@dataclass(frozen=True, slots=True)
class Peer:
    """What the inbound TLS handshake proved about the client."""

    mtls: bool = False
    principal: str | None = None
    """SPIFFE ID without `spiffe://`, e.g. `cluster.local/ns/foo/sa/sleep`."""
    sni: str | None = None
    """TLS SNI the client sent, if any (`connection.sni`)."""


@dataclass(frozen=True, slots=True)
class ClientCapture:
    """The client pod's own sidecar situation (only where it changes what the server sees)."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    has_sidecar: bool = True


@dataclass(frozen=True, slots=True)
class MeshRequest:
    """One request (or TCP connection) as the destination proxy receives it."""

    workload: Workload
    destination_port: int
    protocol: str = "http"
    """http, http2, grpc or tcp: what the client speaks (the port protocol decides the chain)."""
    source_ip: str = "0.0.0.0"
    destination_ip: str | None = None
    method: str | None = None
    host: str | None = None
    path: str | None = None
    """Request target as sent (origin form, query included), before normalization."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers as sent; names are matched case-insensitively."""
    client: ClientCapture | None = None
    filter_metadata: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    """Dynamic metadata by filter name, for `experimental.envoy.filters.*` conditions."""

    @property
    def is_http(self) -> bool:
        declared = self.workload.port_protocol(self.destination_port)
        return (declared or self.protocol).lower() in HTTP_PROTOCOLS


@dataclass(frozen=True, slots=True)
class ExtensionProvider:
    """A `meshConfig.extensionProviders[]` ext-authz entry."""

    name: str
    kind: Literal["http", "grpc"] = "http"
    service: str = ""
    port: int = 0
    status_on_error: int = 403
    fail_open: bool = False


PathNormalization = Literal["NONE", "BASE", "DEFAULT", "MERGE_SLASHES",
                            "DECODE_AND_MERGE_SLASHES"]


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """The meshConfig settings authorization depends on."""

    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    trust_domain_aliases: tuple[str, ...] = ()
    ca_trust_domains: tuple[str, ...] = ()
    """`caCertificates[].trustDomains`: accepted at the handshake, not alias-rewritten."""
    path_normalization: PathNormalization = "BASE"
    extension_providers: tuple[ExtensionProvider, ...] = ()
    skip_validate_trust_domain: bool = False
    """PILOT_SKIP_VALIDATE_TRUST_DOMAIN."""
    multiple_custom_providers: bool = False
    """PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS."""
    jwt_clock_skew_s: int = 60

    def provider(self, name: str) -> ExtensionProvider | None:
        for p in self.extension_providers:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class ExtAuthzResponse:
    """What an ext-authz provider answered."""

    allowed: bool
    status: int = 403
    """HTTP status of a denial (the provider's own response)."""


ExtAuthzClient = Callable[[ExtensionProvider, MeshRequest], ExtAuthzResponse | None]
"""Asks a CUSTOM provider; None means it could not be reached (statusOnError / failOpen)."""

JwksFetcher = Callable[[str], str | None]
"""Returns the JWKS text served at a `jwksUri`, or None when the fetch fails. No network in
the core: the adapter (or a test, from a dict) supplies it."""


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """Result of the dry-run (shadow) ALLOW or DENY engine."""

    result: Literal["allowed", "denied"]
    policy: str | None = None
    """The matched dry-run rule, `ns[..]-policy[..]-rule[..]`, or None when none matched."""


@dataclass(frozen=True, slots=True)
class DryRun:
    allow: ShadowResult | None = None
    deny: ShadowResult | None = None


@dataclass(frozen=True, slots=True)
class MeshDecision:
    """The verdict of the destination proxy and why."""

    outcome: Outcome
    decided_by: str
    """`ns[<ns>]-policy[<name>]-rule[<i>]`, `none`, `no-policies`, `no-allow-policies`,
    `request-authentication`, `mtls:<reason>`, `bypass:<annotation>` or `custom:<provider>`."""
    audited: bool = False
    audited_by: str | None = None
    dry_run: DryRun | None = None
    explanation: tuple[str, ...] = ()
    status: int | None = None
    """HTTP status of a local reply (403, 401, 400); None when forwarded or for TCP."""
    grpc_status: int | None = None
    """grpc-status of a gRPC local reply (7 for 403, 16 for 401)."""
    body: str | None = None
    ext_authz_called: bool = False
    upstream_headers: tuple[tuple[str, str], ...] | None = None
    """Headers forwarded to the app (after JWT processing); None when not forwarded or TCP."""

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"


__all__ = [
    "GATEWAY_NAME_LABEL",
    "HTTP_PROTOCOLS",
    "ClientCapture",
    "DryRun",
    "ExtAuthzClient",
    "ExtAuthzResponse",
    "ExtensionProvider",
    "JwksFetcher",
    "MeshConfig",
    "MeshDecision",
    "MeshRequest",
    "Outcome",
    "PathNormalization",
    "Peer",
    "ServiceRef",
    "ShadowResult",
    "Workload",
    "WorkloadKind",
    "WorkloadPort",
]
