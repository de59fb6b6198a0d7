"""The per-request attributes a rule is matched against (reference §1, §9, §18).

From the wire facts of a `MeshRequest` and the proven `Peer` this computes what Envoy's RBAC
filter sees:

- the peer principal URI `spiffe://...`, only for an mTLS peer;
- `remote.ip`: Envoy's *trusted client address*. Sidecars and waypoints run the inbound
  connection manager with `use_remote_address: false` and no trusted hops
  (`listener_inbound.go` `buildSidecarInboundHTTPOpts`), so the right-most valid
  `X-Forwarded-For` entry wins when there is one (spoofable, but it is what Envoy does).
  Gateways set `use_remote_address: true` and `xff_num_trusted_hops` =
  `gatewayTopology.numTrustedProxies` (`gateway.go`): the N-th entry from the right, or the
  socket peer when N is 0 or the header is too short (Envoy docs, "x-forwarded-for");
- the normalized path (meshConfig `pathNormalization`, overridden on gateways by
  `proxyConfig.connectionSettings`), applied with the proxy package's Envoy-compatible
  pipeline; matchers see it without query and fragment;
- headers by lower-case name, repeated ones joined with `,`, plus the pseudo-headers
  (`:authority` also answers to `host`, as in Envoy's header map).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from netstrata.mesh.matching import parse_ip
from netstrata.mesh.types import MeshConfig, MeshRequest, Peer
from netstrata.proxy.http_path import EscapedSlashes, PathOutcome, PathPolicy, apply_path_policy

SPIFFE_PREFIX: Final = "spiffe://"

_MODES: Final[dict[str, PathPolicy]] = {
    "NONE": PathPolicy(False, False, EscapedSlashes.KEEP_UNCHANGED),
    "BASE": PathPolicy(True, False, EscapedSlashes.KEEP_UNCHANGED),
    "DEFAULT": PathPolicy(True, False, EscapedSlashes.KEEP_UNCHANGED),
    "MERGE_SLASHES": PathPolicy(True, True, EscapedSlashes.KEEP_UNCHANGED),
    "DECODE_AND_MERGE_SLASHES": PathPolicy(True, True, EscapedSlashes.UNESCAPE_AND_FORWARD),
}
"""listener_builder.go: how meshConfig.pathNormalization sets the connection manager."""


@dataclass(frozen=True, slots=True)
class Attributes:
    """Everything a policy rule can look at for one request or connection."""

    is_http: bool
    source_ip: str
    remote_ip: str
    destination_port: int
    destination_ip: str | None = None
    principal_uri: str | None = None
    """`spiffe://<td>/ns/<ns>/sa/<sa>` of an mTLS peer; None for plaintext."""
    sni: str | None = None
    method: str | None = None
    host: str | None = None
    path: str | None = None
    """Normalized path without query and fragment (what `paths` match)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    jwt_payload: Mapping[str, Any] | None = None
    """The verified (and space-split) JWT payload; None without a token."""
    filter_metadata: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def joined_headers(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Lower-case name → values joined with `,` (Envoy `getAllOfHeaderAsString`)."""
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return {k: ",".join(v) for k, v in out.items()}


def remote_address(request: MeshRequest, headers: Mapping[str, str] | None = None) -> str:
    """Envoy's trusted client address for this workload kind (see module docstring);
    `headers`: the request's `joined_headers`, when the caller has them already."""
    if not request.is_http:
        xff = None
    else:
        xff = (joined_headers(request.headers) if headers is None else headers).get(
            "x-forwarded-for")
    entries = [e.strip() for e in xff.split(",")] if xff else []
    if request.workload.kind == "gateway":
        hops = request.workload.num_trusted_proxies
        candidate = entries[-hops] if hops > 0 and len(entries) >= hops else None
    else:
        candidate = entries[-1] if entries else None
    if candidate is not None and parse_ip(candidate) is not None:
        return candidate
    return request.source_ip


def path_policy(request: MeshRequest, mesh: MeshConfig) -> PathPolicy:
    """The connection manager's path settings for this workload."""
    base = _MODES.get(mesh.path_normalization, _MODES["BASE"])
    cs = request.workload.connection_settings
    if request.workload.kind != "gateway" or not cs:
        return base
    merge = cs.get("httpMergeSlashes")
    action = cs.get("httpPathWithEscapedSlashesAction")
    if cs.get("profile") == "EDGE":  # connection_settings.go applyEdgeProfileDefaults
        merge = True if merge is None else merge
        action = action or "UNESCAPE_AND_REDIRECT"
    escaped = base.escaped_slashes
    if isinstance(action, str) and action in EscapedSlashes.__members__:
        escaped = EscapedSlashes[action]
    return PathPolicy(base.normalize, base.merge_slashes if merge is None else bool(merge),
                      escaped)


@functools.lru_cache(maxsize=4096)
def _apply_path_policy(target: str, policy: PathPolicy, grpc: bool) -> PathOutcome:
    """Normalization is a pure function of these three, and request paths repeat."""
    return apply_path_policy(target, policy, grpc=grpc)


def normalized_target(request: MeshRequest, mesh: MeshConfig) -> PathOutcome:
    """What the connection manager makes of the request target (query kept)."""
    # the first content-type decides: joined with `,`, the others cannot change the prefix
    content_type = next((v for k, v in request.headers if k.lower() == "content-type"), "")
    grpc = request.protocol == "grpc" or content_type.startswith("application/grpc")
    return _apply_path_policy(request.path or "/", path_policy(request, mesh), grpc)


def match_path(target: str) -> str:
    """The path matchers compare: query and fragment removed (Envoy `PathMatcher`)."""
    for sep in ("?", "#"):
        target = target.split(sep, 1)[0]
    return target


def build_attributes(request: MeshRequest, peer: Peer, *, target: str | None = None,
                     jwt_payload: Mapping[str, Any] | None = None,
                     headers: tuple[tuple[str, str], ...] | None = None) -> Attributes:
    """Attributes of `request` from an already-decided peer, target and JWT payload."""
    is_http = request.is_http
    hdrs = joined_headers(request.headers if headers is None else headers) if is_http else {}
    if is_http:
        hdrs[":method"] = request.method or ("POST" if request.protocol == "grpc" else "GET")
        hdrs[":path"] = target or request.path or "/"
        hdrs[":scheme"] = "https" if peer.mtls else "http"
        if request.host is not None:
            hdrs[":authority"] = request.host
            hdrs["host"] = request.host
    return Attributes(
        is_http=is_http, source_ip=request.source_ip, remote_ip=remote_address(request, hdrs if headers is None else None),
        destination_port=request.destination_port,
        destination_ip=request.destination_ip or request.workload.ip,
        principal_uri=SPIFFE_PREFIX + peer.principal if peer.mtls and peer.principal else None,
        sni=peer.sni, method=hdrs.get(":method"),
        host=request.host if is_http else None,
        path=match_path(target or request.path or "/") if is_http else None,
        headers=hdrs, jwt_payload=jwt_payload if is_http else None,
        filter_metadata=request.filter_metadata)


__all__ = [
    "SPIFFE_PREFIX",
    "Attributes",
    "build_attributes",
    "joined_headers",
    "match_path",
    "normalized_target",
    "path_policy",
    "remote_address",
]
