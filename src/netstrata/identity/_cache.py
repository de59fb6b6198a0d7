"""`IdentityCache`: an immutable snapshot of the identity universe, id -> labels.

The selector cache iterates it to find which identities each selector matches, and compares two
snapshots (`diff`) to push only added and removed identities to its users. It holds reserved
identities (unless asked not to), the cluster's allocated identities, remote clusters' identities
and node-local CIDR/FQDN identities alike: anything with a `list()` of `(id, labels)` is a source.
Iteration is in ascending id order, so everything derived from it is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from netstrata.identity._reserved import RESERVED_LABELS
from netstrata.labels import LabelSet


class IdentitySource(Protocol):
    """Anything that can enumerate identities (the allocators, a clustermesh mirror)."""

    def list(self) -> list[tuple[int, LabelSet]]: ...


@dataclass(frozen=True, slots=True)
class IdentityDelta:
    """What changed between two snapshots; each part sorted by id."""

    added: tuple[tuple[int, LabelSet], ...]
    """Identities new in the newer snapshot, or whose labels changed (with the new labels)."""
    removed: tuple[int, ...]
    """Identities gone from the newer snapshot, or whose labels changed."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class IdentityCache(Mapping[int, LabelSet]):
    """Immutable id -> LabelSet mapping, iterated in ascending id order."""

    __slots__ = ("_by_id", "_ids", "_by_labels")

    def __init__(self, identities: Iterable[tuple[int, LabelSet]] = (), *,
                 include_reserved: bool = True) -> None:
        """Raises:
            ValueError: one id given two different label sets (sources disagree).
        """
        by_id: dict[int, LabelSet] = dict(RESERVED_LABELS) if include_reserved else {}
        for ident, labels in identities:
            known = by_id.get(ident)
            if known is not None and known != labels:
                raise ValueError(f"identity {ident} has two label sets: {known!r} and {labels!r}")
            by_id[ident] = LabelSet(labels)
        self._by_id = by_id
        self._ids = tuple(sorted(by_id))
        self._by_labels: dict[LabelSet, int] | None = None

    @classmethod
    def snapshot(cls, *sources: IdentitySource, include_reserved: bool = True) -> IdentityCache:
        """A snapshot of the reserved identities plus everything the sources list now."""
        return cls((item for src in sources for item in src.list()),
                   include_reserved=include_reserved)

    def __getitem__(self, identity: int) -> LabelSet:
        return self._by_id[identity]

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, identity: object) -> bool:
        return identity in self._by_id

    def lookup_by_labels(self, labels: LabelSet) -> int | None:
        """The lowest identity with exactly these labels, or None."""
        if self._by_labels is None:
            index: dict[LabelSet, int] = {}
            for ident in reversed(self._ids):
                index[self._by_id[ident]] = ident
            self._by_labels = index
        return self._by_labels.get(labels)

    def with_identities(self, identities: Iterable[tuple[int, LabelSet]]) -> IdentityCache:
        """A new snapshot with these identities added or replaced."""
        merged = dict(self._by_id)
        merged.update((i, LabelSet(ls)) for i, ls in identities)
        return IdentityCache(merged.items(), include_reserved=False)

    def without(self, identities: Iterable[int]) -> IdentityCache:
        """A new snapshot without these identities."""
        drop = set(identities)
        return IdentityCache(((i, ls) for i, ls in self._by_id.items() if i not in drop),
                             include_reserved=False)

    def diff(self, newer: Mapping[int, LabelSet]) -> IdentityDelta:
        """What to tell selector-cache users to go from this snapshot to `newer`."""
        added = [(i, ls) for i, ls in newer.items() if self._by_id.get(i) != ls]
        removed = [i for i, ls in self._by_id.items() if newer.get(i) != ls]
        return IdentityDelta(tuple(sorted(added, key=lambda t: t[0])), tuple(sorted(removed)))

    def __repr__(self) -> str:
        return f"IdentityCache({len(self)} identities)"
