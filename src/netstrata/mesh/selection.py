"""Which Istio objects apply to a workload, its mTLS mode, and whether traffic is captured.

Selection (reference §2, `pilot/pkg/model/policyattachment.go` `ShouldAttachPolicy`,
`authorization.go` `ListAuthorizationPolicies`, `authentication.go` `getConfigsForWorkload`):

- Only objects in the root namespace and the workload's own namespace are candidates.
- A plain workload (no `gateway.networking.k8s.io/gateway-name` label) ignores every policy
  with `targetRef(s)` and attaches the others by `selector.matchLabels` (subset match; no
  selector, or an empty one, selects all).
- A Gateway-API gateway attaches policies whose targetRef names its Gateway (same namespace),
  and, without targetRefs, falls back to selectors (ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY,
  on by default). A waypoint never uses selectors; it also attaches Service / ServiceEntry
  targetRefs of the services it serves and the `istio-waypoint` GatewayClass from the root
  namespace.

PeerAuthentication (reference §14, `policy_applier.go` `ComposePeerAuthentication`): mesh level
= root namespace without (or with an empty) selector, namespace level = workload namespace
without selector, workload level = workload namespace with a matching selector; root-namespace
policies with a selector are ignored; the oldest wins within a level; UNSET inherits;
`portLevelMtls` (workload level only) overrides per workload port.

Capture (reference §15): sidecar annotations decide whether a port reaches the proxy at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from netstrata.api.istio import (
    AuthorizationPolicy,
    IstioObject,
    MTLSMode,
    PeerAuthentication,
    RequestAuthentication,
    TargetRef,
    WorkloadSelector,
)
from netstrata.mesh.matching import in_ranges, split_ports
from netstrata.mesh.types import ClientCapture, MeshConfig, Workload

ANNOTATION_PREFIX: Final = "traffic.sidecar.istio.io/"
WAYPOINT_CLASS: Final = "istio-waypoint"
_GATEWAY_GROUP: Final = "gateway.networking.k8s.io"

_P = TypeVar("_P", AuthorizationPolicy, RequestAuthentication)


def _selected(selector: WorkloadSelector | None, labels: dict[str, str]) -> bool:
    return selector is None or all(labels.get(k) == v for k, v in selector.match_labels)


def _canonical_group(group: str) -> str:
    return group or "core"


def _target_matches(ref: TargetRef, policy_ns: str, workload: Workload,
                    mesh: MeshConfig) -> bool:
    group, waypoint = _canonical_group(ref.group), workload.kind == "waypoint"
    if waypoint and (group, ref.kind) in (("core", "Service"),
                                          ("networking.istio.io", "ServiceEntry")):
        registry = "Kubernetes" if ref.kind == "Service" else "External"
        if any(s.name == ref.name and s.namespace == policy_ns and s.registry == registry
               for s in workload.services):
            return True
    if (waypoint and policy_ns == mesh.root_namespace and (group, ref.kind) == (
            _GATEWAY_GROUP, "GatewayClass") and ref.name == WAYPOINT_CLASS):
        return True
    if policy_ns != workload.namespace or ref.namespace not in ("", workload.namespace):
        return False
    gateway_name = workload.labels.get("gateway.networking.k8s.io/gateway-name")
    return (group, ref.kind) == (_GATEWAY_GROUP, "Gateway") and ref.name == gateway_name


def attaches(policy: AuthorizationPolicy | RequestAuthentication, workload: Workload,
             mesh: MeshConfig) -> bool:
    """policyattachment.go ShouldAttachPolicy, after the namespace pre-filter."""
    labels = dict(workload.labels)
    if not workload.is_gateway_api and workload.kind != "waypoint":
        return not policy.target_refs and _selected(policy.selector, labels)
    if not policy.target_refs:
        return workload.kind != "waypoint" and _selected(policy.selector, labels)
    return any(_target_matches(r, policy.meta.namespace, workload, mesh)
               for r in policy.target_refs)


def _candidates(objects: Iterable[IstioObject], kind: type[_P], workload: Workload,
                mesh: MeshConfig) -> tuple[_P, ...]:
    namespaces = {mesh.root_namespace, workload.namespace}
    return tuple(o for o in objects if isinstance(o, kind) and o.meta.namespace in namespaces
                 and attaches(o, workload, mesh))


def authorization_policies(objects: Iterable[IstioObject], workload: Workload,
                           mesh: MeshConfig) -> tuple[AuthorizationPolicy, ...]:
    """Every AuthorizationPolicy that applies to the workload, any action, dry-run included."""
    return _candidates(objects, AuthorizationPolicy, workload, mesh)


def request_authentications(objects: Iterable[IstioObject], workload: Workload,
                            mesh: MeshConfig) -> tuple[RequestAuthentication, ...]:
    return _candidates(objects, RequestAuthentication, workload, mesh)


@dataclass(frozen=True, slots=True)
class MTLSResolution:
    """The effective mTLS mode of one workload port and where it came from."""

    mode: MTLSMode
    source: str
    """`default`, `mesh <ns>/<name>`, `namespace ...`, `workload ...` or `port ...`."""


def _oldest(items: Sequence[tuple[int, PeerAuthentication]]) -> PeerAuthentication | None:
    if not items:
        return None
    # creationTimestamp (RFC 3339 sorts as text) first, then input order.
    return min(items, key=lambda it: (it[1].meta.creation_timestamp or "", it[0]))[1]


def mtls_mode(objects: Iterable[IstioObject], workload: Workload, port: int,
              mesh: MeshConfig) -> MTLSResolution:
    """ComposePeerAuthentication for `workload`, then the per-port override for `port`."""
    labels = dict(workload.labels)
    mesh_level, ns_level, wl_level = [], [], []
    for i, o in enumerate(objects):
        if not isinstance(o, PeerAuthentication):
            continue
        wide = o.selector is None or not o.selector.match_labels
        if o.meta.namespace == mesh.root_namespace and wide:
            mesh_level.append((i, o))
        elif o.meta.namespace == workload.namespace and wide:
            ns_level.append((i, o))
        elif o.meta.namespace == workload.namespace and _selected(o.selector, labels):
            wl_level.append((i, o))
    mode: MTLSMode = "PERMISSIVE"
    source = "default"
    for level, chosen in (("mesh", _oldest(mesh_level)), ("namespace", _oldest(ns_level)),
                          ("workload", _oldest(wl_level))):
        if chosen is not None and chosen.mode != "UNSET":
            mode, source = chosen.mode, f"{level} {chosen.meta.namespace}/{chosen.meta.name}"
    workload_pa = _oldest(wl_level)
    if workload_pa is not None:
        for p, port_mode in workload_pa.port_level_mtls:
            if p == port and port_mode != "UNSET":
                name = f"{workload_pa.meta.namespace}/{workload_pa.meta.name}"
                return MTLSResolution(port_mode, f"port {port} of {name}")
    return MTLSResolution(mode, source)


def inbound_bypass(workload: Workload, port: int) -> str | None:
    """The capture annotation that keeps `port` away from the sidecar, or None if captured."""
    ann = workload.annotations
    include = ann.get(ANNOTATION_PREFIX + "includeInboundPorts")
    if include is not None and include.strip() != "*" and port not in split_ports(include):
        return "includeInboundPorts"
    exclude = ann.get(ANNOTATION_PREFIX + "excludeInboundPorts")
    if exclude is not None and port in split_ports(exclude):
        return "excludeInboundPorts"
    return None


def outbound_bypass(client: ClientCapture | None, port: int,
                    destination_ip: str | None) -> str | None:
    """Why the client's own sidecar does not carry this connection, or None if it does.

    Order of the client's iptables rules: excluded ports, included ports, excluded IP ranges,
    included IP ranges (default `*`).
    """
    if client is None:
        return None
    if not client.has_sidecar:
        return "no-client-sidecar"
    ann = client.annotations
    if port in split_ports(ann.get(ANNOTATION_PREFIX + "excludeOutboundPorts", "")):
        return "excludeOutboundPorts"
    if port in split_ports(ann.get(ANNOTATION_PREFIX + "includeOutboundPorts", "")):
        return None
    if destination_ip is None:
        return None
    if in_ranges(destination_ip, ann.get(ANNOTATION_PREFIX + "excludeOutboundIPRanges", "")):
        return "excludeOutboundIPRanges"
    include = ann.get(ANNOTATION_PREFIX + "includeOutboundIPRanges", "*")
    if not in_ranges(destination_ip, include):
        return "includeOutboundIPRanges"
    return None


__all__ = [
    "ANNOTATION_PREFIX",
    "MTLSResolution",
    "attaches",
    "authorization_policies",
    "inbound_bypass",
    "mtls_mode",
    "outbound_bypass",
    "request_authentications",
]
