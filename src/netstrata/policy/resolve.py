"""Resolution: the rules that select an endpoint -> its MapState and L7 rule sets.

Semantics implemented here (reference §1.4, §1.10-1.12, §3.1-3.2):

* A direction is enforced when a selecting rule has entries in it (deny-only rules count), or
  always with enforcement mode `always`, never with `never`. Unenforced: one allow-all key.
* Each element expands to keys (direction, peer identity or 0, proto or 0, port block). An L3
  wildcard (no L3 field but ports) is identity 0; an element with L3 fields that select nobody
  adds nothing; `{}` adds nothing but still enforces the direction.
* Several contributions to one key merge: deny wins; a redirect (L7 rules) outranks a plain
  allow; two different L7 parsers on one port is a conflict (the endpoint keeps its old policy).
* Every redirected port gets an L7 rule set holding the L7 rules of every allow that covers it,
  and a no-restriction entry for each plain allow that covers it: an L4-only allow widens L7 for
  the peers it covers, yet their traffic is still proxied.
* Every allow key covered by a deny key becomes a deny, so the LPM lookup cannot prefer it.
* If every selecting rule opts out of default deny in a direction, a lowest-precedence allow-all
  is added (only denies and L7 redirects then have effect).
* allow-localhost: when ingress is enforced, the host identity is allowed, above redirects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from netstrata.errors import PolicyConflictError
from netstrata.labels import LabelSet
from netstrata.policy.peers import LabelPeer
from netstrata.policy.rules import Element, InternalRule, PortGroup, PortSpec
from netstrata.policy.selector_cache import SelectorCache
from netstrata.policy.types import (
    PRECEDENCE_ALLOW,
    PRECEDENCE_DEFAULT_ALLOW,
    PRECEDENCE_DENY,
    PRECEDENCE_LOCALHOST,
    PRECEDENCE_REDIRECT,
    Direction,
    L7Entry,
    L7Policy,
    MapStateEntry,
    MapStateKey,
    ResolvedPolicy,
)

HOST_IDENTITY = 1

# Node proxy listener port per L7 parser (the kernel redirects to these).
DEFAULT_PROXY_PORTS: Mapping[str, int] = {"http": 15080, "kafka": 15092, "dns": 15053}

NamedPorts = Mapping[str, tuple[tuple[int, int], ...]]
"""Port name -> ((port, proto), ...)."""


class PeerPorts(Protocol):
    def named_ports(self, identity: int) -> NamedPorts:
        """Named ports of the endpoints carrying `identity` (for egress named ports)."""
        ...


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Agent settings that change resolution."""

    cluster: str = "default"
    enforcement: Literal["default", "always", "never"] = "default"
    allow_localhost: bool = True
    default_local_cluster: bool = True
    audit_mode: bool = False
    proxy_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PROXY_PORTS))


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    endpoint_id: int
    identity: int
    labels: LabelSet
    named_ports: NamedPorts = field(default_factory=dict)
    audit: bool = False


@dataclass(slots=True)
class _Contribution:
    deny: bool
    parser: str | None
    rules: tuple[object, ...]
    description: str


def port_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """Split an inclusive port range into aligned (port, prefix_bits) blocks; 0 = all ports."""
    if start == 0 and end in (0, 65535):
        return [(0, 0)]
    if end < start:
        end = start
    blocks: list[tuple[int, int]] = []
    cur = start
    while cur <= end:
        size_bits = 0
        while size_bits < 16:
            nxt = size_bits + 1
            if cur & ((1 << nxt) - 1) or cur + (1 << nxt) - 1 > end:
                break
            size_bits = nxt
        blocks.append((cur, 16 - size_bits))
        cur += 1 << size_bits
    return blocks


@dataclass(slots=True)
class _Computed:
    """What resolve() worked out for one endpoint, kept for incremental updates."""

    ep: EndpointInfo
    selecting: list[InternalRule]
    enforced: dict[Direction, bool]
    merged: dict[MapStateKey, MapStateEntry]
    """Merged entries before deny shadowing."""
    sources: dict[MapStateKey, tuple[str, ...]]
    contribs: dict[MapStateKey, list[_Contribution]]
    parsers: dict[MapStateKey, str]
    policy: ResolvedPolicy
    denies: list[tuple[MapStateKey, MapStateEntry]] | None = None


class _NoPeerPorts:
    def named_ports(self, identity: int) -> NamedPorts:
        return {}


