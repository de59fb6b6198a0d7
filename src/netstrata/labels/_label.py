"""Labels with sources, as Cilium models them (`source:key=value`).

A label's source says where it came from: `k8s` (pod, namespace and derived labels), `reserved`
(Cilium's reserved identities), `cidr`/`fqdn`/`cidrgroup` (generated identities), `node`, or
`unspec`. A selector key without a source, or with `any:`, matches a label of any source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

SOURCE_ANY: Final = "any"
SOURCE_K8S: Final = "k8s"
SOURCE_RESERVED: Final = "reserved"
SOURCE_CIDR: Final = "cidr"
SOURCE_FQDN: Final = "fqdn"
SOURCE_CIDRGROUP: Final = "cidrgroup"
SOURCE_NODE: Final = "node"
SOURCE_UNSPEC: Final = "unspec"

KNOWN_SOURCES: Final = frozenset(
    {SOURCE_ANY, SOURCE_K8S, SOURCE_RESERVED, SOURCE_CIDR, SOURCE_FQDN, SOURCE_CIDRGROUP,
     SOURCE_NODE, SOURCE_UNSPEC, "container", "kvstore", "directory", "cni"}
)

# Derived label keys Cilium adds to every pod identity (reference §1.9), all of source k8s.
LABEL_NAMESPACE: Final = "io.kubernetes.pod.namespace"
LABEL_NAMESPACE_LABELS_PREFIX: Final = "io.cilium.k8s.namespace.labels."
LABEL_SERVICE_ACCOUNT: Final = "io.cilium.k8s.policy.serviceaccount"
LABEL_CLUSTER: Final = "io.cilium.k8s.policy.cluster"


def split_source(key: str, default: str = SOURCE_ANY) -> tuple[str, str]:
    """Split `source:key` into (source, key). Kubernetes keys never contain `:`."""
    if ":" in key:
        source, _, rest = key.partition(":")
        return source, rest
    return default, key


@dataclass(frozen=True, slots=True, order=True)
class Label:
    """One label. Ordered by (source, key, value) so sets render deterministically."""

    source: str
    key: str
    value: str = ""

    @classmethod
    def parse(cls, text: str, default_source: str = SOURCE_UNSPEC) -> Label:
        """Parse `source:key=value`, `key=value` or `source:key`."""
        head, sep, value = text.partition("=")
        source, key = split_source(head, default_source)
        return cls(source, key, value if sep else "")

    def __str__(self) -> str:
        return f"{self.source}:{self.key}={self.value}" if self.value != "" else f"{self.source}:{self.key}"


class LabelSet(frozenset[Label]):
    """An immutable set of labels; the identity of a workload is its label set."""

    @classmethod
    def of(cls, labels: Iterable[Label]) -> LabelSet:
        return cls(labels)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str], source: str = SOURCE_K8S) -> LabelSet:
        out = []
        for k, v in mapping.items():
            src, key = split_source(k, source)
            out.append(Label(src, key, str(v)))
        return cls(out)

    def sorted(self) -> list[Label]:
        return sorted(self)

    def kvstore_key(self) -> str:
        """Cilium's kvstore encoding: labels sorted, each `source:key=value;`, concatenated."""
        return "".join(f"{lb.source}:{lb.key}={lb.value};" for lb in self.sorted())

    def strings(self) -> list[str]:
        """`source:key=value` strings (`source:key` when the value is empty), sorted: Hubble's
        endpoint `labels` shape."""
        return [str(lb) for lb in self.sorted()]

    def lookup(self, source: str, key: str) -> list[Label]:
        """Labels with this key; `source` `any` matches every source."""
        return [lb for lb in self if lb.key == key and (source == SOURCE_ANY or lb.source == source)]

    def has_reserved(self, name: str) -> bool:
        return Label(SOURCE_RESERVED, name) in self

    def __repr__(self) -> str:
        return "LabelSet{" + ", ".join(str(lb) for lb in self.sorted()) + "}"


def reserved(name: str) -> Label:
    return Label(SOURCE_RESERVED, name)
