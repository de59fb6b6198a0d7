"""Istio mesh authorization: AuthorizationPolicy, RequestAuthentication, PeerAuthentication.

`evaluate(policies, request, peer, mesh_config, now=...)` is the destination proxy's verdict
for one request or TCP connection, as Istio's translation plus Envoy's filters would give it
(reference istio-authz-semantics). It is pure: policies come parsed by
`netstrata.api.istio.parse_istio_document`, time and the answers of ext-authz providers and
remote JWKS are passed in. `casefile` runs the shared istio-authz acceptance cases.
"""

from netstrata.mesh.authz import evaluate
from netstrata.mesh.types import (
    ClientCapture,
    DryRun,
    ExtAuthzClient,
    ExtAuthzResponse,
    ExtensionProvider,
    JwksFetcher,
    MeshConfig,
    MeshDecision,
    MeshRequest,
    Outcome,
    Peer,
    ServiceRef,
    ShadowResult,
    Workload,
    WorkloadPort,
)

__all__ = [
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
    "Peer",
    "ServiceRef",
    "ShadowResult",
    "Workload",
    "WorkloadPort",
    "evaluate",
]
