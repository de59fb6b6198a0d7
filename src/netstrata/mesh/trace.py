"""The mesh leg of one request, explained: who is meshed, which principal the source presents,
whether the port takes the mesh path, the PeerAuthentication mode, and the authorization verdict.

`policy trace` and the reference run (`policy check` on scenarios) call `trace_mesh` once the
kernel and Cilium's proxy have let a TCP connection through. Every fact comes from the functions
the node proxy uses itself: `enrollment` (is a workload meshed), `spiffe_id_for` in the trust
domain of the source's cluster (the principal its certificate carries), `bypass.takes_mesh_path`
(capture annotations), `selection.mtls_mode` (PeerAuthentication) and `evaluate` (CUSTOM, JWT,
AUDIT, DENY, ALLOW). Pure: time and remote JWKS come in. Knows nothing of the kernel, the lab or
the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from netstrata.api.istio import IstioObject, RequestAuthentication
from netstrata.mesh.authz import evaluate
from netstrata.mesh.bypass import CAPTURED, PathDecision, takes_mesh_path
from netstrata.mesh.enrollment import Enrollment, enrollment, spiffe_id_for
from netstrata.mesh.selection import mtls_mode
from netstrata.mesh.spiffe import check_trust_domain
from netstrata.mesh.types import (
    ClientCapture,
    JwksFetcher,
    MeshConfig,
    MeshDecision,
    MeshRequest,
    Peer,
    Workload,
    WorkloadPort,
)

MeshVerdict = Literal["allowed", "audited", "denied", "not-applicable"]
PORT_PROTOCOL_PREFIXES: Final = ("http", "http2", "grpc", "grpc-web", "tcp", "tls", "https")
"""Istio's port-name convention (`<protocol>[-<suffix>]`) when no appProtocol is declared."""


@dataclass(frozen=True, slots=True)
class MeshEndpoint:
    """One end of a request, with what the mesh needs to know about it."""

    namespace: str
    name: str
    cluster: str = "default"
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    ports: tuple[WorkloadPort, ...] = ()
    host_network: bool = False
    """Host-network pods (and anything outside a cluster) are never meshed."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def enrollment(self) -> Enrollment:
        return enrollment(
            self.namespace_labels, self.labels, self.annotations, host_network=self.host_network
        )

    def workload(self) -> Workload:
        return Workload(
            name=self.name,
            namespace=self.namespace,
            labels=dict(self.labels),
            ports=self.ports,
            annotations=dict(self.annotations),
            ip=self.ip,
        )


@dataclass(frozen=True, slots=True)
class MeshCall:
    """What the client sends, as far as the destination proxy can see it."""

    port: int
    protocol: str = "tcp"
    """http, grpc or tcp."""
    method: str | None = None
    host: str | None = None
    path: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MeshTrace:
    """The mesh's part of one request, each fact with where it came from."""

    verdict: MeshVerdict
    reason: str
    """One line: why the mesh allowed, denied, audited, or was not on the path."""
    destination: Enrollment
    source: Enrollment | None = None
    """None when the source is not a workload (a host, an address outside the clusters)."""
    trust_domain: str | None = None
    """Trust domain of the source's cluster (where its certificate is issued)."""
    principal: str | None = None
    """The SPIFFE principal the source presents over mTLS; None for plaintext."""
    outbound: PathDecision | None = None
    """The source pod's capture of this connection (None: the source has no proxy)."""
    inbound: PathDecision = CAPTURED
    mtls_mode: str | None = None
    mtls_source: str | None = None
    decision: MeshDecision | None = None

    @property
    def decided_by(self) -> str | None:
        return self.decision.decided_by if self.decision else None

    @property
    def peer_principal(self) -> str | None:
        """The principal authorization saw: None for plaintext, for a port the destination's
        proxy does not capture, and under PeerAuthentication DISABLE (identity dropped)."""
        if self.outbound is None or not self.outbound.meshed or not self.inbound.meshed:
            return None
        return None if self.mtls_mode == "DISABLE" else self.principal

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "source": None
            if self.source is None
            else {
                "mode": self.source.mode,
                "enrollment": self.source.reason,
                "trust_domain": self.trust_domain,
                "principal": self.principal,
                "outbound_path": None
                if self.outbound is None
                else {"meshed": self.outbound.meshed, "reason": self.outbound.reason},
            },
            "destination": {
                "mode": self.destination.mode,
                "enrollment": self.destination.reason,
                "inbound_path": {"meshed": self.inbound.meshed, "reason": self.inbound.reason},
            },
            "peer_authentication": None
            if self.mtls_mode is None
            else {"mode": self.mtls_mode, "source": self.mtls_source},
            "peer_principal": self.peer_principal,
            "decision": None
            if d is None
            else {
                "outcome": d.outcome,
                "decided_by": d.decided_by,
                "audited_by": d.audited_by,
                "status": d.status,
                "grpc_status": d.grpc_status,
                "body": d.body,
                "explanation": list(d.explanation),
            },
        }


def istio_port_protocol(protocol: str, name: str | None, app_protocol: str | None) -> str:
    """Istio's protocol of a declared port: appProtocol, then the port-name prefix, else TCP."""
    if app_protocol:
        return app_protocol.lower()
    prefix = (name or "").split("-", 1)[0].lower()
    if prefix in PORT_PROTOCOL_PREFIXES:
        return prefix
    return protocol.lower()


