"""Compile once, evaluate many: the AuthorizationPolicies of each workload, ready to match.

`mesh.evaluate` used to select the applicable policies among every Istio object and compile
their rules on every request; with 100 policies that was milliseconds per decision. A
`PolicySet` is one snapshot of the Istio objects (with the meshConfig) and keeps, per
workload, what selection and compilation give:

- the applicable AuthorizationPolicies, the merged RequestAuthentication JWT rules and the
  PeerAuthentication mode per port;
- for the HTTP and the TCP filter chain: CUSTOM rules per provider, AUDIT, DENY and ALLOW
  rules, enforced and dry-run, each a `RuleSet` in Envoy's order (by rule name) whose rules
  are `mesh.rules` closures (exact/prefix/suffix/presence matchers, CIDRs, ports) built once.

A `RuleSet` also indexes its rules by the request path: a rule every one of whose `to`
operations lists `paths` made only of exact, prefix or suffix values can match only a path
that one of those values matches, so a request is tried only against the rules whose values
fit its path (dictionary look-ups by the path and by its prefixes and suffixes of the lengths
in use) plus the rules that cannot be indexed. The first match in name order is the same as
with a full scan; `tests/unit/mesh/test_mesh_compiled.py` checks that against the plain scan.

Snapshots are immutable: a policy change is a new `PolicySet` (a new `version`). `policy_set`
keeps the last few, found again by the identity of the objects (Istio objects are frozen
dataclasses, and the cache holds them, so an identical sequence is the same content).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from netstrata.api.istio import AuthorizationPolicy, IstioObject, JWTRule
from netstrata.mesh import selection
from netstrata.mesh.attributes import Attributes
from netstrata.mesh.matching import path_matcher
from netstrata.mesh.rules import CompiledRule, compile_policy
from netstrata.mesh.trustdomain import TrustDomainBundle
from netstrata.mesh.types import MeshConfig, Workload

WORKLOADS_PER_SET: Final = 4096
"""Compiled workloads kept per snapshot; beyond it the cache starts over (bounded memory)."""
SETS_KEPT: Final = 8
"""Snapshots `policy_set` remembers (a few policy versions, a few meshConfigs)."""

_versions = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules of one action for one chain kind, in Envoy's order, with a path index."""

    rules: tuple[CompiledRule, ...]
    always: tuple[int, ...] = ()
    """Positions of rules the index cannot rule out (tried for every request)."""
    exact: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    prefixes: tuple[tuple[int, Mapping[str, tuple[int, ...]]], ...] = ()
    """(length, prefix of that length → positions), one entry per length in use."""
    suffixes: tuple[tuple[int, Mapping[str, tuple[int, ...]]], ...] = ()
    indexed: bool = False

    def first_match(self, attrs: Attributes) -> CompiledRule | None:
        """The matching rule Envoy reports (the first by name), as a full scan finds it."""
        rules = self.rules
        if not self.indexed:
            for rule in rules:
                if rule.matches(attrs):
                    return rule
            return None
        for i in self._candidates(attrs.path):
            if rules[i].matches(attrs):
                return rules[i]
        return None

    def _candidates(self, path: str | None) -> list[int]:
        found = list(self.always)
        if path is not None:
            hit = self.exact.get(path)
            if hit:
                found.extend(hit)
            n = len(path)
            for length, table in self.prefixes:
                if length <= n and (hit := table.get(path[:length])):
                    found.extend(hit)
            for length, table in self.suffixes:
                if length <= n and (hit := table.get(path[n - length :])):
                    found.extend(hit)
        return sorted(set(found)) if len(found) > 1 else found

    def __bool__(self) -> bool:
        return bool(self.rules)


