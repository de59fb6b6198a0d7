"""The selector cache: selector -> set of identities, kept current as identities come and go.

Selectors are interned by canonical string, evaluated once against the identity universe, and
updated incrementally: adding or removing an identity touches only the cached selections it
changes, and the caller learns which selectors changed so it can re-resolve only the endpoints
whose policy uses them (Cilium's `pkg/policy/selectorcache.go` model).

Evaluation uses an index from (key, value) and key to identities so that a selector with an
equality requirement only tests the identities that could match, which keeps a cluster with
thousands of identities and selectors fast.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from netstrata.labels import SOURCE_ANY, LabelSet
from netstrata.policy.peers import NO_FACTS, IdentityFacts, LabelPeer, PeerSelector


class SelectorCache:
    """Not thread-safe: the owner (the agent's policy loop) serialises access."""

    def __init__(self, facts: IdentityFacts = NO_FACTS) -> None:
        self._facts = facts
        self._identities: dict[int, LabelSet] = {}
        self._by_kv: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._by_key: dict[str, set[int]] = defaultdict(set)
        self._selectors: dict[str, PeerSelector] = {}
        self._selections: dict[str, frozenset[int]] = {}
        # Reverse index: a selector is filed under one "anchor" requirement it cannot match
        # without (an In value or an Exists key), so a new identity is tested only against
        # selectors that could select it.
        self._anchored_kv: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._anchored_key: dict[str, set[str]] = defaultdict(set)
        self._unanchored: set[str] = set()
        self.revision = 0

    # ------------------------------------------------------------------ identities

    @property
    def identities(self) -> Mapping[int, LabelSet]:
        return self._identities

    def _index(self, identity: int, labels: LabelSet, add: bool) -> None:
        for lb in labels:
            for kv in ((lb.key, lb.value),):
                (self._by_kv[kv].add if add else self._by_kv[kv].discard)(identity)
            (self._by_key[lb.key].add if add else self._by_key[lb.key].discard)(identity)

    def upsert_identity(self, identity: int, labels: LabelSet) -> set[str]:
        """Add (or relabel) an identity; returns the canonical strings of changed selectors."""
        old = self._identities.get(identity)
        if old == labels:
            return set()
        if old is not None:
            self._index(identity, old, add=False)
        self._identities[identity] = labels
        self._index(identity, labels, add=True)
        changed = set()
        candidates = set(self._unanchored)
        for lb in labels:
            candidates |= self._anchored_kv.get((lb.key, lb.value), set())
            candidates |= self._anchored_key.get(lb.key, set())
        if old is not None:  # a relabel may drop the identity from any selection
            candidates |= {k for k, ids in self._selections.items() if identity in ids}
        for key in candidates:
            sel = self._selectors[key]
            now = sel.selects(identity, labels, self._facts)
            had = identity in self._selections[key]
            if now != had:
                cur = set(self._selections[key])
                (cur.add if now else cur.discard)(identity)
                self._selections[key] = frozenset(cur)
                changed.add(key)
        self.revision += 1
        return changed

    def remove_identity(self, identity: int) -> set[str]:
        labels = self._identities.pop(identity, None)
        if labels is None:
            return set()
        self._index(identity, labels, add=False)
        changed = set()
        for key, ids in self._selections.items():
            if identity in ids:
                self._selections[key] = ids - {identity}
                changed.add(key)
        self.revision += 1
        return changed

    def refresh(self) -> None:
        """Re-evaluate every selector (after facts outside labels changed, e.g. endpoint IPs)."""
        for key, sel in self._selectors.items():
            self._selections[key] = self._evaluate(sel)

    # ------------------------------------------------------------------ selectors

    def _candidates(self, sel: PeerSelector) -> Iterable[int]:
        if not isinstance(sel, LabelPeer) or sel.selector.all_:
            return self._identities.keys()
        best: set[int] | None = None
        for req in sel.selector.requirements:
            if req.operator == "In":
                cand: set[int] = set()
                for v in req.values:
                    cand |= self._by_kv.get((req.key, v), set())
            elif req.operator == "Exists":
                cand = self._by_key.get(req.key, set())
            else:
                continue
            if best is None or len(cand) < len(best):
                best = cand
        return self._identities.keys() if best is None else list(best)

    def _evaluate(self, sel: PeerSelector) -> frozenset[int]:
        ids = self._identities
        return frozenset(
            i for i in self._candidates(sel) if sel.selects(i, ids[i], self._facts)
        )

    def select(self, sel: PeerSelector) -> frozenset[int]:
        """The identities `sel` selects now (interned: computed once, then kept current)."""
        key = sel.canonical()
        cached = self._selections.get(key)
        if cached is None:
            self._selectors[key] = sel
            self._file_anchor(key, sel)
            cached = self._selections[key] = self._evaluate(sel)
        return cached

    def _file_anchor(self, key: str, sel: PeerSelector) -> None:
        if isinstance(sel, LabelPeer) and not sel.selector.all_:
            for req in sel.selector.requirements:
                if req.operator == "In" and req.values:
                    for v in req.values:
                        self._anchored_kv[(req.key, v)].add(key)
                    return
            for req in sel.selector.requirements:
                if req.operator == "Exists":
                    self._anchored_key[req.key].add(key)
                    return
        self._unanchored.add(key)

    def statistics(self) -> dict[str, int]:
        return {"identities": len(self._identities), "selectors": len(self._selectors)}

    def uses(self, sel: PeerSelector) -> str:
        return sel.canonical()


__all__ = ["SOURCE_ANY", "SelectorCache"]
