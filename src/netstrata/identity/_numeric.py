"""The numeric identity layout (reference §2.1), as constants and pure helpers.

A security identity is a 32-bit unsigned integer::

     31        24 23                                   0
    +-----------+---------------------------------------+
    |   scope   |          scope-specific bits           |
    +-----------+---------------------------------------+

    scope 0x00  global: reserved (1-14), well-known (100-115), user-reserved (128-255) and
                allocated identities. The low 24 bits are  cluster_id << shift | local_id,
                shift = 16 with max-connected-clusters 255 (cluster bits 16-23, 16 id bits)
                and 15 with 511 (cluster bits 15-23, 15 id bits). Only these 24 bits travel
                on the wire (VXLAN VNI / Geneve), so the scope byte must be 0.
    scope 0x01  node-local CIDR/FQDN identities, 0x01000001-0x01FFFFFF; never leave the node.
    scope 0x02  remote-node scoped identities (per node, node-selector labels).

Cluster id 0 means "no clustermesh": it allocates 256..(2^shift - 1) so it never collides with
the reserved ranges; cluster c > 0 owns [c * 2^shift, (c + 1) * 2^shift - 1] whole.
Because the scope byte sits above the cluster bits, `cluster_id_of` is 0 for every non-global id.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class IdentityScope(IntEnum):
    """The top byte of an identity."""

    GLOBAL = 0x00
    LOCAL = 0x01
    REMOTE_NODE = 0x02


SCOPE_SHIFT: Final = 24
SCOPE_MASK: Final = 0xFF00_0000
LOCAL_SCOPE_FLAG: Final = IdentityScope.LOCAL << SCOPE_SHIFT
"""0x01000000: set on node-local CIDR/FQDN identities."""
REMOTE_NODE_SCOPE_FLAG: Final = IdentityScope.REMOTE_NODE << SCOPE_SHIFT
"""0x02000000: set on remote-node scoped identities."""
MAX_IDENTITY: Final = 0xFFFF_FFFF

IDENTITY_UNKNOWN: Final = 0
"""Invalid / unknown; in policy keys it is the wildcard "any identity"."""
RESERVED_RANGE: Final = range(1, 15)
"""1-14: reserved identities (1-10 used by every version; 11-14 internal markers)."""
WELL_KNOWN_RANGE: Final = range(100, 116)
"""100-115: Cilium's well-known identities (kube-dns, CoreDNS, cilium-operator, ...)."""
USER_RESERVED_RANGE: Final = range(128, 256)
"""128-255: reserved for users' fixed identities."""
MIN_ALLOCATION_IDENTITY: Final = 256
"""First identity the allocator may hand out in cluster 0."""
LOCAL_IDENTITY_RANGE: Final = range(0x0100_0001, 0x0200_0000)
"""0x01000001-0x01FFFFFF (16777217-33554431): node-local CIDR/FQDN identities."""

VALID_MAX_CONNECTED_CLUSTERS: Final = (255, 511)
_CLUSTER_SHIFT: Final = {255: 16, 511: 15}


def _shift(max_connected_clusters: int) -> int:
    try:
        return _CLUSTER_SHIFT[max_connected_clusters]
    except KeyError:
        raise ValueError(f"max-connected-clusters must be 255 or 511, "
                         f"got {max_connected_clusters}") from None


def cluster_id_shift(max_connected_clusters: int = 255) -> int:
    """Bit position of the cluster id, which is also the width of the per-cluster number:
    16 for 255 clusters, 15 for 511."""
    return _shift(max_connected_clusters)


def check_cluster_id(cluster_id: int, max_connected_clusters: int = 255) -> int:
    """`cluster_id` if it fits the configuration (0..max), else ValueError."""
    _shift(max_connected_clusters)
    if not 0 <= cluster_id <= max_connected_clusters:
        raise ValueError(f"cluster id {cluster_id} is outside 0..{max_connected_clusters} "
                         f"(max-connected-clusters={max_connected_clusters})")
    return cluster_id


def scope_of(identity: int) -> IdentityScope:
    """The scope byte of `identity`.

    Raises:
        ValueError: not a 32-bit value, or an undefined scope.
    """
    if not 0 <= identity <= MAX_IDENTITY:
        raise ValueError(f"identity {identity} is not a 32-bit unsigned value")
    return IdentityScope(identity >> SCOPE_SHIFT)


def is_reserved(identity: int) -> bool:
    return identity in RESERVED_RANGE


def is_local(identity: int) -> bool:
    """True for node-local (CIDR/FQDN) identities."""
    return identity & SCOPE_MASK == LOCAL_SCOPE_FLAG


def cluster_id_of(identity: int, max_connected_clusters: int = 255) -> int:
    """The cluster id bits of a global identity; 0 for reserved and non-global identities."""
    shift = _shift(max_connected_clusters)
    return (identity >> shift) & max_connected_clusters


def make_global(cluster_id: int, local: int, max_connected_clusters: int = 255) -> int:
    """`cluster_id << shift | local`, checking both parts fit.

    Raises:
        ValueError: the cluster id or the local number does not fit the layout.
    """
    shift = _shift(max_connected_clusters)
    check_cluster_id(cluster_id, max_connected_clusters)
    if not 0 <= local < (1 << shift):
        raise ValueError(f"local identity {local} does not fit {shift} bits")
    return (cluster_id << shift) | local


def allocation_range(cluster_id: int, max_connected_clusters: int = 255) -> range:
    """Identities a cluster's allocator may hand out (both ends included in the range).

    cluster 0: 256 .. 2^shift - 1 (256..65535 by default); cluster c > 0:
    c * 2^shift .. (c + 1) * 2^shift - 1 (c=3 → 196608..262143 by default).
    """
    shift = _shift(max_connected_clusters)
    check_cluster_id(cluster_id, max_connected_clusters)
    if cluster_id == 0:
        return range(MIN_ALLOCATION_IDENTITY, 1 << shift)
    return range(cluster_id << shift, (cluster_id + 1) << shift)


__all__ = [
    "IDENTITY_UNKNOWN",
    "LOCAL_IDENTITY_RANGE",
    "LOCAL_SCOPE_FLAG",
    "MAX_IDENTITY",
    "MIN_ALLOCATION_IDENTITY",
    "REMOTE_NODE_SCOPE_FLAG",
    "RESERVED_RANGE",
    "USER_RESERVED_RANGE",
    "VALID_MAX_CONNECTED_CLUSTERS",
    "WELL_KNOWN_RANGE",
    "IdentityScope",
    "allocation_range",
    "check_cluster_id",
    "cluster_id_of",
    "cluster_id_shift",
    "is_local",
    "is_reserved",
    "make_global",
    "scope_of",
]
