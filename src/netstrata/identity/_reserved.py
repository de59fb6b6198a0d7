"""Reserved identities (reference §2.2): fixed numbers with fixed `reserved:` label sets.

They are never allocated and never stored in the kvstore; every node knows them. Numbers 11-14
are internal markers or policy-map-only aggregates in newer Cilium versions and never name a peer,
so they have no label set here.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from netstrata.labels import SOURCE_RESERVED, LabelSet, reserved


class ReservedIdentity(IntEnum):
    """Cilium's reserved identity numbers."""

    HOST = 1
    WORLD = 2
    UNMANAGED = 3
    HEALTH = 4
    INIT = 5
    REMOTE_NODE = 6
    KUBE_APISERVER = 7
    INGRESS = 8
    WORLD_IPV4 = 9
    WORLD_IPV6 = 10


RESERVED_NAMES: Final[Mapping[ReservedIdentity, str]] = MappingProxyType({
    ReservedIdentity.HOST: "host",
    ReservedIdentity.WORLD: "world",
    ReservedIdentity.UNMANAGED: "unmanaged",
    ReservedIdentity.HEALTH: "health",
    ReservedIdentity.INIT: "init",
    ReservedIdentity.REMOTE_NODE: "remote-node",
    ReservedIdentity.KUBE_APISERVER: "kube-apiserver",
    ReservedIdentity.INGRESS: "ingress",
    ReservedIdentity.WORLD_IPV4: "world-ipv4",
    ReservedIdentity.WORLD_IPV6: "world-ipv6",
})
"""Identity -> the name in its `reserved:<name>` label (and in Hubble's output)."""


def _labels_for(ident: ReservedIdentity) -> LabelSet:
    if ident is ReservedIdentity.KUBE_APISERVER:
        # The apiserver outside this node is reached like a remote node that also carries the
        # kube-apiserver label, so both `remote-node` and `kube-apiserver` entities select it.
        return LabelSet([reserved("kube-apiserver"), reserved("remote-node")])
    return LabelSet([reserved(RESERVED_NAMES[ident])])


RESERVED_LABELS: Final[Mapping[int, LabelSet]] = MappingProxyType(
    {int(i): _labels_for(i) for i in ReservedIdentity})
"""Identity number -> its label set."""

_BY_LABELS: Final = {labels: ident for ident, labels in RESERVED_LABELS.items()}


def labels_of_reserved(identity: int) -> LabelSet | None:
    """The label set of a reserved identity, or None if `identity` is not one."""
    return RESERVED_LABELS.get(identity)


def reserved_identity_for(labels: LabelSet) -> int | None:
    """The reserved identity a label set denotes, or None when it needs an allocated identity.

    Rules, following Cilium's lookup: any set carrying `reserved:host` is the host (1), whatever
    else it carries (the local apiserver adds `reserved:kube-apiserver`, node labels may be added);
    otherwise only a set made purely of `reserved:` labels can be reserved, and it must be one of
    the fixed sets exactly ({remote-node, kube-apiserver} is 7, {world} is 2, ...).
    """
    if labels.has_reserved("host"):
        return int(ReservedIdentity.HOST)
    if not labels or any(lb.source != SOURCE_RESERVED for lb in labels):
        return None
    return _BY_LABELS.get(labels)


def reserved_name(identity: int) -> str | None:
    """`host`, `world`, ... for a reserved identity, else None."""
    try:
        return RESERVED_NAMES[ReservedIdentity(identity)]
    except ValueError:
        return None


__all__ = [
    "RESERVED_LABELS",
    "RESERVED_NAMES",
    "ReservedIdentity",
    "labels_of_reserved",
    "reserved_identity_for",
    "reserved_name",
]
