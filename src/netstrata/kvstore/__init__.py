"""The kvstore: one synchronous, revisioned key/value interface and its backends.

Identity allocation, the ipcache and clustermesh keep their shared state here under Cilium's key
layout (reference §5.1). `KVStore` is the interface (etcd's model: revisions, leases driven by an
injected clock, compare-on-revision transactions, prefix watches); `EmbeddedKVStore` is the default
backend, in memory with optional JSON file persistence. An etcd backend will implement the same
interface. This package knows nothing about identities or policy.
"""

from netstrata.kvstore._aio import watch_events
from netstrata.kvstore._embedded import EmbeddedKVStore
from netstrata.kvstore._interface import KVStore
from netstrata.kvstore._watch import DEFAULT_MAX_PENDING, Watch
from netstrata.kvstore.types import (
    Compare,
    Delete,
    KVEntry,
    KVEvent,
    KVStoreStatistics,
    Op,
    Put,
)

__all__ = [
    "DEFAULT_MAX_PENDING",
    "Compare",
    "Delete",
    "EmbeddedKVStore",
    "KVEntry",
    "KVEvent",
    "KVStore",
    "KVStoreStatistics",
    "Op",
    "Put",
    "Watch",
    "watch_events",
]
