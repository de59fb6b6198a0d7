"""`IdentityAllocator`: cluster-wide numeric identities for label sets, kept in the kvstore.

Equal label sets share one identity across every node of a cluster (reference §2.3). Agents
agree through the kvstore, in Cilium's layout (see `_kvlayout`):

* `id/<n>` (the master key) maps the identity to its label-set string;
* `value/<label-set>/<node>` (one per node using it) maps back, and doubles as the node's claim;
* `locks/<label-set>` is a guard whose `mod_revision` every allocate and release of that label set
  compares and bumps in the same transaction.

Why a guard key instead of Cilium's etcd mutex: a mutex needs a session lease, so a crashed holder
would block allocation until the caller's clock expired it. A revision guard serializes the same
critical sections optimistically (a loser simply retries), leaves nothing to clean up after a
crash, and needs only `txn`, which every backend has. It is what makes "two agents allocate the
same new label set at once" end with one identity instead of two.

Allocation walks the cluster's range from a cursor that only moves forward (wrapping at the end),
like PID allocation: a released identity is not handed out again until the range wraps, so stale
references to it (ipcache entries, policy maps on other nodes) have time to drain. Cilium picks
randomly for the same reason; a cursor is as safe and keeps ids reproducible.

Reference counts are per allocator (per node): `allocate` twice, `release` twice. When the last
node lets go of a label set, its master key and guard go too. `collect_garbage` removes master keys
no node claims any more (nodes that vanished without releasing), as Cilium's operator does.
"""

from __future__ import annotations

import builtins
import threading
from dataclasses import dataclass

from netstrata.identity._errors import IdentityAllocationError
from netstrata.identity._kvlayout import (
    ID_PREFIX,
    check_node_name,
    decode_label_set,
    encode_label_set,
    id_key,
    lock_key,
    parse_id_key,
    value_key,
    value_prefix,
)
from netstrata.identity._numeric import allocation_range, check_cluster_id
from netstrata.identity._reserved import labels_of_reserved, reserved_identity_for
from netstrata.kvstore import Compare, Delete, KVEntry, KVStore, Op, Put
from netstrata.labels import (
    SOURCE_CIDR,
    SOURCE_CIDRGROUP,
    SOURCE_FQDN,
    SOURCE_RESERVED,
    LabelSet,
)

LOCAL_ONLY_SOURCES = frozenset({SOURCE_CIDR, SOURCE_FQDN, SOURCE_CIDRGROUP})
"""Label sources that only node-local identities carry (`LocalIdentityAllocator`)."""

DEFAULT_MAX_RETRIES = 64
"""Transactions one call may lose to other writers before giving up. A loss means another agent
changed the same label set or took the candidate id at the same moment, so each retry makes
progress; 64 losses in a row means the store is pathologically contended."""


@dataclass(frozen=True, slots=True)
class IdentityAllocatorStatistics:
    """A snapshot for metrics."""

    cluster_id: int
    """This allocator's cluster."""
    range_first: int
    """First identity of the cluster's range."""
    range_last: int
    """Last identity of the cluster's range."""
    label_sets_held: int
    """Label sets this allocator holds at least one reference to."""
    references: int
    """Sum of this allocator's reference counts."""
    allocations: int
    """New master keys this allocator created."""
    conflicts: int
    """Transactions lost to concurrent writers (each was retried)."""


@dataclass(slots=True)
class _Ref:
    identity: int
    count: int


def check_global_labels(labels: LabelSet) -> None:
    """Raise ValueError unless `labels` may get a cluster-wide identity."""
    if not labels:
        raise ValueError("an empty label set has no identity (Cilium uses reserved:init until "
                         "an endpoint's labels are known)")
    local = sorted({lb.source for lb in labels} & LOCAL_ONLY_SOURCES)
    if local:
        raise ValueError(f"labels of source {', '.join(local)} get node-local identities; "
                         "use LocalIdentityAllocator")
    if any(lb.source == SOURCE_RESERVED for lb in labels):
        raise ValueError(f"{labels!r} mixes reserved labels into a set that is not a reserved "
                         "identity")


