"""Value types shared by every kvstore backend (a leaf module: imports nothing from netstrata).

The model is etcd's, because etcd is the backend Cilium uses and the one we will add next: a single
store-wide `revision` that grows by one per committed change, per-key `create_revision` /
`mod_revision` / `version`, leases that own keys, and transactions that commit a list of writes
only if every comparison on `mod_revision` holds (`mod_revision == 0` means "key absent").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class KVEntry:
    """One key as stored."""

    key: str
    """The full key, e.g. `cilium/state/identities/v1/id/256`."""
    value: str
    """The value; backends store text (JSON or Cilium's label-set strings)."""
    create_revision: int
    """Store revision at which this key was (last) created."""
    mod_revision: int
    """Store revision of the last write to this key; what `Compare` checks."""
    version: int
    """Writes since creation, starting at 1 (etcd's `version`)."""
    lease: int | None = None
    """Lease that owns the key (deleted when the lease expires), or None."""


@dataclass(frozen=True, slots=True)
class KVEvent:
    """One change seen by a watch."""

    kind: Literal["put", "delete"]
    """`put` for a create or an update, `delete` for a delete or a lease expiry."""
    key: str
    """The key that changed."""
    value: str
    """The new value for `put`; the last value for `delete`."""
    revision: int
    """Store revision of the change (equal for every event of one transaction)."""
    created: bool = False
    """For `put`: True when the key did not exist before."""


@dataclass(frozen=True, slots=True)
class Compare:
    """A transaction guard: the key's `mod_revision` must equal `mod_revision` (0: key absent)."""

    key: str
    """Key to check."""
    mod_revision: int
    """Expected `mod_revision`; 0 requires the key to be absent."""


@dataclass(frozen=True, slots=True)
class Put:
    """A transaction write."""

    key: str
    """Key to create or overwrite."""
    value: str
    """Value to store."""
    lease: int | None = None
    """Lease to attach; None detaches the key from any lease (etcd semantics)."""


@dataclass(frozen=True, slots=True)
class Delete:
    """A transaction delete; deleting an absent key is a no-op."""

    key: str
    """Key to delete."""


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class KVStoreStatistics:
    """A snapshot for metrics (trio-style `statistics()`)."""

    revision: int
    """Current store revision."""
    keys: int
    """Number of keys."""
    leases: int
    """Live leases."""
    watches: int
    """Open watches."""
    file_writes: int
    """Snapshots written to the backing file since construction (0 without a file)."""


__all__ = ["Compare", "Delete", "KVEntry", "KVEvent", "KVStoreStatistics", "Op", "Put"]