def cluster_trust_domain(cluster: str, clusters: Sequence[str], mesh: MeshConfig) -> str:
    """The trust domain a cluster's CA issues in: the mesh's own when there is one cluster;
    with several, one CA per cluster named after it (the seeds' multi-cluster layout, where
    `trustDomainAliases` make a destination accept its peers' domains)."""
    if len(clusters) <= 1:
        return mesh.trust_domain
    try:
        return check_trust_domain(cluster)
    except ValueError:
        return mesh.trust_domain


def _outbound(source: MeshEndpoint, port: int, destination_ip: str | None) -> PathDecision:
    try:
        return takes_mesh_path("outbound", source.annotations, port, destination_ip or "")
    except ValueError as exc:  # the injector would refuse the pod; fail closed: stay meshed
        return PathDecision(True, f"captured (ignored malformed annotation: {exc})")


def _inbound(destination: MeshEndpoint, port: int) -> PathDecision:
    try:
        return takes_mesh_path("inbound", destination.annotations, port)
    except ValueError as exc:
        return PathDecision(True, f"captured (ignored malformed annotation: {exc})")


def _verdict(decision: MeshDecision) -> MeshVerdict:
    if decision.outcome != "allow":
        return "denied"
    return "audited" if decision.audited else "allowed"


def trace_mesh(
    objects: Iterable[IstioObject],
    source: MeshEndpoint | None,
    destination: MeshEndpoint,
    call: MeshCall,
    mesh: MeshConfig,
    *,
    source_trust_domain: str | None = None,
    source_ip: str | None = None,
    now: float,
    jwks_fetcher: JwksFetcher | None = None,
) -> MeshTrace:
    """Decide the mesh leg of one connection from `source` to `destination`.

    Args:
        objects: the Istio objects of the destination's cluster.
        source: the client workload, or None for a host or an outside address.
        destination: the server workload.
        call: port (the workload port, after service translation) and request.
        mesh: the destination's meshConfig.
        source_trust_domain: where the source's certificate is issued (`cluster_trust_domain`);
            the mesh's trust domain when None.
        source_ip: the socket peer address the destination sees.
        now: Unix seconds (JWT validity).
        jwks_fetcher: serves `jwksUri` documents; None fails remote JWKS (401).
    """
    dst_enrolled = destination.enrollment()
    if not dst_enrolled.meshed:
        return MeshTrace(
            "not-applicable",
            f"{destination.ref} is not in the mesh ({dst_enrolled.reason})",
            dst_enrolled,
        )
    inbound = _inbound(destination, call.port)
    src_enrolled = source.enrollment() if source is not None else None
    td = source_trust_domain or mesh.trust_domain
    principal = outbound = None
    if source is not None and src_enrolled is not None and src_enrolled.meshed:
        principal = spiffe_id_for(td, source.namespace, source.service_account).principal
        outbound = _outbound(source, call.port, destination.ip)
    mtls = outbound is not None and outbound.meshed
    workload = destination.workload()
    mode = mtls_mode(objects, workload, call.port, mesh)
    request = MeshRequest(
        workload=workload,
        destination_port=call.port,
        protocol=call.protocol,
        source_ip=source_ip or (source.ip if source and source.ip else "0.0.0.0"),
        destination_ip=destination.ip,
        method=call.method,
        host=call.host,
        path=call.path,
        headers=call.headers,
        client=ClientCapture(dict(source.annotations) if source else {}, has_sidecar=mtls),
    )
    decision = evaluate(
        tuple(objects),
        request,
        Peer(mtls, principal if mtls else None),
        mesh,
        now=now,
        jwks_fetcher=jwks_fetcher,
    )
    reason = f"{decision.outcome}, decided by {decision.decided_by}"
    if decision.explanation:
        reason += f": {decision.explanation[-1]}"
    return MeshTrace(
        _verdict(decision),
        reason,
        dst_enrolled,
        src_enrolled,
        td,
        principal,
        outbound,
        inbound,
        mode.mode,
        mode.source,
        decision,
    )


def assume_issuer(
    objects: Iterable[IstioObject], issuer: str, claims: Mapping[str, Any], *, now: float
) -> tuple[tuple[IstioObject, ...], str]:
    """For a trace "as if a valid token of `issuer` were presented": a token with `claims`
    signed by a throw-away key, and the objects with that key in place of the issuer's JWKS.
    Signature checking is the only thing skipped; issuer, audiences, exp/nbf and the claims
    themselves are still judged by `evaluate`."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "netstrata-trace", "alg": "ES256", "use": "sig"})
    jwks = json.dumps({"keys": [jwk]})
    body = {"iss": issuer, "iat": int(now) - 60, "exp": int(now) + 3600, **claims}
    token = pyjwt.encode(body, key, algorithm="ES256", headers={"kid": "netstrata-trace"})
    out: list[IstioObject] = []
    for o in objects:
        if isinstance(o, RequestAuthentication):
            rules = tuple(
                replace(r, jwks=jwks, jwks_uri="") if r.issuer == issuer else r for r in o.jwt_rules
            )
            o = replace(o, jwt_rules=rules)
        out.append(o)
    return tuple(out), token


__all__ = [
    "MeshCall",
    "MeshEndpoint",
    "MeshTrace",
    "MeshVerdict",
    "assume_issuer",
    "cluster_trust_domain",
    "istio_port_protocol",
    "trace_mesh",
]
