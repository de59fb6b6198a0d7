"""`EmbeddedKVStore`: the default backend, in memory, optionally backed by one JSON file.

It serves a single process (one agent, the lab, tests). Several threads may share it: one lock
guards the state, and watch events are queued while that lock is held, so they come out in
commit order. Two processes must not open the same file; share a store between processes with
the etcd backend instead.

Durability: with a path and `write_through=True` (the default) every committed change rewrites
the file atomically before the call returns, and if that write fails the change is rolled back
and `KVStoreUnavailable` is raised, so memory never runs ahead of disk. With
`write_through=False` changes are written on `flush()` and `close()` only (faster bulk loads, at
the price of losing unflushed changes on a crash).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from netstrata.errors import KVStoreUnavailable
from netstrata.kvstore._interface import KVStore
from netstrata.kvstore._persist import Snapshot, encode_snapshot, read_snapshot, write_atomically
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


@dataclass(slots=True)
class _Lease:
    ttl: float
    deadline: float | None
    """None after a reload until the caller next passes `now` (see _persist)."""


class EmbeddedKVStore(KVStore):
    """In-memory `KVStore`; persistent when given a path."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 write_through: bool = True, fsync: bool = False) -> None:
        """Open (or create) a store.

        Args:
            path: JSON file to load from and persist to; None keeps the store in memory only.
            write_through: persist on every change (True) or only on `flush()`/`close()`.
            fsync: also fsync the file and its directory on each write (power-loss safety).

        Raises:
            KVStoreUnavailable: the file exists but cannot be read or is not a valid store.
        """
        self._lock = threading.RLock()
        self._path = Path(path) if path is not None else None
        self._write_through = write_through
        self._fsync = fsync
        self._watches: list[Watch] = []
        self._dirty = False
        self._closed = False
        self._file_writes = 0
        snap = self._load() if self._path is not None else None
        snap = snap or Snapshot()
        self._revision = snap.revision
        self._next_lease = snap.next_lease
        self._entries: dict[str, KVEntry] = dict(snap.entries)
        self._leases = {lid: _Lease(ttl, None) for lid, ttl in snap.leases.items()}
        self._lease_keys: dict[int, set[str]] = {lid: set() for lid in self._leases}
        for entry in self._entries.values():
            if entry.lease is not None:
                self._lease_keys[entry.lease].add(entry.key)

    @property
    def path(self) -> Path | None:
        return self._path

    def _load(self) -> Snapshot | None:
        assert self._path is not None
        try:
            return read_snapshot(self._path)
        except (OSError, ValueError) as exc:
            raise KVStoreUnavailable(
                f"kvstore file {self._path} cannot be loaded: {exc}") from exc

    # -- reads --------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        with self._lock:
            return self._revision

    def get_entry(self, key: str) -> KVEntry | None:
        with self._lock:
            return self._entries.get(key)

    def list_entries(self, prefix: str) -> list[KVEntry]:
        with self._lock:
            found = [e for k, e in self._entries.items() if k.startswith(prefix)]
        found.sort(key=lambda e: e.key)
        return found

    # -- transactions -------------------------------------------------------------------------

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int | None:
        with self._lock:
            self._check_open_locked()
            for c in compares:
                entry = self._entries.get(c.key)
                if (entry.mod_revision if entry is not None else 0) != c.mod_revision:
                    return None
            for op in ops:
                if not op.key:
                    raise ValueError("kvstore keys must be non-empty")
                if isinstance(op, Put) and op.lease is not None and op.lease not in self._leases:
                    raise ValueError(f"lease {op.lease} does not exist (expired or revoked?)")
            return self._commit_locked(ops)

    def _commit_locked(self, ops: Sequence[Op]) -> int:
        # caller holds self._lock. Applies ops at revision+1, persists, then publishes events;
        # a failed persist restores every touched key and the revision.
        rev = self._revision + 1
        undo: dict[str, KVEntry | None] = {}
        events: list[KVEvent] = []
        for op in ops:
            old = self._entries.get(op.key)
            if isinstance(op, Delete) and old is None:
                continue
            undo.setdefault(op.key, old)
            if isinstance(op, Put):
                new = KVEntry(op.key, op.value, rev if old is None else old.create_revision, rev,
                              1 if old is None else old.version + 1, op.lease)
                self._set_entry_locked(op.key, old, new)
                events.append(KVEvent("put", op.key, op.value, rev, created=old is None))
            else:
                assert old is not None
                self._set_entry_locked(op.key, old, None)
                events.append(KVEvent("delete", op.key, old.value, rev))
        if not events:
            return self._revision
        self._revision = rev
        try:
            self._changed_locked()
        except KVStoreUnavailable:
            for key, old in undo.items():
                self._set_entry_locked(key, self._entries.get(key), old)
            self._revision = rev - 1
            raise
        self._publish_locked(events)
        return rev

    def _set_entry_locked(self, key: str, old: KVEntry | None, new: KVEntry | None) -> None:
        # caller holds self._lock; keeps the lease -> keys index in step with the entries.
        if old is not None and old.lease is not None and old.lease in self._lease_keys:
            self._lease_keys[old.lease].discard(key)
        if new is None:
            self._entries.pop(key, None)
            return
        self._entries[key] = new
        if new.lease is not None:
            self._lease_keys.setdefault(new.lease, set()).add(key)

    # -- leases -------------------------------------------------------------------------------

    def grant_lease(self, ttl: float, now: float) -> int:
        if not ttl > 0:
            raise ValueError(f"lease ttl must be positive, got {ttl!r}")
        with self._lock:
            self._check_open_locked()
            lid = self._next_lease
            self._next_lease += 1
            self._leases[lid] = _Lease(float(ttl), now + ttl)
            self._lease_keys[lid] = set()
            try:
                self._changed_locked()
            except KVStoreUnavailable:
                del self._leases[lid], self._lease_keys[lid]
                self._next_lease -= 1
                raise
            return lid

    def keep_alive(self, lease: int, now: float) -> bool:
        with self._lock:
            found = self._leases.get(lease)
            if found is None:
                return False
            found.deadline = now + found.ttl
            return True

    def revoke_lease(self, lease: int) -> list[str]:
        with self._lock:
            self._check_open_locked()
            if lease not in self._leases:
                return []
            # Drop the lease first so the one write that deletes its keys also drops the lease.
            removed = self._leases.pop(lease)
            owned = self._lease_keys.pop(lease, set())
            keys = sorted(owned)
            try:
                if keys:
                    self._commit_locked(tuple(Delete(k) for k in keys))
                else:
                    self._changed_locked()
            except KVStoreUnavailable:
                self._leases[lease] = removed
                self._lease_keys[lease] = owned
                raise
            return keys

    def expire(self, now: float) -> list[str]:
        with self._lock:
            due: list[int] = []
            for lid, lease in self._leases.items():
                if lease.deadline is None:
                    lease.deadline = now + lease.ttl  # reloaded: start a fresh TTL
                elif lease.deadline <= now:
                    due.append(lid)
            deleted: list[str] = []
            for lid in sorted(due):
                deleted.extend(self.revoke_lease(lid))
            return sorted(deleted)

    def next_expiry(self) -> float | None:
        with self._lock:
            deadlines = [lease.deadline for lease in self._leases.values()
                         if lease.deadline is not None]
            return min(deadlines) if deadlines else None

    # -- watches ------------------------------------------------------------------------------

    def watch_prefix(self, prefix: str, *, include_existing: bool = False,
                     max_pending: int = DEFAULT_MAX_PENDING,
                     notify: Callable[[], None] | None = None) -> Watch:
        watch = Watch(prefix, max_pending=max_pending, notify=notify, on_close=self._forget_watch)
        with self._lock:
            self._check_open_locked()
            if include_existing:
                for entry in sorted(self._entries.values(), key=lambda e: e.key):
                    if watch.matches(entry.key):
                        watch.push(KVEvent("put", entry.key, entry.value, entry.mod_revision,
                                           created=True))
            self._watches.append(watch)
        return watch

    def _forget_watch(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def _publish_locked(self, events: list[KVEvent]) -> None:
        # caller holds self._lock, so every watch sees events in commit order.
        live = [w for w in self._watches if not w.closed]
        self._watches = live
        for watch in live:
            for event in events:
                if watch.matches(event.key):
                    watch.push(event)

    # -- persistence --------------------------------------------------------------------------

    def _changed_locked(self) -> None:
        # caller holds self._lock
        self._dirty = True
        if self._write_through:
            self._flush_locked()

    def _flush_locked(self) -> None:
        # caller holds self._lock
        if self._path is None or not self._dirty:
            self._dirty = False
            return
        snap = Snapshot(self._revision, self._next_lease,
                        {lid: lease.ttl for lid, lease in self._leases.items()}, self._entries)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self._path, encode_snapshot(snap), fsync=self._fsync)
        except OSError as exc:
            raise KVStoreUnavailable(f"kvstore file {self._path} cannot be written: {exc}") from exc
        self._dirty = False
        self._file_writes += 1

    def flush(self) -> None:
        """Write pending changes to the file now (a no-op without a path or changes).

        Raises:
            KVStoreUnavailable: the file cannot be written.
        """
        with self._lock:
            self._flush_locked()

    def _check_open_locked(self) -> None:
        if self._closed:
            raise KVStoreUnavailable("kvstore is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._flush_locked()
            finally:
                self._closed = True
                watches, self._watches = self._watches, []
        for watch in watches:
            watch.close()

    def statistics(self) -> KVStoreStatistics:
        with self._lock:
            return KVStoreStatistics(self._revision, len(self._entries), len(self._leases),
                                     sum(1 for w in self._watches if not w.closed),
                                     self._file_writes)