class Resolver:
    """Resolves endpoint policies from a rule set and a selector cache."""

    def __init__(
        self,
        rules: Sequence[InternalRule],
        cache: SelectorCache,
        config: PolicyConfig | None = None,
        peer_ports: PeerPorts | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.cache = cache
        self.config = config or PolicyConfig()
        self.peer_ports = peer_ports or _NoPeerPorts()
        self._cookies: dict[str, int] = {}
        self._cookie_names: dict[int, str] = {}
        self._by_identity: dict[int, list[InternalRule]] | None = None
        self._computed: dict[int, _Computed] = {}
        self._uses: list[set[str]] | None = None
        self.revision = 0

    def cookie(self, description: str) -> int:
        c = self._cookies.get(description)
        if c is None:
            c = self._cookies[description] = len(self._cookies) + 1
            self._cookie_names[c] = description
        return c

    def selecting_rules(self, labels: LabelSet, identity: int) -> list[InternalRule]:
        """Rules whose subject selects this endpoint (via the selector cache when it knows
        the identity, so thousands of rules are not matched one by one)."""
        if self.cache.identities.get(identity) != labels:
            return [r for r in self.rules if r.subject is not None and r.subject.matches(labels)]
        if self._by_identity is None:
            index: dict[int, list[InternalRule]] = defaultdict(list)
            for rule in self.rules:
                if rule.subject is not None:
                    for ident in self.cache.select(LabelPeer(rule.subject)):
                        index[ident].append(rule)
            self._by_identity = index
        return list(self._by_identity.get(identity, ()))

    def identity_changed(self, identity: int, changed_selectors: set[str]) -> set[int]:
        """Keep the subject index current after the selector cache changed; returns the
        identities whose policy must be re-resolved (they use a changed selector)."""
        affected: set[int] = set()
        self.prepare()
        for rule, uses in zip(self.rules, self._uses or (), strict=True):
            if rule.subject is None:
                continue
            subject = rule.subject.canonical()
            if self._by_identity is not None and subject in changed_selectors:
                members = self._by_identity.setdefault(identity, [])
                if identity in self.cache.select(LabelPeer(rule.subject)):
                    if rule not in members:
                        members.append(rule)
                        members.sort(key=self.rules.index)
                elif rule in members:
                    members.remove(rule)
            if subject in changed_selectors or not uses.isdisjoint(changed_selectors):
                affected |= self.cache.select(LabelPeer(rule.subject))
        return affected

    def prepare(self) -> None:
        """Build the indexes incremental updates use (done once, lazily)."""
        if self._uses is None:
            self._uses = [
                {p.canonical() for el in r.elements for p in el.peers} for r in self.rules
            ]

    # ------------------------------------------------------------------ expansion

    def _peer_identities(self, el: Element) -> set[int]:
        ids: set[int] = set()
        for peer in el.peers:
            if peer.is_wildcard:
                ids.add(0)
            else:
                ids |= self.cache.select(peer)
        return ids

    def _spec_ports(
        self, spec: PortSpec, direction: Direction, ep: EndpointInfo, peer: int
    ) -> list[tuple[int, int, int]]:
        """(proto, port, end) triples for a spec, named ports resolved."""
        if spec.icmp:
            return [(spec.proto, spec.port, -1)]
        if spec.name is None:
            return [(spec.proto, spec.port, spec.end_port)]
        if direction == Direction.INGRESS:
            named = ep.named_ports.get(spec.name, ())
        elif peer == 0:
            named = tuple(
                pp for i in self.cache.identities for pp in self.peer_ports.named_ports(i).get(spec.name, ())
            )
        else:
            named = self.peer_ports.named_ports(peer).get(spec.name, ())
        return [(spec.proto, p, 0) for p, proto in sorted(set(named)) if proto == spec.proto]

    def _expand(
        self, el: Element, ep: EndpointInfo, out: dict[MapStateKey, list[_Contribution]]
    ) -> None:
        d = el.direction
        for ident in sorted(self._peer_identities(el)):
            if el.port_groups is None:
                key = MapStateKey(d, ident)
                out[key].append(_Contribution(el.deny, None, (), el.description))
                continue
            for group in el.port_groups:
                self._expand_group(el, group, ident, ep, out)

    def _expand_group(
        self,
        el: Element,
        group: PortGroup,
        ident: int,
        ep: EndpointInfo,
        out: dict[MapStateKey, list[_Contribution]],
    ) -> None:
        parser = None if el.deny else group.parser
        rules = () if el.deny else group.l7_rules
        for spec in group.ports:
            for proto, port, end in self._spec_ports(spec, el.direction, ep, ident):
                blocks = [(port, 8)] if end == -1 else port_blocks(port, end)
                for start, prefix in blocks:
                    key = MapStateKey(el.direction, ident, proto, start, prefix)
                    out[key].append(_Contribution(el.deny, parser, rules, el.description))

    # ------------------------------------------------------------------ merge

    def _merge(
        self, key: MapStateKey, contribs: list[_Contribution]
    ) -> tuple[MapStateEntry, str | None]:
        denies = [c for c in contribs if c.deny]
        if denies:
            first = min(c.description for c in denies)
            return MapStateEntry(deny=True, precedence=PRECEDENCE_DENY, cookie=self.cookie(first)), None
        parsers = {c.parser for c in contribs if c.parser}
        if len(parsers) > 1:
            raise PolicyConflictError(
                f"cannot merge conflicting L7 parsers {sorted(parsers)} on {key}: "
                + ", ".join(sorted({c.description for c in contribs}))
            )
        first = min(c.description for c in contribs)
        if parsers:
            parser = parsers.pop()
            port = self.config.proxy_ports.get(parser, 15000)
            redirect = min(c.description for c in contribs if c.parser)
            return MapStateEntry(proxy_port=port, precedence=PRECEDENCE_REDIRECT,
                                 cookie=self.cookie(redirect)), parser
        return MapStateEntry(precedence=PRECEDENCE_ALLOW, cookie=self.cookie(first)), None

    def _direction(
        self,
        direction: Direction,
        selecting: list[InternalRule],
        ep: EndpointInfo,
        entries: dict[MapStateKey, MapStateEntry],
        sources: dict[MapStateKey, tuple[str, ...]],
        contribs_out: dict[MapStateKey, list[_Contribution]],
        parsers: dict[MapStateKey, str],
    ) -> bool:
        has = [r for r in selecting if (r.has_ingress if direction == Direction.INGRESS else r.has_egress)]
        mode = self.config.enforcement
        enforced = mode == "always" or (mode == "default" and bool(has))
        if not enforced:
            key = MapStateKey(direction, 0)
            entries[key] = MapStateEntry(precedence=PRECEDENCE_DEFAULT_ALLOW)
            sources[key] = ("policy not enforced in this direction",)
            return False
        contribs: dict[MapStateKey, list[_Contribution]] = defaultdict(list)
        for rule in has:
            for el in rule.elements:
                if el.direction == direction:
                    self._expand(el, ep, contribs)
        opt_out = bool(has) and all(
            not (r.default_deny_ingress if direction == Direction.INGRESS else r.default_deny_egress)
            for r in has
        )
        if opt_out:
            contribs[MapStateKey(direction, 0)].append(
                _Contribution(False, None, (), "enableDefaultDeny=false (allow-all at lowest precedence)")
            )
        for key, cs in contribs.items():
            entry, parser = self._merge(key, cs)
            if opt_out and key == MapStateKey(direction, 0) and not entry.deny and len(cs) == 1:
                entry = MapStateEntry(precedence=PRECEDENCE_DEFAULT_ALLOW)
            entries[key] = entry
            sources[key] = tuple(sorted({c.description for c in cs}))
            contribs_out[key] = cs
            if parser:
                parsers[key] = parser
        if direction == Direction.INGRESS and self.config.allow_localhost:
            key = MapStateKey(direction, HOST_IDENTITY)
            if key not in entries or not entries[key].deny:
                entries[key] = MapStateEntry(precedence=PRECEDENCE_LOCALHOST)
                sources[key] = ("allow-localhost",)
        return True

    # ------------------------------------------------------------------ L7 and deny shadowing

    @staticmethod
    def _shadow_denies(entries: dict[MapStateKey, MapStateEntry]) -> None:
        denies = [(k, e) for k, e in entries.items() if e.deny]
        if not denies:
            return
        for key, entry in list(entries.items()):
            if entry.deny:
                continue
            for dk, de in denies:
                if dk.covers(key):
                    entries[key] = MapStateEntry(deny=True, precedence=PRECEDENCE_DENY, cookie=de.cookie)
                    break

    def _l7_sets(
        self,
        entries: Mapping[MapStateKey, MapStateEntry],
        contribs: Mapping[MapStateKey, list[_Contribution]],
        parsers: Mapping[MapStateKey, str],
    ) -> dict[tuple[Direction, int, int, int], L7Policy]:
        out: dict[tuple[Direction, int, int, int], L7Policy] = {}
        by_port: dict[tuple[Direction, int, int, int], str] = {}
        for key, parser in parsers.items():
            if not entries[key].is_redirect:
                continue
            pk = (key.direction, key.proto, key.port, key.port_prefix)
            if by_port.setdefault(pk, parser) != parser:
                raise PolicyConflictError(
                    f"cannot merge conflicting L7 parsers {sorted({parser, by_port[pk]})} on "
                    f"{key.direction.name.lower()} {key.proto}/{key.port}"
                )
        for pk, parser in by_port.items():
            probe = MapStateKey(pk[0], 0, pk[1], pk[2], pk[3])
            l7_entries: list[L7Entry] = []
            for key, cs in contribs.items():
                if entries[key].deny:
                    continue
                cover = MapStateKey(key.direction, 0, key.proto, key.port, key.port_prefix)
                if not cover.covers(probe):
                    continue
                ids = None if key.identity == 0 else frozenset({key.identity})
                for c in cs:
                    if c.deny:
                        continue
                    rules = c.rules if c.parser == parser else None
                    if c.parser and c.parser != parser:
                        continue
                    l7_entries.append(L7Entry(ids, rules if c.parser else None, self.cookie(c.description)))
            out[pk] = L7Policy(parser, tuple(dict.fromkeys(l7_entries)))
        return out

    # ------------------------------------------------------------------ public

    def resolve(self, ep: EndpointInfo) -> ResolvedPolicy:
        """Resolve one endpoint. Raises PolicyConflictError (caller keeps the old policy)."""
        selecting = self.selecting_rules(ep.labels, ep.identity)
        entries: dict[MapStateKey, MapStateEntry] = {}
        sources: dict[MapStateKey, tuple[str, ...]] = {}
        contribs: dict[MapStateKey, list[_Contribution]] = {}
        parsers: dict[MapStateKey, str] = {}
        ing = self._direction(Direction.INGRESS, selecting, ep, entries, sources, contribs, parsers)
        egr = self._direction(Direction.EGRESS, selecting, ep, entries, sources, contribs, parsers)
        merged = dict(entries)
        self._shadow_denies(entries)
        entries = dict(sorted(entries.items()))
        l7 = self._l7_sets(entries, contribs, parsers)
        policy = self._package(ep, entries, ing, egr, l7, sources)
        self._computed[ep.endpoint_id] = _Computed(
            ep, selecting, {Direction.INGRESS: ing, Direction.EGRESS: egr}, merged, sources,
            contribs, parsers, policy)
        return policy

    def add_identity(self, endpoint_id: int, identity: int) -> ResolvedPolicy:
        """Incremental update after `identity` appeared in the selector cache.

        Only keys for the new identity are computed and merged (Cilium's incremental MapState
        add): the endpoint's other keys are untouched, so the cost does not grow with the
        size of its policy. The endpoint must have been resolved by this resolver before.
        """
        comp = self._computed[endpoint_id]
        fresh: dict[MapStateKey, list[_Contribution]] = defaultdict(list)
        for rule in comp.selecting:
            for el in rule.elements:
                if not comp.enforced[el.direction]:
                    continue
                if not any(not p.is_wildcard and identity in self.cache.select(p) for p in el.peers):
                    continue
                if el.port_groups is None:
                    fresh[MapStateKey(el.direction, identity)].append(
                        _Contribution(el.deny, None, (), el.description))
                    continue
                for group in el.port_groups:
                    self._expand_group(el, group, identity, comp.ep, fresh)
        if not fresh:
            return comp.policy
        entries = dict(comp.policy.entries)
        for key, cs in fresh.items():
            comp.contribs[key] = [*comp.contribs.get(key, ()), *cs]
            entry, parser = self._merge(key, comp.contribs[key])
            comp.merged[key] = entry
            comp.sources[key] = tuple(sorted({c.description for c in comp.contribs[key]}))
            if parser:
                comp.parsers[key] = parser
            entries[key] = entry
        if comp.denies is None or any(e.deny for e in (comp.merged[k] for k in fresh)):
            comp.denies = [(k, e) for k, e in comp.merged.items() if e.deny]
        denies = comp.denies
        for key in fresh:
            if not entries[key].deny:
                for dk, de in denies:
                    if dk.covers(key):
                        entries[key] = MapStateEntry(deny=True, precedence=PRECEDENCE_DENY, cookie=de.cookie)
                        break
        l7 = comp.policy.l7
        if comp.parsers and any(
            entries[k].is_redirect or any(pk[0] == k.direction for pk in l7) for k in fresh
        ):
            l7 = self._l7_sets(entries, comp.contribs, comp.parsers)
        ing, egr = comp.enforced[Direction.INGRESS], comp.enforced[Direction.EGRESS]
        comp.policy = self._package(comp.ep, entries, ing, egr, l7, comp.sources)
        return comp.policy

    def _package(
        self,
        ep: EndpointInfo,
        entries: dict[MapStateKey, MapStateEntry],
        ing: bool,
        egr: bool,
        l7: Mapping[tuple[Direction, int, int, int], L7Policy],
        sources: dict[MapStateKey, tuple[str, ...]],
    ) -> ResolvedPolicy:
        # One cookie table per resolver, shared by every policy it produced (cookies are
        # unique within a resolver), so packaging does not walk every entry.
        names = self._cookie_names
        return ResolvedPolicy(
            endpoint_id=ep.endpoint_id,
            identity=ep.identity,
            revision=self.revision,
            entries=entries,
            ingress_enforced=ing,
            egress_enforced=egr,
            audit=ep.audit or self.config.audit_mode,
            l7=l7,
            cookies=names,
            sources=sources,
        )


def describe_selecting(rules: Iterable[InternalRule]) -> list[str]:
    return [r.origin for r in rules]