def _path_values(rule: CompiledRule) -> list[tuple[str, str]] | None:
    """(kind, value) of every `paths` value the rule's operations need, or None when some
    operation does not restrict the path to exact/prefix/suffix values."""
    out: list[tuple[str, str]] = []
    for alt in rule.operations:
        paths = next((c for c in alt if c.field == "paths" and c.raw_values), None)
        if paths is None:
            return None
        for value in paths.raw_values:
            m = path_matcher(value)
            if m.kind not in ("exact", "prefix", "suffix") or m.ignore_case:
                return None
            out.append((m.kind, m.value))
    return out


def _by_length(
    entries: dict[str, list[int]],
) -> tuple[tuple[int, Mapping[str, tuple[int, ...]]], ...]:
    lengths: dict[int, dict[str, tuple[int, ...]]] = {}
    for value, positions in entries.items():
        lengths.setdefault(len(value), {})[value] = tuple(positions)
    return tuple(sorted(lengths.items()))


def rule_set(rules: Iterable[CompiledRule], *, index: bool = True) -> RuleSet:
    """Rules in Envoy's order (stable by name), indexed by path unless `index` is False."""
    ordered = tuple(sorted(rules, key=operator.attrgetter("name")))
    if not index:
        return RuleSet(ordered)
    always: list[int] = []
    tables: dict[str, dict[str, list[int]]] = {"exact": {}, "prefix": {}, "suffix": {}}
    for i, rule in enumerate(ordered):
        if rule.never:
            continue  # matches nothing: never a candidate
        values = _path_values(rule)
        if values is None:
            always.append(i)
            continue
        for kind, value in values:
            positions = tables[kind].setdefault(value, [])
            if not positions or positions[-1] != i:
                positions.append(i)
    return RuleSet(
        ordered,
        tuple(always),
        {k: tuple(v) for k, v in tables["exact"].items()},
        _by_length(tables["prefix"]),
        _by_length(tables["suffix"]),
        indexed=True,
    )


@dataclass(frozen=True, slots=True)
class ChainRules:
    """A workload's rules for one chain kind (HTTP or TCP)."""

    custom: tuple[tuple[str, RuleSet], ...]
    """CUSTOM rules per provider name, providers sorted by name."""
    audit: RuleSet
    deny: RuleSet
    deny_dry: RuleSet
    allow: RuleSet
    allow_dry: RuleSet
    has_deny_dry: bool
    has_allow_dry: bool
    has_allow: bool
    """Whether any enforced ALLOW policy applies (even one whose rules all drop on TCP)."""


def _chain(
    policies: Sequence[AuthorizationPolicy],
    bundle: TrustDomainBundle,
    *,
    for_tcp: bool,
    index: bool,
) -> ChainRules:
    def of(action: str, dry: bool | None) -> tuple[AuthorizationPolicy, ...]:
        return tuple(
            p for p in policies if p.action == action and (dry is None or p.dry_run == dry)
        )

    def rules(chosen: Iterable[AuthorizationPolicy]) -> RuleSet:
        return rule_set(
            (r for p in chosen for r in compile_policy(p, bundle, for_tcp=for_tcp)), index=index
        )

    custom = of("CUSTOM", None)
    providers = sorted({p.provider or "" for p in custom})
    return ChainRules(
        custom=tuple((name, rules(p for p in custom if p.provider == name)) for name in providers),
        audit=rules(of("AUDIT", False)),
        deny=rules(of("DENY", False)),
        deny_dry=rules(of("DENY", True)),
        allow=rules(of("ALLOW", False)),
        allow_dry=rules(of("ALLOW", True)),
        has_deny_dry=bool(of("DENY", True)),
        has_allow_dry=bool(of("ALLOW", True)),
        has_allow=bool(of("ALLOW", False)),
    )


