"""Istio security objects (`security.istio.io/v1`, `v1beta1`) as checked, frozen dataclasses.

`parse_istio_document(doc)` is what `api.manifests` calls for every `security.istio.io/*`
document: it checks the object the way Istio's admission webhook does
(`pkg/config/validation/validation.go`, `pkg/config/security/security.go`, reference
istio-authz-semantics §17) and returns an `AuthorizationPolicy`, `RequestAuthentication` or
`PeerAuthentication`, or raises one `ManifestError` naming file, line, field, what was
expected and what was found.

The dataclasses hold what the user wrote, normalised but not interpreted: trust-domain alias
expansion, TCP translation, selector matching and every other semantic step happen in
`netstrata.mesh`. Absent and empty lists are both `()`, because Istio's protobuf model cannot
tell them apart either (the one place the webhook does, `from: []` / `to: []`, is checked here
before conversion). The pydantic schema lives in `_istio_schema` and is imported on first use,
so `mesh/` can import these types without loading pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from netstrata.api.types import SourceRef

if TYPE_CHECKING:
    from netstrata.api._yaml import Located

Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]
MTLSMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]

API_GROUP: Final = "security.istio.io"
API_VERSIONS: Final = ("security.istio.io/v1", "security.istio.io/v1beta1")
KINDS: Final = ("AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication")
DRY_RUN_ANNOTATION: Final = "istio.io/dry-run"

# Go's strconv.ParseBool, which Istio uses for the dry-run annotation.
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool | None:
    """Go `strconv.ParseBool`: True/False, or None when the text is not a Go boolean."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return None


@dataclass(frozen=True, slots=True)
class IstioMeta:
    """The `metadata` fields the mesh layer reads."""

    name: str
    namespace: str
    """`default` when the manifest names none (as `kubectl apply` does)."""
    annotations: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    creation_timestamp: str | None = None
    """RFC 3339 text; the oldest PeerAuthentication of a scope wins, input order breaks ties."""
    source: SourceRef = field(default_factory=SourceRef)

    def annotation(self, key: str) -> str | None:
        for k, v in self.annotations:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True)
class WorkloadSelector:
    """`selector.matchLabels`; `()` selects every workload (a webhook warning, not an error)."""

    match_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TargetRef:
    """One `targetRef` / `targetRefs[]` entry (gateways, waypoints, Services via waypoints)."""

    kind: str
    name: str
    group: str = ""
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class Source:
    """`rules[].from[].source`: every set field must match (AND); each has a `not` twin."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()
    trust_domains: tuple[str, ...] = ()
    not_trust_domains: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    """`rules[].to[].operation`: fields ANDed, values within one field ORed."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    """One `rules[].when[]` entry; `key` is checked against Istio's attribute list."""

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One `rules[]` entry: any `from` AND any `to` AND every `when`; `Rule()` matches all."""

    from_: tuple[Source, ...] = ()
    to: tuple[Operation, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    meta: IstioMeta
    action: Action = "ALLOW"
    rules: tuple[Rule, ...] = ()
    """`()` matches nothing (ALLOW: allow-nothing; AUDIT: never audits)."""
    selector: WorkloadSelector | None = None
    target_refs: tuple[TargetRef, ...] = ()
    """`targetRefs`, or the legacy single `targetRef` as a one-element tuple."""
    provider: str | None = None
    """`provider.name` (CUSTOM only)."""

    @property
    def dry_run(self) -> bool:
        """`istio.io/dry-run` parsed as a Go bool; anything else is enforced, as istiod does."""
        value = self.meta.annotation(DRY_RUN_ANNOTATION)
        return bool(value is not None and parse_go_bool(value))

    @property
    def kind(self) -> str:
        return "AuthorizationPolicy"


@dataclass(frozen=True, slots=True)
class JWTHeader:
    """`fromHeaders[]`: the header name and an optional value prefix such as `Bearer `."""

    name: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class ClaimToHeader:
    header: str
    claim: str
    """Claim name; nested claims are written with `.`."""


@dataclass(frozen=True, slots=True)
class JWTRule:
    """One `jwtRules[]` entry of a RequestAuthentication."""

    issuer: str = ""
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""
    jwks: str = ""
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    space_delimited_claims: tuple[str, ...] = ()
    timeout_s: float | None = None

    @property
    def has_custom_locations(self) -> bool:
        return bool(self.from_headers or self.from_params or self.from_cookies)


@dataclass(frozen=True, slots=True)
class RequestAuthentication:
    meta: IstioMeta
    jwt_rules: tuple[JWTRule, ...] = ()
    selector: WorkloadSelector | None = None
    target_refs: tuple[TargetRef, ...] = ()

    @property
    def kind(self) -> str:
        return "RequestAuthentication"


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    meta: IstioMeta
    mode: MTLSMode = "UNSET"
    """`mtls.mode`; an absent `mtls` is UNSET (inherit)."""
    selector: WorkloadSelector | None = None
    port_level_mtls: tuple[tuple[int, MTLSMode], ...] = ()
    """`portLevelMtls` by workload (target) port, sorted by port."""

    @property
    def kind(self) -> str:
        return "PeerAuthentication"


IstioObject = AuthorizationPolicy | RequestAuthentication | PeerAuthentication


def parse_istio_document(doc: Located) -> IstioObject:
    """Check one `security.istio.io/*` document and convert it.

    Args:
        doc: the document with its YAML marks; `doc.data` is the whole object.

    Raises:
        ManifestError: every problem of the document, located (file, line, field path).
    """
    from netstrata.api import _istio_schema

    return _istio_schema.parse(doc)


__all__ = [
    "API_VERSIONS",
    "DRY_RUN_ANNOTATION",
    "KINDS",
    "Action",
    "AuthorizationPolicy",
    "ClaimToHeader",
    "Condition",
    "IstioMeta",
    "IstioObject",
    "JWTHeader",
    "JWTRule",
    "MTLSMode",
    "Operation",
    "PeerAuthentication",
    "RequestAuthentication",
    "Rule",
    "Source",
    "TargetRef",
    "WorkloadSelector",
    "parse_go_bool",
    "parse_istio_document",
]
