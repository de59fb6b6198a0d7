"""Peer selectors: what an ingress/egress element selects, after injection.

Every kind of peer the user can write (endpoint label selectors, entities, CIDRs, FQDN selectors,
services) becomes one of these small values. The selector cache evaluates them against the
identity universe; each has a canonical string so equal selectors are interned once.

CIDR semantics (reference §1.8): a CIDR selector matches identities carrying a `cidr:` label whose
prefix lies inside it and not inside one of its excepts, and `/0` selects through the world label.
Pod and node identities are never matched by CIDR, except that Kubernetes NetworkPolicy `ipBlock`
must match pod IPs (the upstream e2e suite requires it): `match_endpoint_ips` turns that on and
selects an endpoint identity when every known IP of it lies in the block and outside the excepts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from netstrata.api.types import FQDNSelector
from netstrata.labels import SOURCE_CIDR, SOURCE_FQDN, LabelSet, Selector, reserved

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IdentityFacts(Protocol):
    """What a peer selector may ask about an identity beyond its labels."""

    def endpoint_ips(self, identity: int) -> tuple[str, ...]:
        """IPs of the endpoints that carry `identity` (empty for non-endpoint identities)."""
        ...


class PeerSelector(Protocol):
    def selects(self, identity: int, labels: LabelSet, facts: IdentityFacts) -> bool: ...

    def canonical(self) -> str: ...

    @property
    def is_wildcard(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class LabelPeer:
    """Identities whose labels satisfy an (injected) label selector."""

    selector: Selector

    def selects(self, identity: int, labels: LabelSet, facts: IdentityFacts) -> bool:
        return self.selector.matches(labels)

    def canonical(self) -> str:
        return self.selector.canonical()

    @property
    def is_wildcard(self) -> bool:
        return self.selector.all_


WILDCARD = LabelPeer(Selector((), True))
"""Any identity at all (L3 wildcard, the `all` entity): becomes identity 0 in the map."""


def _cidr_of(labels: LabelSet) -> Network | None:
    for lb in labels:
        if lb.source == SOURCE_CIDR:
            try:
                return ipaddress.ip_network(lb.key, strict=False)
            except ValueError:
                return None
    return None


def _subnet_of(inner: Network, outer: Network) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class CIDRPeer:
    """A CIDR (with excepts) selecting CIDR-derived identities, and pod IPs for k8s ipBlock."""

    network: Network
    excepts: tuple[Network, ...] = ()
    match_endpoint_ips: bool = False

    def _covers(self, net: Network) -> bool:
        if not _subnet_of(net, self.network):
            return False
        return not any(_subnet_of(net, e) for e in self.excepts)

    def selects(self, identity: int, labels: LabelSet, facts: IdentityFacts) -> bool:
        net = _cidr_of(labels)
        if net is not None:
            return self._covers(net)
        if self.network.prefixlen == 0 and labels.has_reserved("world"):
            # World is "an IP in no referenced prefix", so it lies outside every except.
            return True
        if self.match_endpoint_ips:
            ips = facts.endpoint_ips(identity)
            return bool(ips) and all(
                self._covers(ipaddress.ip_network(ip)) for ip in ips
            )
        return False

    def canonical(self) -> str:
        text = f"cidr:{self.network}"
        if self.excepts:
            text += " except " + ",".join(str(e) for e in self.excepts)
        if self.match_endpoint_ips:
            text += " (ipBlock)"
        return text

    @property
    def is_wildcard(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class FQDNPeer:
    """Identities learned from DNS answers for names this selector matches (`fqdn:<sel>`)."""

    selector_string: str
    selector: FQDNSelector | None = None
    """The selector as written (the DNS proxy matches learned names against it)."""

    def selects(self, identity: int, labels: LabelSet, facts: IdentityFacts) -> bool:
        return any(lb.source == SOURCE_FQDN and lb.key == self.selector_string for lb in labels)

    def canonical(self) -> str:
        return f"fqdn:{self.selector_string}"

    @property
    def is_wildcard(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class NonePeer:
    """The `none` entity: selects nothing."""

    def selects(self, identity: int, labels: LabelSet, facts: IdentityFacts) -> bool:
        return False

    def canonical(self) -> str:
        return "reserved:none"

    @property
    def is_wildcard(self) -> bool:
        return False


def reserved_selector(name: str) -> LabelPeer:
    return LabelPeer(Selector.from_k8s({f"reserved:{name}": ""}))


class _NoFacts:
    def endpoint_ips(self, identity: int) -> tuple[str, ...]:
        return ()


NO_FACTS: IdentityFacts = _NoFacts()

__all__ = [
    "NO_FACTS",
    "WILDCARD",
    "CIDRPeer",
    "FQDNPeer",
    "IdentityFacts",
    "LabelPeer",
    "NonePeer",
    "PeerSelector",
    "reserved",
    "reserved_selector",
]