@dataclass(slots=True)
class WorkloadPolicies:
    """What applies to one workload (by namespace, labels, kind and services)."""

    applicable: tuple[AuthorizationPolicy, ...]
    jwt_rules: tuple[JWTRule, ...]
    http: ChainRules
    tcp: ChainRules
    mtls: dict[int, selection.MTLSResolution] = field(default_factory=dict)
    """PeerAuthentication per port, filled on first use."""

    def chain(self, is_http: bool) -> ChainRules:
        return self.http if is_http else self.tcp

    def mtls_mode(
        self, objects: Sequence[IstioObject], wl: Workload, port: int, mesh: MeshConfig
    ) -> selection.MTLSResolution:
        """`selection.mtls_mode` of this workload (`objects`, `mesh`: its snapshot's)."""
        found = self.mtls.get(port)
        if found is None:
            found = self.mtls[port] = selection.mtls_mode(objects, wl, port, mesh)
        return found


def _workload_key(wl: Workload) -> tuple[object, ...]:
    """What selection looks at (policy attachment and PeerAuthentication): not the name."""
    return (wl.namespace, wl.kind, frozenset(wl.labels.items()), wl.services)


class PolicySet:
    """One immutable snapshot of the mesh's Istio objects, compiled per workload on demand."""

    __slots__ = ("_index", "_workloads", "bundle", "mesh", "objects", "version")

    def __init__(
        self,
        objects: Iterable[IstioObject],
        mesh: MeshConfig | None = None,
        *,
        index: bool = True,
        cache: bool = True,
    ) -> None:
        """
        Args:
            objects: every Istio object of the mesh (all kinds, all namespaces).
            mesh: meshConfig; Istio's defaults when None.
            index: index rules by path (False: plain scans, the reference behaviour).
            cache: keep compiled workloads (False: select and compile on every request).
        """
        self.objects = tuple(objects)
        self.mesh = mesh or MeshConfig()
        self.bundle = TrustDomainBundle.of(self.mesh.trust_domain, self.mesh.trust_domain_aliases)
        self.version = next(_versions)
        self._index = index
        self._workloads: dict[tuple[object, ...], WorkloadPolicies] | None = {} if cache else None

    def workload(self, wl: Workload) -> WorkloadPolicies:
        """The compiled policies of `wl` (compiled on first use, then kept)."""
        if self._workloads is None:
            return self._compile(wl)
        key = _workload_key(wl)
        found = self._workloads.get(key)
        if found is None:
            if len(self._workloads) >= WORKLOADS_PER_SET:
                self._workloads.clear()
            found = self._workloads[key] = self._compile(wl)
        return found

    def _compile(self, wl: Workload) -> WorkloadPolicies:
        applicable = selection.authorization_policies(self.objects, wl, self.mesh)
        ras = selection.request_authentications(self.objects, wl, self.mesh)
        jwt_rules = tuple(
            sorted((r for ra in ras for r in ra.jwt_rules), key=operator.attrgetter("issuer"))
        )
        return WorkloadPolicies(
            applicable,
            jwt_rules,
            _chain(applicable, self.bundle, for_tcp=False, index=self._index),
            _chain(applicable, self.bundle, for_tcp=True, index=self._index),
        )


_recent: list[PolicySet] = []


def _same(a: tuple[IstioObject, ...], b: tuple[IstioObject, ...]) -> bool:
    return a is b or (len(a) == len(b) and all(map(operator.is_, a, b)))


def policy_set(objects: Iterable[IstioObject], mesh: MeshConfig | None = None) -> PolicySet:
    """The compiled snapshot of exactly these objects under `mesh`, reused while they are the
    same objects (a changed, added or removed object makes a new snapshot)."""
    snapshot = objects if isinstance(objects, tuple) else tuple(objects)
    config = mesh or MeshConfig()
    for i, ps in enumerate(_recent):
        if ps.mesh == config and _same(ps.objects, snapshot):
            if i:
                _recent.insert(0, _recent.pop(i))  # most recently used first
            return ps
    ps = PolicySet(snapshot, config)
    _recent.insert(0, ps)
    del _recent[SETS_KEPT:]
    return ps


__all__ = [
    "ChainRules",
    "PolicySet",
    "RuleSet",
    "WorkloadPolicies",
    "policy_set",
    "rule_set",
]
