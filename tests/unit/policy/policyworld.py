"""A tiny world for resolution tests: identities, endpoints, rules written as api objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from netstrata.api import types as api
from netstrata.datapath.reference._lookup import LookupResult, policy_lookup
from netstrata.labels import Label, LabelSet, Selector
from netstrata.policy.peers import NO_FACTS
from netstrata.policy.resolve import EndpointInfo, PolicyConfig, Resolver
from netstrata.policy.rules import Catalog, translate_cilium, translate_network_policy
from netstrata.policy.selector_cache import SelectorCache
from netstrata.policy.types import Direction, Proto, ResolvedPolicy

WORLD = 2
HOST = 1


def pod_labels(ns: str, cluster: str = "default", **labels: str) -> LabelSet:
    out = [Label("k8s", k, v) for k, v in labels.items()]
    out += [
        Label("k8s", "io.kubernetes.pod.namespace", ns),
        Label("k8s", "io.cilium.k8s.policy.cluster", cluster),
        Label("k8s", "io.cilium.k8s.policy.serviceaccount", "default"),
        Label("k8s", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", ns),
    ]
    return LabelSet(out)


def sel(**labels: str) -> Selector:
    return Selector.from_k8s(labels)


def cnp(name: str, ns: str | None, *, subject: Selector | None = None, ccnp: bool = False, **dirs) -> api.CiliumPolicy:
    kind = "CiliumClusterwideNetworkPolicy" if ccnp else "CiliumNetworkPolicy"
    origin = api.RuleOrigin(kind, name, None if ccnp else ns)
    rule = api.Rule(origin=origin, endpoint_selector=subject or Selector(), **dirs)
    return api.CiliumPolicy(kind, name, None if ccnp else ns, (rule,))


def tcp(*ports: str | int, proto: str = "TCP", rules: api.L7Rules | None = None, end: int = 0) -> tuple[api.PortRule, ...]:
    return (api.PortRule(tuple(api.PortProtocol(str(p), end, proto) for p in ports), rules),)


@dataclass
class World:
    identities: dict[int, LabelSet] = field(default_factory=dict)
    named: dict[int, dict[str, tuple[tuple[int, int], ...]]] = field(default_factory=dict)
    config: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        self.identities.update({
            HOST: LabelSet([Label("reserved", "host")]),
            WORLD: LabelSet([Label("reserved", "world")]),
            6: LabelSet([Label("reserved", "remote-node")]),
        })

    def add(self, ident: int, labels: LabelSet, named: dict[str, tuple[tuple[int, int], ...]] | None = None) -> int:
        self.identities[ident] = labels
        if named:
            self.named[ident] = named
        return ident

    def named_ports(self, identity: int):  # PeerPorts
        return self.named.get(identity, {})

    def resolve(self, subject: int, policies=(), netpols=(), catalog: Catalog | None = None) -> ResolvedPolicy:
        rules = []
        for p in policies:
            rules += translate_cilium(p, self.config.cluster, catalog or Catalog(), self.config.default_local_cluster)
        for n in netpols:
            rules.append(translate_network_policy(n, self.config.cluster, self.config.default_local_cluster))
        cache = SelectorCache(NO_FACTS)
        for i, ls in self.identities.items():
            cache.upsert_identity(i, ls)
        resolver = Resolver(rules, cache, self.config, self)
        ep = EndpointInfo(1, subject, self.identities[subject], self.named.get(subject, {}))
        return resolver.resolve(ep)


def verdict(pol: ResolvedPolicy, peer: int, port: int = 80, proto: int = Proto.TCP,
            direction: Direction = Direction.INGRESS) -> LookupResult:
    return policy_lookup(pol.entries, direction, peer, int(proto), port)


@pytest.fixture
def world() -> World:
    return World()
