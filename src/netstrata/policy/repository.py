"""The policy repository: every applied policy by (kind, namespace, name), with a revision.

Every change bumps the revision (Cilium's `pkg/policy/repository.go` model): a computed policy
records the revision it was computed at, is never mutated, and is recomputed once stale. Changes are
all-or-nothing: `replace_all` validates and translates the new set before touching the old one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from netstrata.api import types as api
from netstrata.policy.rules import Catalog, InternalRule, translate_cilium, translate_network_policy

PolicyRef = tuple[str, str | None, str]
"""(kind, namespace or None, name)."""

AnyPolicy = api.CiliumPolicy | api.NetworkPolicy


def ref_of(p: AnyPolicy) -> PolicyRef:
    if isinstance(p, api.NetworkPolicy):
        return ("NetworkPolicy", p.namespace, p.name)
    return (p.kind, p.namespace, p.name)


@dataclass
class Repository:
    cluster: str = "default"
    local_cluster_default: bool = True
    revision: int = 0
    _policies: dict[PolicyRef, AnyPolicy] = field(default_factory=dict)

    def policies(self) -> list[AnyPolicy]:
        return [self._policies[k] for k in sorted(self._policies, key=lambda r: (r[0], r[1] or "", r[2]))]

    def upsert(self, policies: Iterable[AnyPolicy]) -> int:
        """Create or replace policies by (kind, namespace, name); returns the new revision."""
        for p in policies:
            self._policies[ref_of(p)] = p
        self.revision += 1
        return self.revision

    def delete(self, refs: Iterable[PolicyRef]) -> int:
        for r in refs:
            self._policies.pop(r, None)
        self.revision += 1
        return self.revision

    def replace_all(self, policies: Iterable[AnyPolicy]) -> int:
        new = {ref_of(p): p for p in policies}
        self._policies = new
        self.revision += 1
        return self.revision

    def rules(self, catalog: Catalog | None = None) -> list[InternalRule]:
        cat = catalog or Catalog()
        out: list[InternalRule] = []
        for p in self.policies():
            if isinstance(p, api.NetworkPolicy):
                out.append(translate_network_policy(p, self.cluster, self.local_cluster_default))
            else:
                out.extend(translate_cilium(p, self.cluster, cat, self.local_cluster_default))
        return out
