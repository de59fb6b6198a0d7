"""Schema and webhook checks of `security.istio.io` objects, then conversion to `api.istio`.

Three layers, in the order Istio applies them:

1. Shape (pydantic, `extra="forbid"`, strict): the CRD's OpenAPI schema. A number where Istio
   wants a string (`ports: [8080]`) is an error, as the API server would make it.
2. The admission webhook (`pkg/config/validation/validation.go` `ValidateAuthorizationPolicy`,
   `ValidateRequestAuthentication`, `ValidatePeerAuthentication`, `validateMetadata`, and
   `pkg/config/security/security.go`): cross-field rules such as "DENY needs `rules`",
   "`from: []` is not allowed", the `when` key list, path templates, IP and port syntax.
   Webhook *warnings* (an empty `matchLabels`, a DENY that only uses HTTP attributes) are not
   errors and are not reported here.
3. Conversion to the frozen dataclasses of `api.istio`.

Every problem of a document is collected, located with the YAML marks and raised together.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from netstrata.api import istio as t
from netstrata.api._problems import Collector, Issue
from netstrata.api._schema_base import Model, ObjectMeta
from netstrata.api._yaml import FieldPath, Located, brief
from netstrata.api.types import SourceRef
from netstrata.errors import ManifestError

# ---------------------------------------------------------------- shape (CRD schema)

StrList = list[str]


class SelectorSpec(Model):
    match_labels: dict[str, str] | None = Field(None, alias="matchLabels")


class TargetRefSpec(Model):
    group: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class SourceSpec(Model):
    principals: StrList | None = None
    not_principals: StrList | None = Field(None, alias="notPrincipals")
    request_principals: StrList | None = Field(None, alias="requestPrincipals")
    not_request_principals: StrList | None = Field(None, alias="notRequestPrincipals")
    namespaces: StrList | None = None
    not_namespaces: StrList | None = Field(None, alias="notNamespaces")
    service_accounts: StrList | None = Field(None, alias="serviceAccounts")
    not_service_accounts: StrList | None = Field(None, alias="notServiceAccounts")
    trust_domains: StrList | None = Field(None, alias="trustDomains")
    not_trust_domains: StrList | None = Field(None, alias="notTrustDomains")
    ip_blocks: StrList | None = Field(None, alias="ipBlocks")
    not_ip_blocks: StrList | None = Field(None, alias="notIpBlocks")
    remote_ip_blocks: StrList | None = Field(None, alias="remoteIpBlocks")
    not_remote_ip_blocks: StrList | None = Field(None, alias="notRemoteIpBlocks")


class FromSpec(Model):
    source: SourceSpec | None = None


class OperationSpec(Model):
    hosts: StrList | None = None
    not_hosts: StrList | None = Field(None, alias="notHosts")
    ports: StrList | None = None
    not_ports: StrList | None = Field(None, alias="notPorts")
    methods: StrList | None = None
    not_methods: StrList | None = Field(None, alias="notMethods")
    paths: StrList | None = None
    not_paths: StrList | None = Field(None, alias="notPaths")


class ToSpec(Model):
    operation: OperationSpec | None = None


class ConditionSpec(Model):
    key: str | None = None
    values: StrList | None = None
    not_values: StrList | None = Field(None, alias="notValues")


class RuleSpec(Model):
    from_: list[FromSpec | None] | None = Field(None, alias="from")
    to: list[ToSpec | None] | None = None
    when: list[ConditionSpec | None] | None = None


class ProviderSpec(Model):
    name: str | None = None


class AuthorizationPolicySpec(Model):
    selector: SelectorSpec | None = None
    target_ref: TargetRefSpec | None = Field(None, alias="targetRef")
    target_refs: list[TargetRefSpec] | None = Field(None, alias="targetRefs")
    rules: list[RuleSpec | None] | None = None
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] | None = None
    provider: ProviderSpec | None = None


class JWTHeaderSpec(Model):
    name: str | None = None
    prefix: str | None = None


class ClaimToHeaderSpec(Model):
    header: str | None = None
    claim: str | None = None


class JWTRuleSpec(Model):
    issuer: str | None = None
    audiences: StrList | None = None
    jwks_uri: str | None = Field(None, alias="jwksUri")
    jwks: str | None = None
    from_headers: list[JWTHeaderSpec | None] | None = Field(None, alias="fromHeaders")
    from_params: StrList | None = Field(None, alias="fromParams")
    from_cookies: StrList | None = Field(None, alias="fromCookies")
    forward_original_token: bool | None = Field(None, alias="forwardOriginalToken")
    output_payload_to_header: str | None = Field(None, alias="outputPayloadToHeader")
    output_claim_to_headers: list[ClaimToHeaderSpec | None] | None = Field(
        None, alias="outputClaimToHeaders")
    space_delimited_claims: StrList | None = Field(None, alias="spaceDelimitedClaims")
    timeout: str | None = None


class RequestAuthenticationSpec(Model):
    selector: SelectorSpec | None = None
    target_ref: TargetRefSpec | None = Field(None, alias="targetRef")
    target_refs: list[TargetRefSpec] | None = Field(None, alias="targetRefs")
    jwt_rules: list[JWTRuleSpec | None] | None = Field(None, alias="jwtRules")


MTLSModeSpec = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MTLSSpec(Model):
    mode: MTLSModeSpec | None = None


class PeerAuthenticationSpec(Model):
    selector: SelectorSpec | None = None
    mtls: MTLSSpec | None = None
    port_level_mtls: dict[int | str, MTLSSpec | None] | None = Field(None, alias="portLevelMtls")


class _Doc(Model):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    status: Any = None


class AuthorizationPolicyDoc(_Doc):
    spec: AuthorizationPolicySpec | None = None


class RequestAuthenticationDoc(_Doc):
    spec: RequestAuthenticationSpec | None = None


class PeerAuthenticationDoc(_Doc):
    spec: PeerAuthenticationSpec | None = None


_MODELS: Final[dict[str, type[_Doc]]] = {
    "AuthorizationPolicy": AuthorizationPolicyDoc,
    "RequestAuthentication": RequestAuthenticationDoc,
    "PeerAuthentication": PeerAuthenticationDoc,
}

# ---------------------------------------------------------------- webhook checks

Report = Callable[[FieldPath, str, str], None]

_SOURCE_FIELDS: Final = tuple(
    (name, f.alias or name) for name, f in SourceSpec.model_fields.items())
_OPERATION_FIELDS: Final = tuple(
    (name, f.alias or name) for name, f in OperationSpec.model_fields.items())
_IDENTITY_SOURCE_FIELDS: Final = frozenset({
    "principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts",
    "notServiceAccounts", "trustDomains", "notTrustDomains", "requestPrincipals",
    "notRequestPrincipals"})
"""Source fields CUSTOM rules may not use (validation.go: "not supported with CUSTOM action")."""
_CUSTOM_FORBIDDEN_KEYS: Final = frozenset({
    "source.namespace", "source.serviceAccount", "source.trustDomain", "source.principal"})

_ALLOWED_TARGETS: Final = (("core", "Service"), ("networking.istio.io", "ServiceEntry"),
                           ("gateway.networking.k8s.io", "Gateway"),
                           ("gateway.networking.k8s.io", "GatewayClass"))
_MATCH_ONE: Final = "{*}"
_MATCH_ANY: Final = "{**}"
_VALID_LITERAL: Final = re.compile(r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+")
_STRICT_HEADER_NAME: Final = re.compile(r"[a-zA-Z0-9\-]+")
_DURATION: Final = re.compile(r"(\d+)(\.\d{1,9})?s")

# Attribute keys of `when` (security.go ValidateAttribute). Value is the value checker, or a
# string: the reason the key is rejected.
_EXACT_KEYS: Final[dict[str, str]] = {
    "source.ip": "ip", "remote.ip": "ip", "destination.ip": "ip", "destination.port": "port",
    "source.namespace": "", "source.principal": "", "source.trustDomain": "wildcard",
    "source.serviceAccount": "serviceaccount", "request.auth.principal": "",
    "request.auth.audiences": "", "request.auth.presenter": "", "connection.sni": "",
}
_MAP_KEY_PREFIXES: Final = ("request.headers", "request.auth.claims",
                            "experimental.envoy.filters.")
_REJECTED_KEYS: Final[dict[str, str]] = {
    "destination.namespace": "replaced by metadata.namespace",
    "destination.name": "a v1alpha1 attribute, no longer supported",
    "destination.user": "a v1alpha1 attribute, no longer supported",
}


def _check_empty(report: Report, path: FieldPath, values: Sequence[str]) -> None:
    for i, v in enumerate(values):
        if v == "":
            report((*path, i), "a non-empty string", '""')


def _check_wildcards(report: Report, path: FieldPath, values: Sequence[str]) -> None:
    """security.go CheckWildcardValues: one `*`, only at the start or end."""
    for i, v in enumerate(values):
        if v == "":
            report((*path, i), "a non-empty string", '""')
        elif v.count("*") > 1 or (
                "*" in v and v != "*" and not v.startswith("*") and not v.endswith("*")):
            report((*path, i), "exact, prefix (x*), suffix (*x) or presence (*): one '*' "
                   "at the start or end", brief(v))


def _check_trust_domains(report: Report, path: FieldPath, values: Sequence[str]) -> None:
    _check_wildcards(report, path, values)
    for i, v in enumerate(values):
        if "/" in v:
            report((*path, i), "a trust domain without '/'", brief(v))


def _check_service_accounts(report: Report, path: FieldPath, values: Sequence[str]) -> None:
    """security.go CheckServiceAccount: `sa` or `ns/sa`, no wildcard, at most 16 values."""
    if len(values) > 16:
        report(path, "at most 16 service accounts", f"{len(values)}")
    for i, v in enumerate(values):
        ns, slash, sa = v.partition("/")
        ok = (v != "" and "*" not in v and v.count("/") <= 1 and len(v) <= 320
              and (not slash or (ns != "" and sa != "")))
        if not ok:
            report((*path, i), "'serviceAccount' or 'namespace/serviceAccount' (no wildcard, "
                   "at most 320 characters)", brief(v))


def _is_ip_or_cidr(text: str) -> bool:
    """Go netip.ParseAddr / ParsePrefix: decimal prefix length, no netmask, no zone in a CIDR."""
    try:
        if "/" in text:
            addr, _, bits = text.partition("/")
            if "%" in addr or not bits.isdigit() or (len(bits) > 1 and bits[0] == "0"):
                return False
            ip = ipaddress.ip_address(addr)
            return int(bits) <= ip.max_prefixlen
        ipaddress.ip_address(text.split("%", 1)[0] if ":" in text else text)
        return True
    except ValueError:
        return False


def _check_ips(report: Report, path: FieldPath, values: Sequence[str]) -> None:
    for i, v in enumerate(values):
        if v == "":
            report((*path, i), "an IP address or CIDR", '""')
        elif not _is_ip_or_cidr(v):
            report((*path, i), "an IP address (10.1.2.3) or CIDR (10.1.0.0/16)", brief(v))


def _check_ports(report: Report, path: FieldPath, values: Sequence[str]) -> None:
    for i, v in enumerate(values):
        if not (v.isdigit() and v.isascii() and int(v) <= 65535):
            report((*path, i), "a decimal port 0-65535 (no ranges, no wildcards)", brief(v))


def _check_path_templates(report: Report, path: FieldPath, values: Sequence[str]) -> None:
    """security.go CheckValidPathTemplate: `{*}`/`{**}` segments, `{**}` last, pchar literals."""
    for i, v in enumerate(values):
        has_template = _MATCH_ONE in v or _MATCH_ANY in v
        seen_any = False
        for glob in v.strip("/").split("/"):
            if glob in (_MATCH_ONE, _MATCH_ANY) and not seen_any:
                seen_any = glob == _MATCH_ANY
                continue
            if glob in (_MATCH_ONE, _MATCH_ANY):
                report((*path, i), "a path template whose {**} is the last operator", brief(v))
                break
            if "{" in glob or "}" in glob:
                report((*path, i), "a path whose only '{'/'}' are whole {*} or {**} segments",
                       brief(v))
                break
            if has_template and not _VALID_LITERAL.fullmatch(glob):
                report((*path, i), "template literals made of RFC 3986 pchar characters",
                       brief(v))
                break


def _valid_map_key(key: str) -> bool:
    """security.go validateMapKey: `name[inner]` with a non-empty inner part."""
    open_ = key.find("[")
    return key.endswith("]") and 0 < open_ < len(key) - 2


def check_condition_key(key: str) -> tuple[str, str] | None:
    """(expected, found) when `key` is not a `when` key Istio accepts, else None."""
    if key in _EXACT_KEYS:
        return None
    if key in _REJECTED_KEYS:
        return "a supported attribute key", f'"{key}" ({_REJECTED_KEYS[key]})'
    if key.startswith("destination.labels"):
        return "a supported attribute key", f'"{key}" (replaced by the workload selector)'
    for prefix in _MAP_KEY_PREFIXES:
        if key.startswith(prefix):
            if _valid_map_key(key):
                return None
            return "a key of the form name[inner], e.g. request.headers[x-token]", brief(key)
    return ("a known attribute: request.headers[..], source.ip, remote.ip, source.namespace, "
            "source.principal, source.serviceAccount, source.trustDomain, "
            "request.auth.principal/audiences/presenter/claims[..], destination.ip, "
            "destination.port, connection.sni, experimental.envoy.filters.*"), brief(key)


def _check_condition_values(report: Report, path: FieldPath, key: str,
                            values: Sequence[str]) -> None:
    _check_empty(report, path, values)
    kind = _EXACT_KEYS.get(key, "")
    if kind == "ip":
        _check_ips(report, path, values)
    elif kind == "port":
        _check_ports(report, path, values)
    elif kind == "wildcard":
        _check_wildcards(report, path, values)
    elif kind == "serviceaccount":
        _check_service_accounts(report, path, values)


def _check_selector_types(report: Report, spec: Any) -> None:
    target_ref = getattr(spec, "target_ref", None)
    target_refs = getattr(spec, "target_refs", None)
    set_count = sum(1 for x in (spec.selector, target_ref, target_refs) if x)
    if set_count > 1:
        report(("spec",), "at most one of selector, targetRef, targetRefs",
               "more than one of them")
    if spec.selector is not None:
        for k, v in (spec.selector.match_labels or {}).items():
            label_path: FieldPath = ("spec", "selector", "matchLabels", k)
            if k == "":
                report(label_path, "a non-empty label key", '""')
            if "*" in k or "*" in v:
                report(label_path, "labels without wildcards", brief(f"{k}={v}"))
    refs: list[tuple[FieldPath, TargetRefSpec]] = (
        [(("spec", "targetRef"), target_ref)] if target_ref else [])
    refs += [(("spec", "targetRefs", i), r) for i, r in enumerate(target_refs or [])]
    for where, ref in refs:
        if not ref.name:
            report((*where, "name"), "a targetRef name", "nothing")
        if ref.namespace:
            report((*where, "namespace"), "no namespace (cross-namespace references are not "
                   "supported)", brief(ref.namespace))
        group = ref.group or "core"
        if (group, ref.kind) not in _ALLOWED_TARGETS:
            report(where, "a targetRef to a Service, ServiceEntry, Gateway "
                   "(gateway.networking.k8s.io) or GatewayClass",
                   brief(f"{ref.group or ''}/{ref.kind or ''}"))


def _check_source(report: Report, path: FieldPath, src: SourceSpec, custom: bool) -> None:
    values = {alias: getattr(src, name) or [] for name, alias in _SOURCE_FIELDS}
    if not any(values.values()):
        report(path, "a source with at least one field", "an empty source")
    identity = values["principals"] + values["notPrincipals"] + values["namespaces"] + \
        values["notNamespaces"]
    if identity and (values["serviceAccounts"] or values["notServiceAccounts"]):
        report(path, "serviceAccounts without principals or namespaces", "both")
    for alias, vals in values.items():
        where = (*path, alias)
        if custom and vals and alias in _IDENTITY_SOURCE_FIELDS:
            report(where, "no identity fields with action CUSTOM (ext-authz decides before "
                   "identities are checked)", alias)
        if "IpBlocks" in alias or alias == "ipBlocks":
            _check_ips(report, where, vals)
        elif "ServiceAccounts" in alias or alias == "serviceAccounts":
            _check_service_accounts(report, where, vals)
        elif "TrustDomains" in alias or alias == "trustDomains":
            _check_trust_domains(report, where, vals)
        else:
            _check_empty(report, where, vals)


def _check_operation(report: Report, path: FieldPath, op: OperationSpec) -> None:
    values = {alias: getattr(op, name) or [] for name, alias in _OPERATION_FIELDS}
    if not any(values.values()):
        report(path, "an operation with at least one field", "an empty operation")
    for alias, vals in values.items():
        where = (*path, alias)
        _check_empty(report, where, vals)
        if alias in ("ports", "notPorts"):
            _check_ports(report, where, vals)
        if alias in ("paths", "notPaths"):
            _check_path_templates(report, where, vals)


def _check_when(report: Report, path: FieldPath, cond: ConditionSpec, custom: bool) -> None:
    key = cond.key or ""
    if not key:
        report((*path, "key"), "a non-empty key", "nothing" if cond.key is None else '""')
        return
    if not cond.values and not cond.not_values:
        report(path, f"values or notValues for key {key}", "neither")
        return
    bad = check_condition_key(key)
    if bad is not None:
        report((*path, "key"), *bad)
        return
    if custom and (key in _CUSTOM_FORBIDDEN_KEYS or key.startswith("request.auth.")):
        report((*path, "key"), "no identity conditions with action CUSTOM", brief(key))
    _check_condition_values(report, (*path, "values"), key, cond.values or [])
    _check_condition_values(report, (*path, "notValues"), key, cond.not_values or [])


def _check_rule(report: Report, path: FieldPath, rule: RuleSpec, custom: bool) -> None:
    if rule.from_ is not None and not rule.from_:
        report((*path, "from"), "a non-empty list (omit `from` to match any source)", "[]")
    for i, frm in enumerate(rule.from_ or []):
        if frm is None or frm.source is None:
            report((*path, "from", i), "a from entry with a source", "no source")
        else:
            _check_source(report, (*path, "from", i, "source"), frm.source, custom)
    if rule.to is not None and not rule.to:
        report((*path, "to"), "a non-empty list (omit `to` to match any operation)", "[]")
    for i, to in enumerate(rule.to or []):
        if to is None or to.operation is None:
            report((*path, "to", i), "a to entry with an operation", "no operation")
        else:
            _check_operation(report, (*path, "to", i, "operation"), to.operation)
    for i, cond in enumerate(rule.when or []):
        if cond is None:
            report((*path, "when", i), "a condition", "null")
        else:
            _check_when(report, (*path, "when", i), cond, custom)


def _check_dry_run(report: Report, doc: _Doc, action: str | None) -> None:
    """validation.go checkDryRunAnnotation: AuthorizationPolicy ALLOW/DENY only."""
    annotations = doc.metadata.annotations or {}
    if t.DRY_RUN_ANNOTATION not in annotations:
        return
    where = ("metadata", "annotations", t.DRY_RUN_ANNOTATION)
    value = annotations[t.DRY_RUN_ANNOTATION]
    if doc.kind != "AuthorizationPolicy":
        report(where, "no istio.io/dry-run annotation (AuthorizationPolicy only)", brief(value))
    elif action not in ("ALLOW", "DENY"):
        report(where, "istio.io/dry-run only on ALLOW or DENY policies", f"action {action}")
    # A value that is not a Go boolean is accepted: istiod logs it and enforces the policy
    # (builder.go isDryRun; reference §2.4). The webhook would refuse it, but the reference's
    # validation list (§17) does not, and the evaluator must behave like istiod either way.


def _check_authorization_policy(report: Report, doc: AuthorizationPolicyDoc) -> None:
    spec = doc.spec or AuthorizationPolicySpec.model_validate({})
    action = spec.action or "ALLOW"
    _check_dry_run(report, doc, action)
    _check_selector_types(report, spec)
    custom = action == "CUSTOM"
    if custom and spec.rules is None:
        report(("spec", "rules"), "rules with action CUSTOM (add `rules: [{}]` to call the "
               "provider for every request)", "nothing")
    if custom and spec.rules is not None and not (spec.provider and spec.provider.name):
        report(("spec", "provider", "name"), "a provider name with action CUSTOM", "nothing")
    if spec.provider is not None and not custom:
        report(("spec", "provider"), "no provider unless action is CUSTOM", f"action {action}")
    if action == "DENY" and not spec.rules:
        report(("spec", "rules"), "rules with action DENY (add `rules: [{}]` to deny every "
               "request)", "nothing" if spec.rules is None else "[]")
    for i, rule in enumerate(spec.rules or []):
        if rule is None:
            report(("spec", "rules", i), "a rule (use {} to match everything)", "null")
        else:
            _check_rule(report, ("spec", "rules", i), rule, custom)


def _check_jwks(report: Report, path: FieldPath, text: str) -> None:
    try:
        data = json.loads(text)
    except ValueError:
        report(path, "a JSON Web Key Set", "text that is not JSON")
        return
    keys = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(keys, list) or not all(
            isinstance(k, dict) and isinstance(k.get("kty"), str) for k in keys):
        report(path, "a JSON Web Key Set: {\"keys\": [{\"kty\": ...}, ...]}", brief(text))


def _check_jwt_rule(report: Report, path: FieldPath, rule: JWTRuleSpec) -> None:
    _check_empty(report, (*path, "audiences"), rule.audiences or [])
    if not rule.issuer and not rule.jwks_uri:
        report((*path, "issuer"), "an issuer or a jwksUri", "neither")
    if rule.jwks_uri:
        parts = urlsplit(rule.jwks_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            report((*path, "jwksUri"), "an http:// or https:// URI", brief(rule.jwks_uri))
    if rule.jwks:
        _check_jwks(report, (*path, "jwks"), rule.jwks)
    for i, hdr in enumerate(rule.from_headers or []):
        if hdr is None or not hdr.name:
            report((*path, "fromHeaders", i, "name"), "a header name", "nothing")
    _check_empty(report, (*path, "fromParams"), rule.from_params or [])
    _check_empty(report, (*path, "fromCookies"), rule.from_cookies or [])
    for i, c2h in enumerate(rule.output_claim_to_headers or []):
        where = (*path, "outputClaimToHeaders", i)
        if c2h is None or not c2h.claim or not c2h.header:
            report(where, "a header and a claim", "an incomplete entry")
        elif not _STRICT_HEADER_NAME.fullmatch(c2h.header):
            report((*where, "header"), "a header name of letters, digits and '-'",
                   brief(c2h.header))
    if rule.timeout is not None and not _valid_duration(rule.timeout):
        report((*path, "timeout"), "a duration of at least 1ms, e.g. 5s", brief(rule.timeout))


def _valid_duration(text: str) -> bool:
    m = _DURATION.fullmatch(text)
    return bool(m) and float(text[:-1]) >= 0.001


def _check_request_authentication(report: Report, doc: RequestAuthenticationDoc) -> None:
    _check_dry_run(report, doc, None)
    spec = doc.spec or RequestAuthenticationSpec.model_validate({})
    _check_selector_types(report, spec)
    for i, rule in enumerate(spec.jwt_rules or []):
        if rule is not None:
            _check_jwt_rule(report, ("spec", "jwtRules", i), rule)


def _port_key(key: int | str) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.isdigit() and key.isascii():
        return int(key)
    return None


def _check_peer_authentication(report: Report, doc: PeerAuthenticationDoc) -> None:
    _check_dry_run(report, doc, None)
    spec = doc.spec or PeerAuthenticationSpec.model_validate({})
    empty_selector = spec.selector is None or not spec.selector.match_labels
    if spec.port_level_mtls is not None:
        if empty_selector and spec.port_level_mtls:
            report(("spec", "portLevelMtls"), "portLevelMtls only with a workload selector "
                   "(mesh- and namespace-wide policies cannot have it)", "no selector")
        if not spec.port_level_mtls:
            report(("spec", "portLevelMtls"), "at least one port when portLevelMtls is given",
                   "{}")
        for key in spec.port_level_mtls:
            port = _port_key(key)
            if port is None or not 1 <= port <= 65535:
                report(("spec", "portLevelMtls", key), "a port 1-65535", brief(key))
    _check_selector_types(report, spec)


# ---------------------------------------------------------------- conversion


def _tup(values: Iterable[str] | None) -> tuple[str, ...]:
    return tuple(values or ())


def _meta(doc: _Doc, source: SourceRef) -> t.IstioMeta:
    md = doc.metadata
    ts = md.creation_timestamp
    return t.IstioMeta(
        name=md.name, namespace=md.namespace or "default",
        annotations=tuple(sorted((md.annotations or {}).items())),
        labels=tuple(sorted((md.labels or {}).items())),
        creation_timestamp=str(ts) if ts is not None else None, source=source)


def _selector(spec: SelectorSpec | None) -> t.WorkloadSelector | None:
    if spec is None:
        return None
    return t.WorkloadSelector(tuple(sorted((spec.match_labels or {}).items())))


def _target_refs(spec: Any) -> tuple[t.TargetRef, ...]:
    refs = spec.target_refs or ([spec.target_ref] if spec.target_ref else [])
    return tuple(t.TargetRef(kind=r.kind or "", name=r.name or "", group=r.group or "",
                             namespace=r.namespace or "") for r in refs)


def _source(src: SourceSpec) -> t.Source:
    return t.Source(**{name: _tup(getattr(src, name)) for name, _ in _SOURCE_FIELDS})


def _operation(op: OperationSpec) -> t.Operation:
    return t.Operation(**{name: _tup(getattr(op, name)) for name, _ in _OPERATION_FIELDS})


def _rule(rule: RuleSpec) -> t.Rule:
    return t.Rule(
        from_=tuple(_source(f.source) for f in rule.from_ or [] if f and f.source),
        to=tuple(_operation(o.operation) for o in rule.to or [] if o and o.operation),
        when=tuple(t.Condition(c.key or "", _tup(c.values), _tup(c.not_values))
                   for c in rule.when or [] if c))


def _authorization_policy(doc: AuthorizationPolicyDoc, source: SourceRef) -> t.AuthorizationPolicy:
    spec = doc.spec or AuthorizationPolicySpec.model_validate({})
    return t.AuthorizationPolicy(
        meta=_meta(doc, source), action=spec.action or "ALLOW",
        rules=tuple(_rule(r) for r in spec.rules or [] if r is not None),
        selector=_selector(spec.selector), target_refs=_target_refs(spec),
        provider=spec.provider.name if spec.provider and spec.provider.name else None)


def _jwt_rule(rule: JWTRuleSpec) -> t.JWTRule:
    return t.JWTRule(
        issuer=rule.issuer or "", audiences=_tup(rule.audiences), jwks_uri=rule.jwks_uri or "",
        jwks=rule.jwks or "",
        from_headers=tuple(t.JWTHeader(h.name or "", h.prefix or "")
                           for h in rule.from_headers or [] if h),
        from_params=_tup(rule.from_params), from_cookies=_tup(rule.from_cookies),
        forward_original_token=bool(rule.forward_original_token),
        output_payload_to_header=rule.output_payload_to_header or "",
        output_claim_to_headers=tuple(t.ClaimToHeader(c.header or "", c.claim or "")
                                      for c in rule.output_claim_to_headers or [] if c),
        space_delimited_claims=_tup(rule.space_delimited_claims),
        timeout_s=float(rule.timeout[:-1]) if rule.timeout else None)


def _request_authentication(doc: RequestAuthenticationDoc,
                            source: SourceRef) -> t.RequestAuthentication:
    spec = doc.spec or RequestAuthenticationSpec.model_validate({})
    return t.RequestAuthentication(
        meta=_meta(doc, source), jwt_rules=tuple(_jwt_rule(r) for r in spec.jwt_rules or [] if r),
        selector=_selector(spec.selector), target_refs=_target_refs(spec))


def _peer_authentication(doc: PeerAuthenticationDoc, source: SourceRef) -> t.PeerAuthentication:
    spec = doc.spec or PeerAuthenticationSpec.model_validate({})
    ports: list[tuple[int, t.MTLSMode]] = []
    for key, mtls in (spec.port_level_mtls or {}).items():
        port = _port_key(key)
        if port is not None:
            ports.append((port, (mtls.mode if mtls and mtls.mode else "UNSET")))
    return t.PeerAuthentication(
        meta=_meta(doc, source), mode=spec.mtls.mode if spec.mtls and spec.mtls.mode else "UNSET",
        selector=_selector(spec.selector), port_level_mtls=tuple(sorted(ports)))


_CHECKS: Final[dict[str, Callable[[Report, Any], None]]] = {
    "AuthorizationPolicy": _check_authorization_policy,
    "RequestAuthentication": _check_request_authentication,
    "PeerAuthentication": _check_peer_authentication,
}
_CONVERT: Final[dict[str, Callable[[Any, SourceRef], t.IstioObject]]] = {
    "AuthorizationPolicy": _authorization_policy,
    "RequestAuthentication": _request_authentication,
    "PeerAuthentication": _peer_authentication,
}


def parse(doc: Located) -> t.IstioObject:
    """Check and convert one document (see `api.istio.parse_istio_document`)."""
    col = Collector(doc)
    data = doc.data
    if not isinstance(data, dict):
        col.add((), "an Istio security object (a mapping)", brief(data))
        raise ManifestError(col.problems)
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if api_version not in t.API_VERSIONS:
        col.add(("apiVersion",), " or ".join(t.API_VERSIONS), brief(api_version))
    model: type[BaseModel] | None = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        col.add(("kind",), "one of " + ", ".join(t.KINDS), brief(kind))
    if col.problems or model is None or not isinstance(kind, str):
        raise ManifestError(col.problems)
    checked = col.validate(model, data)
    if checked is None:
        raise ManifestError(col.problems)
    _CHECKS[kind](lambda path, exp, found: col.extend([Issue(path, exp, found)]), checked)
    if col.problems:
        raise ManifestError(col.problems)
    return _CONVERT[kind](checked, SourceRef(doc.source, col.line(())))


__all__ = ["check_condition_key", "parse"]
