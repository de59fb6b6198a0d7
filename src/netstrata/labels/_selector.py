"""Kubernetes label selectors over source-qualified labels (reference §1.9).

`matchLabels` are equality requirements; `matchExpressions` support In, NotIn, Exists and
DoesNotExist; everything is AND-ed. NotIn and DoesNotExist match when the key is absent.
A requirement key may carry a source prefix (`k8s:app`, `reserved:host`); without one (or with
`any:`) it matches labels of any source. Selectors are values: equal requirement sets compare
equal and share one canonical string, which the selector cache interns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from netstrata.labels._label import SOURCE_ANY, LabelSet, split_source

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: Final[frozenset[str]] = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


@dataclass(frozen=True, slots=True, order=True)
class Requirement:
    """One `key op values` requirement. `source` is `any` unless the key was prefixed."""

    source: str
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: LabelSet) -> bool:
        found = labels.lookup(self.source, self.key)
        if self.operator == "Exists":
            return bool(found)
        if self.operator == "DoesNotExist":
            return not found
        if self.operator == "In":
            return any(lb.value in self.values for lb in found)
        if self.operator == "NotIn":
            return not any(lb.value in self.values for lb in found)
        raise ValueError(f"unknown operator {self.operator!r}")

    def render(self) -> str:
        key = self.key if self.source == SOURCE_ANY else f"{self.source}:{self.key}"
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{key} {self.operator}"
        if self.operator == "In" and len(self.values) == 1:
            return f"{key}={self.values[0]}"
        return f"{key} {self.operator} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class Selector:
    """An endpoint selector: a conjunction of requirements; `all_` selects literally everything.

    The empty selector (no requirements) selects every identity, reserved ones included. Policy
    injection (namespace, cluster) narrows it before it reaches the selector cache.
    """

    requirements: tuple[Requirement, ...] = ()
    all_: bool = False
    """The `all` entity / `reserved:all` wildcard: matches every identity including world."""
    _canonical: str = field(default="", compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        # Computed once: the selector cache and incremental updates compare selectors by
        # this string many thousands of times.
        object.__setattr__(self, "_canonical", self._render())

    @classmethod
    def make(cls, requirements: Iterable[Requirement], all_: bool = False) -> Selector:
        return cls(tuple(sorted(set(requirements))), all_)

    @classmethod
    def from_k8s(
        cls,
        match_labels: Mapping[str, str] | None = None,
        match_expressions: Iterable[tuple[str, str, Iterable[str]]] = (),
    ) -> Selector:
        reqs: list[Requirement] = []
        for k, v in (match_labels or {}).items():
            src, key = split_source(k)
            if src == "reserved" and key == "all":
                return cls((), True)
            reqs.append(Requirement(src, key, "In", (str(v),)))
        for k, op, values in match_expressions:
            src, key = split_source(k)
            vals = tuple(sorted(set(values))) if op in ("In", "NotIn") else ()
            reqs.append(Requirement(src, key, op, vals))
        return cls.make(reqs)

    def with_requirements(self, extra: Iterable[Requirement]) -> Selector:
        if self.all_:
            return self
        return Selector.make([*self.requirements, *extra])

    def has_key(self, key: str, source: str | None = None) -> bool:
        return any(r.key == key and (source is None or r.source in (source, SOURCE_ANY))
                   for r in self.requirements)

    def has_key_prefix(self, prefix: str) -> bool:
        return any(r.key.startswith(prefix) for r in self.requirements)

    def has_source(self, source: str) -> bool:
        return any(r.source == source for r in self.requirements)

    def matches(self, labels: LabelSet) -> bool:
        if self.all_:
            return True
        return all(r.matches(labels) for r in self.requirements)

    @property
    def is_empty(self) -> bool:
        return not self.all_ and not self.requirements

    def canonical(self) -> str:
        """A stable string naming this selector (used for interning and in explanations)."""
        return self._canonical

    def _render(self) -> str:
        if self.all_:
            return "reserved:all"
        if not self.requirements:
            return "{}"
        return "{" + ", ".join(r.render() for r in self.requirements) + "}"

    def __str__(self) -> str:
        return self.canonical()
