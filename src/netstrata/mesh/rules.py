"""AuthorizationPolicy rules compiled into predicates, with Istio's HTTP/TCP translation.

A rule matches iff any `from` source matches, any `to` operation matches and every `when`
condition holds; inside one source or operation every field must hold; a field holds iff the
attribute matches at least one of its values and none of its `not` values (reference §4).
Attribute absent ⇒ a positive match fails and a negative one holds. How each field and key is
matched is Istio's `pilot/pkg/security/authz/model/generator.go`, value by value.

On a TCP filter chain HTTP-only fields cannot be evaluated (§7, `model.go` `checkError`):

- ALLOW: a rule that mentions one (values or `not` values) is dropped entirely;
- DENY, AUDIT, CUSTOM: only that field is dropped, widening the rule (a DENY of `methods`
  alone then matches every connection).

`compile_policy` builds the `CompiledRule`s of one policy for one chain kind; names are
`ns[<ns>]-policy[<name>]-rule[<i>]` and a policy without rules becomes one never-matching rule,
as Istio's `rbacPolicyMatchNever` (its name ends in `rule[0]`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from netstrata.api.istio import AuthorizationPolicy, Condition, Operation, Rule, Source
from netstrata.mesh.attributes import SPIFFE_PREFIX, Attributes
from netstrata.mesh.matching import (
    StringMatcher,
    header_matcher,
    host_matcher,
    ip_matcher,
    path_matcher,
    string_matcher,
)
from netstrata.mesh.trustdomain import TrustDomainBundle

Predicate = Callable[[Attributes], bool]

HTTP_ONLY_KEYS: Final = ("request.headers", "request.auth.")
HTTP_ONLY_FIELDS: Final = frozenset({"requestPrincipals", "hosts", "methods", "paths"})

_MATCH_ANY: Final = StringMatcher("regex", ".+")


def rule_name(namespace: str, name: str, index: int) -> str:
    return f"ns[{namespace}]-policy[{name}]-rule[{index}]"


@dataclass(frozen=True, slots=True)
class Check:
    """One field (or `when` key) of a rule: any value AND no `not` value."""

    field: str
    http_only: bool
    values: tuple[Predicate, ...] = ()
    not_values: tuple[Predicate, ...] = ()
    raw_values: tuple[str, ...] = ()
    """The policy's positive values as written (`mesh.compiled` indexes rules by `paths`)."""

    def holds(self, attrs: Attributes) -> bool:
        if self.values and not any(p(attrs) for p in self.values):
            return False
        return not any(p(attrs) for p in self.not_values)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule of one policy, ready to match one chain kind (HTTP or TCP)."""

    name: str
    policy: AuthorizationPolicy
    sources: tuple[tuple[Check, ...], ...] = ((),)
    """Alternatives (any); each is a conjunction. `((),)` matches every peer."""
    operations: tuple[tuple[Check, ...], ...] = ((),)
    conditions: tuple[Check, ...] = ()
    never: bool = False
    """A policy without rules, or an ALLOW rule dropped on a TCP chain."""
    note: str | None = None

    def matches(self, attrs: Attributes) -> bool:
        if self.never:
            return False
        return (all(c.holds(attrs) for c in self.conditions)
                and any(all(c.holds(attrs) for c in alt) for alt in self.sources)
                and any(all(c.holds(attrs) for c in alt) for alt in self.operations))

    def first_failure(self, attrs: Attributes) -> str:
        """The first reason this rule does not match, for explanations."""
        if self.never:
            return self.note or "matches nothing"
        for c in self.conditions:
            if not c.holds(attrs):
                return f"when {c.field} does not hold"
        for label, alts in (("from", self.sources), ("to", self.operations)):
            if not any(all(c.holds(attrs) for c in alt) for alt in alts):
                failed = [next(c.field for c in alt if not c.holds(attrs)) for alt in alts]
                return f"{label}: " + " / ".join(f"{f} does not match" for f in failed)
        return "matches"


# ---------------------------------------------------------------- value predicates


def _on_principal(m: StringMatcher) -> Predicate:
    return lambda a: m.matches(a.principal_uri)


def _principal(value: str) -> Predicate:
    return _on_principal(string_matcher(value, SPIFFE_PREFIX))


def _namespace(value: str) -> Predicate:
    regex = ".*".join(re.escape(p) for p in value.split("*"))
    return _on_principal(StringMatcher("regex", f".*/ns/{regex}/.*"))


def _service_account(policy_ns: str) -> Callable[[str], Predicate]:
    def build(value: str) -> Predicate:
        ns, slash, sa = value.partition("/")
        if not slash:
            ns, sa = policy_ns, value
        regex = f"spiffe://.+/ns/{re.escape(ns)}/(.+/|)sa/{re.escape(sa)}(/.+)?"
        return _on_principal(StringMatcher("regex", regex))
    return build


def _trust_domain(value: str) -> Predicate:
    if value == "*":
        return _on_principal(StringMatcher("prefix", SPIFFE_PREFIX))
    if "*" not in value:
        return _on_principal(StringMatcher("prefix", f"{SPIFFE_PREFIX}{value}/"))
    head, _, tail = value.partition("*")
    regex = f"spiffe://{re.escape(head)}[^/]*{re.escape(tail)}/.*"
    return _on_principal(StringMatcher("regex", regex))


def _source_ip(value: str) -> Predicate:
    m = ip_matcher(value)
    return lambda a: m.matches(a.source_ip)


def _remote_ip(value: str) -> Predicate:
    m = ip_matcher(value)
    return lambda a: m.matches(a.remote_ip)


def _destination_ip(value: str) -> Predicate:
    m = ip_matcher(value)
    return lambda a: m.matches(a.destination_ip)


def _port(value: str) -> Predicate:
    port = int(value)
    return lambda a: a.destination_port == port


def _host(value: str) -> Predicate:
    m = host_matcher(value)
    return lambda a: m.matches(a.header(":authority"))


def _method(value: str) -> Predicate:
    m = header_matcher(value)
    return lambda a: m.matches(a.header(":method"))


def _path(value: str) -> Predicate:
    m = path_matcher(value)
    return lambda a: m.matches(a.path)


def _sni(value: str) -> Predicate:
    m = string_matcher(value)
    return lambda a: m.matches(a.sni)


def _header(name: str) -> Callable[[str], Predicate]:
    def build(value: str) -> Predicate:
        m = header_matcher(value)
        return lambda a: m.matches(a.header(name))
    return build


def _claim_value(payload: Mapping[str, Any] | None, path: Sequence[str]) -> Any:
    node: Any = payload
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _claim(path: Sequence[str]) -> Callable[[str], Predicate]:
    """Istio `MetadataListValueMatcherForJWTClaims`: a string claim, or a list containing a
    matching string; numbers, booleans and objects never match (reference §10)."""
    def build(value: str) -> Predicate:
        m = string_matcher(value)

        def pred(a: Attributes) -> bool:
            claim = _claim_value(a.jwt_payload, path)
            if isinstance(claim, str):
                return m.matches(claim)
            if isinstance(claim, list):
                return any(isinstance(e, str) and m.matches(e) for e in claim)
            return False
        return pred
    return build


def _jwt_string(claim: str, m: StringMatcher) -> Predicate:
    def pred(a: Attributes) -> bool:
        v = a.jwt_payload.get(claim) if a.jwt_payload is not None else None
        return isinstance(v, str) and m.matches(v)
    return pred


def _request_principal(value: str) -> Predicate:
    """generator.go requestPrincipalGenerator: split at the last `/` (issuers may be URLs)."""
    idx = value.rfind("/")
    found = idx >= 0
    iss, sub = (value[:idx], value[idx + 1:]) if found else (value, "")
    if value == "*":
        m_iss, m_sub = _MATCH_ANY, _MATCH_ANY
    elif value.startswith("*"):
        if found:
            m_iss = _MATCH_ANY if iss == "*" else StringMatcher("suffix", iss[1:])
            m_sub = StringMatcher("exact", sub)
        else:
            m_iss, m_sub = _MATCH_ANY, StringMatcher("suffix", value[1:])
    elif value.endswith("*"):
        if found:
            m_iss = StringMatcher("exact", iss)
            m_sub = _MATCH_ANY if sub == "*" else StringMatcher("prefix", sub[:-1])
        else:
            m_iss, m_sub = StringMatcher("prefix", value[:-1]), _MATCH_ANY
    else:
        m_iss, m_sub = StringMatcher("exact", iss), StringMatcher("exact", sub)
    i, s = _jwt_string("iss", m_iss), _jwt_string("sub", m_sub)
    return lambda a: i(a) and s(a)


def _envoy_filter(key: str) -> Callable[[str], Predicate]:
    """`experimental.envoy.filters.<f>[<k>]`: filter metadata; `[v]` matches a list element."""
    filter_name, _, rest = key[len("experimental."):].partition("[")
    field_key = rest[:-1]

    def build(value: str) -> Predicate:
        as_list = value.startswith("[") and value.endswith("]")
        m = string_matcher(value.strip("[]") if as_list else value)

        def pred(a: Attributes) -> bool:
            v = a.filter_metadata.get(filter_name, {}).get(field_key)
            if as_list:
                return isinstance(v, list) and any(isinstance(e, str) and m.matches(e) for e in v)
            return isinstance(v, str) and m.matches(v)
        return pred
    return build


def nested_claim_names(key_rest: str) -> list[str]:
    """model/util.go extractNameInNestedBrackets: `[a][b]` → [a, b]; `[a.b/c]` is one name."""
    names: list[str] = []
    i = 0
    while i < len(key_rest):
        end = key_rest.find("]", i)
        inner = key_rest[i + 1:end] if key_rest[i] == "[" and end > i else None
        if inner is None or "[" in inner:
            return [key_rest[1:-1]]
        names.append(inner)
        i = end + 1
    return names


# ---------------------------------------------------------------- compiling


@dataclass(frozen=True, slots=True)
class _Ctx:
    policy: AuthorizationPolicy
    bundle: TrustDomainBundle


def _check(field: str, build: Callable[[str], Predicate], values: Sequence[str],
           not_values: Sequence[str], http_only: bool = False) -> Check | None:
    if not values and not not_values:
        return None
    return Check(field, http_only, tuple(build(v) for v in values),
                 tuple(build(v) for v in not_values), tuple(values))


def _source_checks(src: Source, ctx: _Ctx) -> tuple[Check, ...]:
    b, sa = ctx.bundle, _service_account(ctx.policy.meta.namespace)
    checks = (
        _check("ipBlocks", _source_ip, src.ip_blocks, src.not_ip_blocks),
        _check("remoteIpBlocks", _remote_ip, src.remote_ip_blocks, src.not_remote_ip_blocks),
        _check("namespaces", _namespace, src.namespaces, src.not_namespaces),
        _check("trustDomains", _trust_domain, b.expand_aliases(src.trust_domains),
               b.expand_aliases(src.not_trust_domains)),
        _check("serviceAccounts", sa, src.service_accounts, src.not_service_accounts),
        _check("requestPrincipals", _request_principal, src.request_principals,
               src.not_request_principals, http_only=True),
        _check("principals", _principal, b.replace_aliases(src.principals),
               b.replace_aliases(src.not_principals)),
    )
    return tuple(c for c in checks if c is not None)


def _operation_checks(op: Operation) -> tuple[Check, ...]:
    checks = (
        _check("hosts", _host, op.hosts, op.not_hosts, http_only=True),
        _check("methods", _method, op.methods, op.not_methods, http_only=True),
        _check("paths", _path, op.paths, op.not_paths, http_only=True),
        _check("ports", _port, op.ports, op.not_ports),
    )
    return tuple(c for c in checks if c is not None)


_SIMPLE_KEYS: Final[dict[str, Callable[[str], Predicate]]] = {
    "source.ip": _source_ip, "remote.ip": _remote_ip, "source.namespace": _namespace,
    "source.principal": _principal, "destination.ip": _destination_ip,
    "destination.port": _port, "connection.sni": _sni,
    "request.auth.principal": _request_principal,
    "request.auth.audiences": _claim(["aud"]), "request.auth.presenter": _claim(["azp"]),
}


def _condition_check(cond: Condition, ctx: _Ctx) -> Check:
    key, values, not_values = cond.key, cond.values, cond.not_values
    build: Callable[[str], Predicate]
    if key == "source.principal":
        values, not_values = ctx.bundle.replace_aliases(values), ctx.bundle.replace_aliases(
            not_values)
    if key == "source.trustDomain":
        build = _trust_domain
        values, not_values = ctx.bundle.expand_aliases(values), ctx.bundle.expand_aliases(
            not_values)
    elif key == "source.serviceAccount":
        build = _service_account(ctx.policy.meta.namespace)
    elif key in _SIMPLE_KEYS:
        build = _SIMPLE_KEYS[key]
    elif key.startswith("request.headers["):
        build = _header(key[len("request.headers["):-1])
    elif key.startswith("request.auth.claims["):
        build = _claim(nested_claim_names(key[len("request.auth.claims"):]))
    elif key.startswith("experimental.envoy.filters."):
        build = _envoy_filter(key)
    else:  # validation rejects unknown keys; a hand-built policy fails closed per action
        raise ValueError(f"unknown attribute {key}")
    check = _check(f"when[{key}]", build, values, not_values,
                   http_only=key.startswith(HTTP_ONLY_KEYS))
    assert check is not None  # validation requires values or notValues
    return check


def _compile_rule(rule: Rule, name: str, ctx: _Ctx) -> CompiledRule:
    sources = tuple(_source_checks(s, ctx) for s in rule.from_) or ((),)
    operations = tuple(_operation_checks(o) for o in rule.to) or ((),)
    conditions = tuple(_condition_check(c, ctx) for c in rule.when)
    return CompiledRule(name, ctx.policy, sources, operations, conditions)


def _for_tcp(rule: CompiledRule) -> CompiledRule:
    """Istio's TCP translation of one compiled rule (module docstring)."""
    checks = [c for alt in (*rule.sources, *rule.operations) for c in alt] + list(
        rule.conditions)
    http_fields = sorted({c.field for c in checks if c.http_only})
    if not http_fields:
        return rule
    if rule.policy.action == "ALLOW":
        return CompiledRule(rule.name, rule.policy, never=True,
                            note=f"dropped on TCP: HTTP-only {', '.join(http_fields)}")

    def keep(alt: tuple[Check, ...]) -> tuple[Check, ...]:
        return tuple(c for c in alt if not c.http_only)

    return CompiledRule(
        rule.name, rule.policy, tuple(keep(a) for a in rule.sources),
        tuple(keep(a) for a in rule.operations), keep(rule.conditions),
        note=f"widened on TCP: ignored HTTP-only {', '.join(http_fields)}")


def compile_policy(policy: AuthorizationPolicy, bundle: TrustDomainBundle, *,
                   for_tcp: bool) -> tuple[CompiledRule, ...]:
    """The rules of `policy` for an HTTP (`for_tcp=False`) or TCP filter chain."""
    ctx = _Ctx(policy, bundle)
    ns, name = policy.meta.namespace, policy.meta.name
    if not policy.rules:
        return (CompiledRule(rule_name(ns, name, 0), policy, never=True,
                             note="a policy without rules matches nothing"),)
    out = []
    for i, rule in enumerate(policy.rules):
        compiled = _compile_rule(rule, rule_name(ns, name, i), ctx)
        out.append(_for_tcp(compiled) if for_tcp else compiled)
    return tuple(out)


def first_match(rules: Sequence[CompiledRule], attrs: Attributes) -> CompiledRule | None:
    """The matching rule Envoy reports: RBAC keeps policies in a map ordered by name."""
    for rule in sorted(rules, key=lambda r: r.name):
        if rule.matches(attrs):
            return rule
    return None


__all__ = [
    "HTTP_ONLY_FIELDS",
    "Check",
    "CompiledRule",
    "compile_policy",
    "first_match",
    "nested_claim_names",
    "rule_name",
]
