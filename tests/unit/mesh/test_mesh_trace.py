"""`mesh.trace.trace_mesh`: the mesh leg of one request, from workload facts to a verdict."""

from __future__ import annotations

from netstrata.api.istio import IstioMeta, PeerAuthentication
from netstrata.mesh.trace import MeshCall, MeshEndpoint, cluster_trust_domain, trace_mesh
from netstrata.mesh.types import MeshConfig, WorkloadPort

MESHED_NS = {"istio-injection": "enabled"}
SERVER = MeshEndpoint(
    "shop",
    "orders",
    service_account="orders",
    namespace_labels=MESHED_NS,
    ip="10.0.0.2",
    ports=(WorkloadPort(8080, "http"),),
)
CLIENT = MeshEndpoint(
    "shop", "web", service_account="web", namespace_labels=MESHED_NS, ip="10.0.0.1"
)
GET = MeshCall(8080, "http", "GET", None, "/", ())


def strict(ns: str = "istio-system") -> PeerAuthentication:
    return PeerAuthentication(IstioMeta("default", ns), mode="STRICT")


def test_destination_outside_the_mesh_is_not_applicable():
    server = MeshEndpoint("plain", "db", namespace_labels={})
    t = trace_mesh((), CLIENT, server, GET, MeshConfig(), now=0.0)
    assert t.verdict == "not-applicable" and t.decision is None
    assert "not in the mesh" in t.reason


def test_meshed_client_presents_its_service_account_in_its_trust_domain():
    t = trace_mesh(
        (strict(),), CLIENT, SERVER, GET, MeshConfig(), source_trust_domain="eu", now=0.0
    )
    assert t.principal == "eu/ns/shop/sa/web" and t.trust_domain == "eu"
    # STRICT accepts the mTLS client; "eu" is not a trust domain of this mesh: handshake fails
    assert t.verdict == "denied" and t.decided_by == "mtls:untrusted-trust-domain"
    aliased = MeshConfig(trust_domain_aliases=("eu",))
    ok = trace_mesh((strict(),), CLIENT, SERVER, GET, aliased, source_trust_domain="eu", now=0.0)
    assert ok.verdict == "allowed" and ok.peer_principal == "eu/ns/shop/sa/web"


def test_outbound_bypass_sends_plaintext_which_strict_refuses():
    client = MeshEndpoint(
        "shop",
        "web",
        namespace_labels=MESHED_NS,
        ip="10.0.0.1",
        annotations={"traffic.sidecar.istio.io/excludeOutboundPorts": "8080"},
    )
    t = trace_mesh((strict(),), client, SERVER, GET, MeshConfig(), now=0.0)
    assert t.outbound is not None and not t.outbound.meshed
    assert t.outbound.reason == "excludeOutboundPorts"
    assert t.verdict == "denied" and t.decided_by == "mtls:strict" and t.peer_principal is None
    assert trace_mesh((), client, SERVER, GET, MeshConfig(), now=0.0).verdict == "allowed"


def test_disable_drops_the_principal_authorization_sees():
    disable = PeerAuthentication(IstioMeta("off", "shop"), mode="DISABLE")
    t = trace_mesh((disable,), CLIENT, SERVER, GET, MeshConfig(), now=0.0)
    assert t.mtls_mode == "DISABLE" and t.principal == "cluster.local/ns/shop/sa/web"
    assert t.peer_principal is None


def test_trust_domain_per_cluster():
    mesh = MeshConfig(trust_domain="corp.example")
    assert cluster_trust_domain("eu", ["eu"], mesh) == "corp.example"
    assert cluster_trust_domain("cluster-eu", ["cluster-eu", "cluster-us"], mesh) == "cluster-eu"
    assert cluster_trust_domain("Bad Name", ["Bad Name", "x"], mesh) == "corp.example"
