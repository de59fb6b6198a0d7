"""`netstrata bench control-plane`: how fast resolution is on a synthetic cluster.

The cluster is generated deterministically (seeded): namespaces, apps and tiers give the
identities, replicas give the endpoints, and the policies mix label selectors across and within
namespaces, single ports, port ranges, CIDRs with excepts, entities, deny rules and HTTP rules.
Measured in one run: full resolve of every endpoint, the incremental cost of one identity added
(selector cache update plus re-resolving only the identities whose policy uses a changed selector)
and of one policy changed, and peak memory (tracemalloc).
"""

from __future__ import annotations

import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from netstrata.api import types as api
from netstrata.labels import Label, LabelSet, Selector
from netstrata.policy.peers import NO_FACTS, LabelPeer
from netstrata.policy.resolve import EndpointInfo, PolicyConfig, Resolver
from netstrata.policy.rules import Catalog, InternalRule, translate_cilium
from netstrata.policy.selector_cache import SelectorCache
from netstrata.policy.types import ResolvedPolicy


@dataclass(frozen=True, slots=True)
class Synthetic:
    identities: dict[int, LabelSet]
    endpoints: list[EndpointInfo]
    policies: list[api.CiliumPolicy]


SAMPLES = 21
"""Incremental operations are timed this many times; the median and the maximum are reported."""


