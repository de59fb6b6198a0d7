"""Cilium's kvstore layout for identities (reference §5.1) and its label-set encoding (§2.3).

    cilium/state/identities/v1/id/<numeric id>            -> label-set string
    cilium/state/identities/v1/value/<label-set>/<node>   -> numeric id (reverse index, per node)
    cilium/state/identities/v1/locks/<label-set>          -> allocation guard (see _allocator)

A label-set string is the labels sorted, each written `source:key=value;`, concatenated, e.g.
`k8s:app=web;k8s:io.kubernetes.pod.namespace=default;`. It contains `/` (label keys such as
`app.kubernetes.io/name` do), but never a `/` right after a `;`, so `value/<label-set>/` is an
unambiguous prefix: no other label set's reverse-index keys start with it.
"""

from __future__ import annotations

from typing import Final

from netstrata.labels import Label, LabelSet

IDENTITIES_PREFIX: Final = "cilium/state/identities/v1/"
ID_PREFIX: Final = IDENTITIES_PREFIX + "id/"
VALUE_PREFIX: Final = IDENTITIES_PREFIX + "value/"
LOCKS_PREFIX: Final = IDENTITIES_PREFIX + "locks/"


def encode_label_set(labels: LabelSet) -> str:
    """Cilium's kvstore string for a label set."""
    return labels.kvstore_key()


def decode_label_set(text: str) -> LabelSet:
    """Parse a label-set string written by `encode_label_set` (or by Cilium).

    Raises:
        ValueError: not `source:key=value;` items.
    """
    if not text.endswith(";"):
        raise ValueError(f"label-set string {text!r} does not end with ';'")
    out: list[Label] = []
    for item in text[:-1].split(";"):
        head, eq, value = item.partition("=")
        source, colon, key = head.partition(":")
        if not (eq and colon and source and key):
            raise ValueError(f"label-set string {text!r}: bad item {item!r}")
        out.append(Label(source, key, value))
    return LabelSet(out)


def id_key(identity: int) -> str:
    return f"{ID_PREFIX}{identity}"


def parse_id_key(key: str) -> int | None:
    """The identity in an `id/<n>` key, or None for any other key."""
    if not key.startswith(ID_PREFIX):
        return None
    tail = key[len(ID_PREFIX):]
    return int(tail) if tail.isdigit() else None


def value_prefix(labels: LabelSet) -> str:
    return f"{VALUE_PREFIX}{encode_label_set(labels)}/"


def value_key(labels: LabelSet, node: str) -> str:
    return value_prefix(labels) + node


def lock_key(labels: LabelSet) -> str:
    return f"{LOCKS_PREFIX}{encode_label_set(labels)}"


def check_node_name(node: str) -> str:
    """`node` if it can end a reverse-index key (non-empty, no `/`), else ValueError."""
    if not node or "/" in node:
        raise ValueError(f"node name {node!r} must be non-empty and contain no '/'")
    return node
