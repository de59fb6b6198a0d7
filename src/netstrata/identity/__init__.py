"""Numeric security identities (reference §2): layout, reserved ids, labels, allocation.

* `_numeric`: the 32-bit layout (scope byte, cluster bits, per-cluster ranges) as pure helpers;
* `_reserved`: identities 1-10 and their `reserved:` label sets;
* `_labelfilter`: which pod labels form an identity (Cilium's default label filter);
* `_allocator`: `IdentityAllocator`, cluster-wide identities shared through the kvstore in
  Cilium's key layout (`_kvlayout`);
* `_local`: `LocalIdentityAllocator`, node-local CIDR/FQDN identities;
* `_cache`: `IdentityCache`, the id -> labels snapshot the selector cache iterates.

This package knows labels and the kvstore interface; it knows nothing about policy, the datapath
or asyncio. Identities are plain `int`s here (`policy.types.NumericIdentity` is the same value).
"""

from netstrata.identity._allocator import (
    DEFAULT_MAX_RETRIES,
    IdentityAllocator,
    IdentityAllocatorStatistics,
    check_global_labels,
)
from netstrata.identity._cache import IdentityCache, IdentityDelta, IdentitySource
from netstrata.identity._errors import IdentityAllocationError
from netstrata.identity._kvlayout import (
    ID_PREFIX,
    IDENTITIES_PREFIX,
    LOCKS_PREFIX,
    VALUE_PREFIX,
    decode_label_set,
    encode_label_set,
    id_key,
    lock_key,
    parse_id_key,
    value_key,
    value_prefix,
)
from netstrata.identity._labelfilter import (
    CILIUM_OWNED_PREFIX,
    DEFAULT_CLUSTER_NAME,
    DEFAULT_LABEL_FILTER,
    LabelFilter,
    LabelRule,
    identity_labels_for_pod,
)
from netstrata.identity._local import (
    LocalAllocatorStatistics,
    LocalIdentityAllocator,
    cidr_labels,
    fqdn_labels,
    world_label,
)
from netstrata.identity._numeric import (
    IDENTITY_UNKNOWN,
    LOCAL_IDENTITY_RANGE,
    LOCAL_SCOPE_FLAG,
    MAX_IDENTITY,
    MIN_ALLOCATION_IDENTITY,
    REMOTE_NODE_SCOPE_FLAG,
    RESERVED_RANGE,
    USER_RESERVED_RANGE,
    VALID_MAX_CONNECTED_CLUSTERS,
    WELL_KNOWN_RANGE,
    IdentityScope,
    allocation_range,
    check_cluster_id,
    cluster_id_of,
    cluster_id_shift,
    is_local,
    is_reserved,
    make_global,
    scope_of,
)
from netstrata.identity._reserved import (
    RESERVED_LABELS,
    RESERVED_NAMES,
    ReservedIdentity,
    labels_of_reserved,
    reserved_identity_for,
    reserved_name,
)

__all__ = [
    "CILIUM_OWNED_PREFIX",
    "DEFAULT_CLUSTER_NAME",
    "DEFAULT_LABEL_FILTER",
    "DEFAULT_MAX_RETRIES",
    "IDENTITIES_PREFIX",
    "IDENTITY_UNKNOWN",
    "ID_PREFIX",
    "LOCAL_IDENTITY_RANGE",
    "LOCAL_SCOPE_FLAG",
    "LOCKS_PREFIX",
    "MAX_IDENTITY",
    "MIN_ALLOCATION_IDENTITY",
    "REMOTE_NODE_SCOPE_FLAG",
    "RESERVED_LABELS",
    "RESERVED_NAMES",
    "RESERVED_RANGE",
    "USER_RESERVED_RANGE",
    "VALID_MAX_CONNECTED_CLUSTERS",
    "VALUE_PREFIX",
    "WELL_KNOWN_RANGE",
    "IdentityAllocationError",
    "IdentityAllocator",
    "IdentityAllocatorStatistics",
    "IdentityCache",
    "IdentityDelta",
    "IdentityScope",
    "IdentitySource",
    "LabelFilter",
    "LabelRule",
    "LocalAllocatorStatistics",
    "LocalIdentityAllocator",
    "ReservedIdentity",
    "allocation_range",
    "check_cluster_id",
    "check_global_labels",
    "cidr_labels",
    "cluster_id_of",
    "cluster_id_shift",
    "decode_label_set",
    "encode_label_set",
    "fqdn_labels",
    "id_key",
    "identity_labels_for_pod",
    "is_local",
    "is_reserved",
    "labels_of_reserved",
    "lock_key",
    "make_global",
    "parse_id_key",
    "reserved_identity_for",
    "reserved_name",
    "scope_of",
    "value_key",
    "value_prefix",
    "world_label",
]