def _pod_labels(ns: str, app: str, tier: str) -> LabelSet:
    return LabelSet([
        Label("k8s", "app", app), Label("k8s", "tier", tier),
        Label("k8s", "io.kubernetes.pod.namespace", ns),
        Label("k8s", "io.cilium.k8s.policy.cluster", "default"),
        Label("k8s", "io.cilium.k8s.policy.serviceaccount", app),
        Label("k8s", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", ns),
    ])


def _policy(rng: random.Random, i: int, namespaces: list[str], apps: list[str]) -> api.CiliumPolicy:
    ns = rng.choice(namespaces)
    kind = i % 10
    subject = Selector.from_k8s({"app": rng.choice(apps)})
    peer = Selector.from_k8s({"app": rng.choice(apps)})
    port = api.PortRule((api.PortProtocol(str(rng.choice([80, 443, 8080, 5432, 6379])), 0, "TCP"),))
    origin = api.RuleOrigin("CiliumNetworkPolicy", f"p{i}", ns)
    if kind in (0, 1, 2, 3):
        rule = api.Rule(origin, subject, ingress=(api.PeerRule(endpoints=(peer,), to_ports=(port,)),))
    elif kind == 4:
        cross = Selector.from_k8s({"app": rng.choice(apps), "k8s:io.kubernetes.pod.namespace": rng.choice(namespaces)})
        rule = api.Rule(origin, subject, ingress=(api.PeerRule(endpoints=(cross,)),))
    elif kind == 5:
        rng_port = api.PortRule((api.PortProtocol("8000", 8099, "TCP"),))
        rule = api.Rule(origin, subject, egress=(api.PeerRule(endpoints=(peer,), to_ports=(rng_port,)),))
    elif kind == 6:
        a, b = rng.randrange(1, 200), rng.randrange(0, 250)
        cidr = api.CIDRRule(f"{a}.0.0.0/8", (f"{a}.{b}.0.0/16",))
        rule = api.Rule(origin, subject, egress=(api.PeerRule(cidrs=(cidr,), cidr_kind="CIDRSet", to_ports=(port,)),))
    elif kind == 7:
        rule = api.Rule(origin, subject, ingress_deny=(api.PeerRule(endpoints=(peer,)),),
                        ingress=(api.PeerRule(entities=("cluster",)),))
    elif kind == 8:
        rule = api.Rule(origin, subject, egress=(api.PeerRule(entities=("world",), to_ports=(port,)),))
    else:
        http = api.L7Rules(http=(api.HTTPRule(method="GET", path="/api/v1/.*"),))
        l7port = api.PortRule((api.PortProtocol("8080", 0, "TCP"),), http)
        rule = api.Rule(origin, subject, ingress=(api.PeerRule(endpoints=(peer,), to_ports=(l7port,)),))
    return api.CiliumPolicy("CiliumNetworkPolicy", f"p{i}", ns, (rule,))


def generate(endpoints: int = 10_000, identities: int = 2_000, policies: int = 1_000, seed: int = 7) -> Synthetic:
    rng = random.Random(seed)
    namespaces = [f"ns{i}" for i in range(50)]
    apps = [f"app{i}" for i in range(max(1, identities // 10))]
    ids: dict[int, LabelSet] = {}
    n = 0
    while len(ids) < identities:
        ns, app, tier = namespaces[n % 50], apps[(n // 50) % len(apps)], f"t{n // (50 * len(apps))}"
        ids[256 + n] = _pod_labels(ns, app, tier)
        n += 1
    idlist = sorted(ids)
    eps = [EndpointInfo(i + 1, idlist[i % len(idlist)], ids[idlist[i % len(idlist)]]) for i in range(endpoints)]
    pols = [_policy(rng, i, namespaces, apps) for i in range(policies)]
    for i in range(0x01000001, 0x01000001 + 200):
        ids[i] = LabelSet([Label("reserved", "world"), Label("cidr", f"{i - 0x01000000}.0.0.0/8")])
    return Synthetic(ids, eps, pols)


T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _resolve_all(resolver: Resolver, eps: list[EndpointInfo]) -> int:
    seen: dict[int, ResolvedPolicy] = {}
    for ep in eps:
        if ep.identity not in seen:
            seen[ep.identity] = resolver.resolve(ep)
    return sum(len(p.entries) for p in seen.values())


def run(endpoints: int, identities: int, policies: int, progress: Callable[[str], None]) -> dict[str, float]:
    progress(f"generating {endpoints} endpoints, {identities} identities, {policies} policies")
    syn = generate(endpoints, identities, policies)
    t_translate, rules = _timed(
        lambda: [r for p in syn.policies for r in translate_cilium(p, "default", Catalog())])
    cache = SelectorCache(NO_FACTS)
    t_ids, _ = _timed(lambda: [cache.upsert_identity(i, ls) for i, ls in syn.identities.items()])
    resolver = Resolver(rules, cache, PolicyConfig())
    progress("full resolve")
    t_full, nkeys = _timed(lambda: _resolve_all(resolver, syn.endpoints))
    resolver.prepare()
    progress("peak memory of a second full resolve (tracemalloc, slower)")
    tracemalloc.start()
    _resolve_all(Resolver(rules, cache, PolicyConfig()), syn.endpoints)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    progress(f"incremental: one identity added, {SAMPLES} times")
    add_times: list[float] = []
    add_counts: list[int] = []
    for k in range(SAMPLES):
        new_id, new_labels = 256 + identities + 1 + k, _pod_labels(f"ns{k % 50}", f"app{k}", "new")

        def add_identity(new_id: int = new_id, new_labels: LabelSet = new_labels, k: int = k) -> int:
            changed = cache.upsert_identity(new_id, new_labels)
            eps = [*syn.endpoints, EndpointInfo(len(syn.endpoints) + 1 + k, new_id, new_labels)]
            return _reresolve_changed(resolver, rules, changed, eps, new_id)

        t, n = _timed(add_identity)
        add_times.append(t)
        add_counts.append(n)
    progress(f"incremental: one policy changed, {SAMPLES} times")
    pol_times: list[float] = []
    pol_counts: list[int] = []
    for k in range(SAMPLES):
        changed_policy = _policy(random.Random(99 + k), k, [f"ns{k % 50}"], [f"app{k}"])

        def change_policy(changed_policy: api.CiliumPolicy = changed_policy) -> int:
            new_rules = translate_cilium(changed_policy, "default", Catalog())
            subjects = {i for r in new_rules if r.subject for i in cache.select(LabelPeer(r.subject))}
            r2 = Resolver([*rules, *new_rules], cache, PolicyConfig())
            eps = {ep.identity: ep for ep in syn.endpoints if ep.identity in subjects}
            for ep in eps.values():
                r2.resolve(ep)
            return len(eps)

        t, n = _timed(change_policy)
        pol_times.append(t)
        pol_counts.append(n)
    t_add, t_add_max = statistics.median(add_times), max(add_times)
    t_pol, t_pol_max = statistics.median(pol_times), max(pol_times)
    n_add, n_pol = statistics.median(add_counts), statistics.median(pol_counts)
    return {
        "translate_s": t_translate, "identities_s": t_ids, "full_resolve_s": t_full,
        "map_entries": float(nkeys), "incremental_identity_ms": t_add * 1000,
        "reresolved_for_identity": float(n_add), "incremental_policy_ms": t_pol * 1000,
        "reresolved_for_policy": float(n_pol), "peak_mib": peak / 2**20,
        "incremental_identity_max_ms": t_add_max * 1000, "incremental_policy_max_ms": t_pol_max * 1000,
    }


def _reresolve_changed(resolver: Resolver, rules: list[InternalRule], changed: set[str],
                       eps: list[EndpointInfo], new_identity: int) -> int:
    """Apply a new identity incrementally: endpoints whose policy uses a changed selector get
    only the keys for the new identity; the new identity's own endpoint is resolved in full."""
    del rules
    affected = resolver.identity_changed(new_identity, changed)
    seen = set()
    for ep in eps:
        if ep.identity in seen:
            continue
        if ep.identity == new_identity:
            resolver.resolve(ep)
        elif ep.identity in affected:
            resolver.add_identity(ep.endpoint_id, new_identity)
        else:
            continue
        seen.add(ep.identity)
    return len(seen)