class IdentityAllocator:
    """Allocates global identities in one cluster's range, shared through a `KVStore`."""

    def __init__(self, kvstore: KVStore, cluster_id: int = 0, max_connected_clusters: int = 255,
                 *, node: str = "local", lease: int | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        """Args:
            kvstore: the store every agent of the cluster shares.
            cluster_id: 0 without clustermesh, else 1..max_connected_clusters.
            max_connected_clusters: 255 or 511 (must match on every peer).
            node: this agent's node name; suffix of its reverse-index keys. Use one allocator
                per node name: two allocators with one name share claims.
            lease: attach this node's reverse-index keys to a kvstore lease, so they vanish when
                the node stops renewing it (master keys are then garbage-collected).
            max_retries: see `DEFAULT_MAX_RETRIES`.
        """
        check_cluster_id(cluster_id, max_connected_clusters)
        self._store = kvstore
        self.cluster_id = cluster_id
        self.max_connected_clusters = max_connected_clusters
        self.node = check_node_name(node)
        self._lease = lease
        self._max_retries = max_retries
        self._range = allocation_range(cluster_id, max_connected_clusters)
        self._lock = threading.Lock()
        self._refs: dict[LabelSet, _Ref] = {}
        self._labels_by_id: dict[int, LabelSet] = {}
        self._allocations = 0
        self._conflicts = 0
        self._cursor = self._initial_cursor()

    @property
    def allocation_range(self) -> range:
        """The identities this allocator may hand out."""
        return self._range

    def _initial_cursor(self) -> int:
        # Resume after the highest identity in use, so a restarted agent does not hand out an
        # identity that was released just before it stopped.
        used = [i for e in self._store.list_entries(ID_PREFIX)
                if (i := parse_id_key(e.key)) is not None and i in self._range]
        return max(used) + 1 if used else self._range.start

    # -- queries ------------------------------------------------------------------------------

    def lookup(self, identity: int) -> LabelSet | None:
        """The labels of `identity` (reserved ones included), or None if unknown.

        An entry whose label-set string does not parse is treated as unknown.
        """
        reserved = labels_of_reserved(identity)
        if reserved is not None:
            return reserved
        value = self._store.get(id_key(identity))
        if value is None:
            return None
        try:
            return decode_label_set(value)
        except ValueError:
            return None

    def lookup_by_labels(self, labels: LabelSet) -> int | None:
        """The identity of `labels` in this cluster (reserved ones included), or None."""
        reserved = reserved_identity_for(labels)
        if reserved is not None:
            return reserved
        with self._lock:
            ref = self._refs.get(labels)
            if ref is not None:
                return ref.identity
        found = self._existing(labels)
        return None if found is None else found[0]

    def list(self) -> list[tuple[int, LabelSet]]:
        """Every allocated identity in the store, sorted by id (reserved ones not included)."""
        out: list[tuple[int, LabelSet]] = []
        for entry in self._store.list_entries(ID_PREFIX):
            ident = parse_id_key(entry.key)
            if ident is None:
                continue
            try:
                out.append((ident, decode_label_set(entry.value)))
            except ValueError:
                continue  # not ours to repair; lookup() treats it as unknown too
        out.sort(key=lambda item: item[0])
        return out

    def references(self, labels: LabelSet) -> int:
        """This allocator's reference count for `labels`."""
        with self._lock:
            ref = self._refs.get(labels)
            return 0 if ref is None else ref.count

    def _existing(self, labels: LabelSet) -> tuple[int, KVEntry] | None:
        """An identity some node already claims for `labels` in our range, with its master."""
        encoded = encode_label_set(labels)
        claims = self._store.list_entries(value_prefix(labels))
        own = value_key(labels, self.node)
        claims.sort(key=lambda e: e.key != own)  # after a restart, prefer our own claim
        for claim in claims:
            if not claim.value.isdigit() or int(claim.value) not in self._range:
                continue  # another cluster's id (or a changed cluster id): not ours to reuse
            master = self._store.get_entry(id_key(int(claim.value)))
            if master is not None and master.value == encoded:
                return int(claim.value), master
        return None

    # -- allocate -----------------------------------------------------------------------------

    def allocate(self, labels: LabelSet) -> int:
        """The identity of `labels`, allocating it if no node has yet; adds one reference.

        Idempotent: equal label sets get the same identity from every allocator sharing the
        store, and after a restart from the same persisted store. Reserved label sets return
        their reserved identity (and are not counted).

        Raises:
            ValueError: empty labels, CIDR/FQDN labels, or reserved labels mixed with others.
            IdentityAllocationError: the cluster's range is exhausted, or the store stayed
                contended for `max_retries` attempts.
            KVStoreUnavailable: the store failed.
        """
        reserved = reserved_identity_for(labels)
        if reserved is not None:
            return reserved
        check_global_labels(labels)
        labels = LabelSet(labels)
        with self._lock:
            ref = self._refs.get(labels)
            if ref is not None:
                ref.count += 1
                return ref.identity
            for _ in range(self._max_retries):
                ident = self._try_allocate(labels)
                if ident is not None:
                    self._refs[labels] = _Ref(ident, 1)
                    self._labels_by_id[ident] = labels
                    return ident
                self._conflicts += 1
        raise IdentityAllocationError(
            f"could not allocate an identity for {labels!r}: the kvstore stayed contended for "
            f"{self._max_retries} attempts")

    def _try_allocate(self, labels: LabelSet) -> int | None:
        # caller holds self._lock. One optimistic attempt; None when a comparison failed.
        guard = self._store.get_entry(lock_key(labels))
        guard_compare = Compare(lock_key(labels), guard.mod_revision if guard else 0)
        claim_key = value_key(labels, self.node)
        bump = Put(lock_key(labels), self.node)
        found = self._existing(labels)
        if found is not None:
            ident, master = found
            ops: tuple[Op, ...] = (Put(claim_key, str(ident), self._lease), bump)
            ok = self._store.txn((guard_compare, Compare(master.key, master.mod_revision)), ops)
            return ident if ok is not None else None
        ident = self._next_free()
        ops = (Put(id_key(ident), encode_label_set(labels)),
               Put(claim_key, str(ident), self._lease), bump)
        if self._store.txn((guard_compare, Compare(id_key(ident), 0)), ops) is None:
            return None
        self._allocations += 1
        self._cursor = ident + 1
        return ident

    def _next_free(self) -> int:
        # caller holds self._lock
        first, size = self._range.start, len(self._range)
        start = self._cursor if self._cursor in self._range else first
        for step in range(size):
            candidate = first + (start - first + step) % size
            if self._store.get_entry(id_key(candidate)) is None:
                self._cursor = candidate
                return candidate
        raise IdentityAllocationError(
            f"identity range {self._range.start}..{self._range[-1]} of cluster {self.cluster_id} "
            f"is exhausted: all {size} identities are in use (release identities or limit "
            "identity-relevant labels)")

    # -- release ------------------------------------------------------------------------------

    def release(self, identity_or_labels: int | LabelSet) -> bool:
        """Drop one reference. True when it was this allocator's last one for that label set.

        The node's claim is then deleted, and when no node claims the identity any more its
        master key is deleted too. Reserved identities and unknown ones return False.

        Raises:
            IdentityAllocationError: the store stayed contended for `max_retries` attempts.
            KVStoreUnavailable: the store failed.
        """
        with self._lock:
            if isinstance(identity_or_labels, int):
                labels = self._labels_by_id.get(identity_or_labels)
            else:
                labels = LabelSet(identity_or_labels)
            ref = self._refs.get(labels) if labels is not None else None
            if labels is None or ref is None:
                return False
            ref.count -= 1
            if ref.count > 0:
                return False
            for _ in range(self._max_retries):
                if self._try_release(labels, ref.identity):
                    del self._refs[labels]
                    del self._labels_by_id[ref.identity]
                    return True
                self._conflicts += 1
            ref.count += 1
        raise IdentityAllocationError(
            f"could not release identity {ref.identity}: the kvstore stayed contended for "
            f"{self._max_retries} attempts")

    def _try_release(self, labels: LabelSet, ident: int) -> bool:
        # caller holds self._lock
        guard = self._store.get_entry(lock_key(labels))
        compares = [Compare(lock_key(labels), guard.mod_revision if guard else 0)]
        ops: builtins.list[Op] = []  # `list` is a method name in this class
        own_key = value_key(labels, self.node)
        still_claimed = False
        for claim in self._store.list_entries(value_prefix(labels)):
            if claim.key == own_key:
                compares.append(Compare(claim.key, claim.mod_revision))
                ops.append(Delete(claim.key))
            elif claim.value == str(ident):
                still_claimed = True
        if still_claimed:
            ops.append(Put(lock_key(labels), self.node))
        else:
            master = self._store.get_entry(id_key(ident))
            if master is not None and master.value == encode_label_set(labels):
                compares.append(Compare(master.key, master.mod_revision))
                ops.append(Delete(master.key))
            ops.append(Delete(lock_key(labels)))
        return self._store.txn(compares, ops) is not None

    def collect_garbage(self) -> builtins.list[int]:
        """Delete master keys in our range that no node claims any more; returns their ids.

        Safe against concurrent allocation: a master and its first claim are created in one
        transaction, and each deletion compares the label set's guard.
        """
        removed: builtins.list[int] = []
        for ident, labels in self.list():
            if ident not in self._range:
                continue
            with self._lock:
                if self._collect_one(ident, labels):
                    removed.append(ident)
        return removed

    def _collect_one(self, ident: int, labels: LabelSet) -> bool:
        # caller holds self._lock
        guard = self._store.get_entry(lock_key(labels))
        claims = self._store.list_entries(value_prefix(labels))
        if any(c.value == str(ident) for c in claims):
            return False
        master = self._store.get_entry(id_key(ident))
        if master is None:
            return False
        compares = (Compare(lock_key(labels), guard.mod_revision if guard else 0),
                    Compare(master.key, master.mod_revision))
        # Claims on another identity of the same labels still need the guard: bump it then.
        guard_op: Op = Put(lock_key(labels), self.node) if claims else Delete(lock_key(labels))
        return self._store.txn(compares, (Delete(master.key), guard_op)) is not None

    def statistics(self) -> IdentityAllocatorStatistics:
        with self._lock:
            return IdentityAllocatorStatistics(
                self.cluster_id, self._range.start, self._range[-1], len(self._refs),
                sum(r.count for r in self._refs.values()), self._allocations, self._conflicts)
