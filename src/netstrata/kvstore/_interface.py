"""`KVStore`: the one synchronous interface every backend implements.

Why synchronous: the consumers (identity allocation, the ipcache writer, clustermesh export) are
cores that must stay testable without a loop (STYLE.md, async boundaries). The embedded backend
answers from memory; a future etcd backend will run its client on a worker thread behind the same
methods and surface connection loss as `KVStoreUnavailable`, which callers treat as "fail closed".

Time is passed in (`now`, seconds on any clock the caller chooses, used consistently): leases are
granted and expired against it, never against a clock the store reads itself.

A backend implements the abstract core (`get_entry`, `list_entries`, `txn`, leases, watches);
everything else here is defined on top of it, so every backend gets identical semantics for
`create_if_absent`, `update_if_revision` and friends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from netstrata.kvstore._watch import DEFAULT_MAX_PENDING, Watch
from netstrata.kvstore.types import Compare, Delete, KVEntry, KVStoreStatistics, Op, Put


class KVStore(ABC):
    """A revisioned key/value store with leases, transactions and prefix watches."""

    # -- core every backend provides ------------------------------------------------------

    @property
    @abstractmethod
    def revision(self) -> int:
        """The store revision: 0 when empty and new, +1 per committed change."""

    @abstractmethod
    def get_entry(self, key: str) -> KVEntry | None:
        """The entry under `key` with its revisions, or None."""

    @abstractmethod
    def list_entries(self, prefix: str) -> list[KVEntry]:
        """Every entry whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int | None:
        """Apply `ops` atomically if every comparison holds.

        Returns:
            The store revision after the commit (unchanged when `ops` changed nothing), or None
            when a comparison failed and nothing was written.

        Raises:
            ValueError: a `Put` names a lease that does not exist.
            KVStoreUnavailable: the change could not be made durable; nothing was applied.
        """

    @abstractmethod
    def grant_lease(self, ttl: float, now: float) -> int:
        """Create a lease that expires at `now + ttl` unless kept alive; returns its id."""

    @abstractmethod
    def keep_alive(self, lease: int, now: float) -> bool:
        """Push the lease's deadline to `now + ttl`. False if the lease no longer exists."""

    @abstractmethod
    def revoke_lease(self, lease: int) -> list[str]:
        """Delete the lease and every key it owns; returns the deleted keys, sorted."""

    @abstractmethod
    def expire(self, now: float) -> list[str]:
        """Revoke every lease whose deadline is at or before `now`; returns deleted keys, sorted."""

    @abstractmethod
    def next_expiry(self) -> float | None:
        """The earliest lease deadline (when `expire` next has work), or None (aioquic's timer)."""

    @abstractmethod
    def watch_prefix(self, prefix: str, *, include_existing: bool = False,
                     max_pending: int = DEFAULT_MAX_PENDING,
                     notify: Callable[[], None] | None = None) -> Watch:
        """Watch every change under `prefix` from now on.

        Args:
            prefix: key prefix ("" watches everything).
            include_existing: first queue a `put` event for every current key under the prefix,
                atomically with registering the watch, so list+watch leaves no gap.
            max_pending: events the watch may buffer before it is cut off.
            notify: called (without blocking) after events are queued; for async adapters.
        """

    @abstractmethod
    def statistics(self) -> KVStoreStatistics:
        """A snapshot for metrics."""

    @abstractmethod
    def close(self) -> None:
        """Flush what must be flushed and close every watch; idempotent."""

    # -- derived operations ---------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The value under `key`, or None."""
        entry = self.get_entry(key)
        return None if entry is None else entry.value

    def list_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """`(key, value)` pairs under `prefix`, sorted by key."""
        return [(e.key, e.value) for e in self.list_entries(prefix)]

    def put(self, key: str, value: str, lease: int | None = None) -> int:
        """Create or overwrite `key`; returns the new store revision."""
        rev = self.txn((), (Put(key, value, lease),))
        assert rev is not None  # no comparisons, so it cannot fail them
        return rev

    def delete(self, key: str) -> bool:
        """Delete `key`; False if it was absent."""
        while True:
            # Compare-and-delete, so "was it there" is answered by the same commit that deletes;
            # a lost race with another writer just reads the key again.
            entry = self.get_entry(key)
            if entry is None:
                return False
            if self.txn((Compare(key, entry.mod_revision),), (Delete(key),)) is not None:
                return True

    def delete_prefix(self, prefix: str) -> list[str]:
        """Delete every key under `prefix` in one transaction; returns them, sorted.

        Keys created after the listing are not deleted (a backend with a native range delete
        may do better).
        """
        keys = [e.key for e in self.list_entries(prefix)]
        if keys:
            self.txn((), tuple(Delete(k) for k in keys))
        return keys

    def create_if_absent(self, key: str, value: str, lease: int | None = None) -> bool:
        """Compare-and-create: write `key` only if it does not exist. True if written."""
        return self.txn((Compare(key, 0),), (Put(key, value, lease),)) is not None

    def update_if_revision(self, key: str, value: str, mod_revision: int,
                           lease: int | None = None) -> bool:
        """Compare-and-swap: write only if the key's `mod_revision` is still `mod_revision`.

        `mod_revision=0` behaves as `create_if_absent`. True if written.
        """
        return self.txn((Compare(key, mod_revision),), (Put(key, value, lease),)) is not None

    def delete_if_revision(self, key: str, mod_revision: int) -> bool:
        """Compare-and-delete: delete only if the key's `mod_revision` is `mod_revision`."""
        if mod_revision == 0:
            return False
        return self.txn((Compare(key, mod_revision),), (Delete(key),)) is not None

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
