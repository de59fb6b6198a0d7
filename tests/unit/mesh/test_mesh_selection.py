"""Which objects apply (reference §2), PeerAuthentication composition (§14), capture (§15)."""

from __future__ import annotations

from meshtestkit import ap, objects, workload

from netstrata.mesh import ClientCapture, MeshConfig, ServiceRef
from netstrata.mesh.selection import (
    authorization_policies,
    inbound_bypass,
    mtls_mode,
    outbound_bypass,
)

MESH = MeshConfig()
WL = workload(namespace="foo", name="httpbin", labels={"app": "httpbin", "version": "v1"})


def names(text: str, wl=WL, mesh=MESH) -> list[str]:
    return [p.meta.name for p in authorization_policies(objects(text), wl, mesh)]


def test_root_and_own_namespace_only():
    text = ap("istio-system", "root") + ap("foo", "own") + ap("bar", "other")
    assert names(text) == ["root", "own"]
    custom_root = MeshConfig(root_namespace="mesh-root")
    assert names(text, mesh=custom_root) == ["own"]


def test_selector_is_a_subset_match():
    text = (ap("foo", "sub", "selector: {matchLabels: {app: httpbin}}")
            + ap("foo", "all-labels", "selector: {matchLabels: {app: httpbin, version: v1}}")
            + ap("foo", "extra", "selector: {matchLabels: {app: httpbin, tier: web}}")
            + ap("foo", "empty", "selector: {matchLabels: {}}")
            + ap("istio-system", "root-sel", "selector: {matchLabels: {app: httpbin}}"))
    assert names(text) == ["sub", "all-labels", "empty", "root-sel"]


def test_target_refs_are_ignored_by_sidecars():
    text = ap("foo", "ref", "targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, "
                            "name: gw}]")
    assert names(text) == []


def test_gateway_api_gateways_attach_by_target_ref_and_fall_back_to_selectors():
    gw = workload(namespace="foo", name="gw-istio", kind="gateway",
                  labels={"gateway.networking.k8s.io/gateway-name": "gw", "app": "gw"})
    text = (ap("foo", "by-ref", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, "
                                "name: gw}")
            + ap("foo", "other-gw", "targetRefs: [{group: gateway.networking.k8s.io, "
                                    "kind: Gateway, name: other}]")
            + ap("foo", "by-selector", "selector: {matchLabels: {app: gw}}")
            + ap("bar", "wrong-ns", "targetRef: {group: gateway.networking.k8s.io, "
                                    "kind: Gateway, name: gw}"))
    assert names(text, gw) == ["by-ref", "by-selector"]


def test_waypoints_use_only_target_refs():
    wp = workload(namespace="foo", name="waypoint", kind="waypoint",
                  labels={"gateway.networking.k8s.io/gateway-name": "waypoint"},
                  services=(ServiceRef("reviews", "foo"),))
    text = (ap("foo", "svc", "targetRefs: [{kind: Service, group: '', name: reviews}]")
            + ap("foo", "selector", "selector: {matchLabels: {app: x}}")
            + ap("foo", "none")
            + ap("istio-system", "class", "targetRefs: [{group: gateway.networking.k8s.io, "
                                          "kind: GatewayClass, name: istio-waypoint}]"))
    assert names(text, wp) == ["svc", "class"]


def pa(namespace: str, name: str, spec: str, ts: str = "") -> str:
    meta = f"  creationTimestamp: '{ts}'\n" if ts else ""
    return (f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n"
            f"  name: {name}\n  namespace: {namespace}\n{meta}spec: {spec}\n---\n")


def mode(text: str, port: int = 8000) -> str:
    return mtls_mode(objects(text), WL, port, MESH).mode


def test_default_is_permissive():
    assert mode("") == "PERMISSIVE"


def test_narrowest_scope_wins_and_unset_inherits():
    mesh_strict = pa("istio-system", "default", "{mtls: {mode: STRICT}}")
    assert mode(mesh_strict) == "STRICT"
    assert mode(mesh_strict + pa("foo", "default", "{mtls: {mode: PERMISSIVE}}")) == "PERMISSIVE"
    assert mode(mesh_strict + pa("foo", "default", "{mtls: {mode: UNSET}}")) == "STRICT"
    workload_level = pa("foo", "w", "{selector: {matchLabels: {app: httpbin}}, "
                                    "mtls: {mode: DISABLE}}")
    assert mode(mesh_strict + workload_level) == "DISABLE"


def test_root_namespace_policy_with_a_selector_is_ignored():
    assert mode(pa("istio-system", "sel", "{selector: {matchLabels: {app: httpbin}}, "
                                          "mtls: {mode: STRICT}}")) == "PERMISSIVE"


def test_port_level_mtls_overrides_and_unset_ports_inherit():
    text = (pa("foo", "default", "{mtls: {mode: STRICT}}")
            + pa("foo", "w", "{selector: {matchLabels: {app: httpbin}}, "
                             "portLevelMtls: {8000: {mode: DISABLE}, 9000: {mode: UNSET}}}"))
    assert mode(text, 8000) == "DISABLE"
    assert mode(text, 9000) == "STRICT"
    assert mode(text, 7000) == "STRICT"


def test_oldest_policy_of_a_level_wins():
    text = (pa("foo", "newer", "{mtls: {mode: STRICT}}", "2026-02-01T00:00:00Z")
            + pa("foo", "older", "{mtls: {mode: DISABLE}}", "2025-01-01T00:00:00Z"))
    assert mode(text) == "DISABLE"


def test_inbound_capture_annotations():
    ann = "traffic.sidecar.istio.io/"
    assert inbound_bypass(workload(annotations={ann + "excludeInboundPorts": "9090, 9091"}),
                          9091) == "excludeInboundPorts"
    assert inbound_bypass(workload(annotations={ann + "includeInboundPorts": "8000"}),
                          8001) == "includeInboundPorts"
    assert inbound_bypass(workload(annotations={ann + "includeInboundPorts": ""}), 8000) == (
        "includeInboundPorts")
    assert inbound_bypass(workload(annotations={ann + "includeInboundPorts": "*"}), 8000) is None
    assert inbound_bypass(workload(), 8000) is None


def test_outbound_capture_of_the_client():
    ann = "traffic.sidecar.istio.io/"
    assert outbound_bypass(None, 80, None) is None
    assert outbound_bypass(ClientCapture(has_sidecar=False), 80, None) == "no-client-sidecar"
    ports = ClientCapture({ann + "excludeOutboundPorts": "8080,9090"})
    assert outbound_bypass(ports, 8080, None) == "excludeOutboundPorts"
    ranges = ClientCapture({ann + "excludeOutboundIPRanges": "10.96.0.0/12"})
    assert outbound_bypass(ranges, 80, "10.96.0.10") == "excludeOutboundIPRanges"
    included = ClientCapture({ann + "excludeOutboundIPRanges": "10.96.0.0/12",
                              ann + "includeOutboundPorts": "80"})
    assert outbound_bypass(included, 80, "10.96.0.10") is None
    only = ClientCapture({ann + "includeOutboundIPRanges": "10.0.0.0/16"})
    assert outbound_bypass(only, 80, "10.1.0.1") == "includeOutboundIPRanges"
