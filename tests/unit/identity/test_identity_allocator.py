"""IdentityAllocator: idempotence, sharing, restarts, ranges, key layout, refcounts, GC."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.identity import (
    IdentityAllocationError,
    IdentityAllocator,
    decode_label_set,
    encode_label_set,
    id_key,
    identity_labels_for_pod,
)
from netstrata.kvstore import EmbeddedKVStore, Put
from netstrata.labels import Label, LabelSet, reserved

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
PREFIX = "cilium/state/identities/v1/"


def pod(app: str, ns: str = "default", cluster: str = "default") -> LabelSet:
    return identity_labels_for_pod({"app": app}, ns, {"kubernetes.io/metadata.name": ns},
                                   "default", cluster)


WEB = LabelSet([Label("k8s", "app", "web"), Label("k8s", "io.kubernetes.pod.namespace", "prod")])
DB = LabelSet([Label("k8s", "app", "db"), Label("k8s", "io.kubernetes.pod.namespace", "prod")])


def test_allocate_is_idempotent_and_starts_at_256() -> None:
    a = IdentityAllocator(EmbeddedKVStore())
    web = a.allocate(WEB)
    assert web == 256
    assert a.allocate(LabelSet(set(WEB))) == web  # an equal set, built anew
    db = a.allocate(DB)
    assert db == 257
    assert a.lookup(web) == WEB and a.lookup(db) == DB
    assert a.lookup_by_labels(WEB) == web
    assert a.lookup_by_labels(pod("unknown")) is None
    assert a.lookup(999) is None
    assert a.list() == [(256, WEB), (257, DB)]
    assert a.references(WEB) == 2


def test_cilium_key_layout() -> None:
    store = EmbeddedKVStore()
    a = IdentityAllocator(store, node="node-1")
    ident = a.allocate(WEB)
    encoded = "k8s:app=web;k8s:io.kubernetes.pod.namespace=prod;"
    assert encode_label_set(WEB) == encoded
    assert store.get(f"{PREFIX}id/{ident}") == encoded
    assert store.get(f"{PREFIX}value/{encoded}/node-1") == str(ident)
    assert decode_label_set(encoded) == WEB


def test_label_set_strings_with_slashes_and_empty_values() -> None:
    labels = LabelSet([Label("k8s", "app.kubernetes.io/name", "shop"), Label("k8s", "flag", "")])
    text = encode_label_set(labels)
    assert text == "k8s:app.kubernetes.io/name=shop;k8s:flag=;"
    assert decode_label_set(text) == labels
    for bad in ["k8s:a=b", "a=b;", "k8s:=x;", ";"]:
        with pytest.raises(ValueError):
            decode_label_set(bad)


def test_two_allocators_on_one_store_agree() -> None:
    store = EmbeddedKVStore()
    n1 = IdentityAllocator(store, node="node-1")
    n2 = IdentityAllocator(store, node="node-2")
    assert n1.allocate(WEB) == n2.allocate(WEB)
    assert n2.allocate(DB) == n1.allocate(DB)
    assert n1.lookup_by_labels(DB) == n2.lookup_by_labels(DB)
    assert n1.list() == n2.list()
    claims = [k.rsplit("/", 1)[1] for k, _ in store.list_prefix(f"{PREFIX}value/")]
    assert sorted(claims) == ["node-1", "node-1", "node-2", "node-2"]


def test_restart_with_file_persistence_keeps_identities(tmp_path: Path) -> None:
    path = tmp_path / "kvstore.json"
    store = EmbeddedKVStore(path)
    a = IdentityAllocator(store, node="node-1")
    web, db = a.allocate(WEB), a.allocate(DB)
    store.close()

    store2 = EmbeddedKVStore(path)
    b = IdentityAllocator(store2, node="node-1")
    assert b.lookup(web) == WEB
    assert b.allocate(DB) == db and b.allocate(WEB) == web
    fresh = b.allocate(pod("new"))
    assert fresh not in (web, db)
    # A different node restarting against the same file also agrees.
    assert IdentityAllocator(EmbeddedKVStore(path), node="node-2").allocate(WEB) == web


def test_cluster_ranges() -> None:
    store = EmbeddedKVStore()
    c3 = IdentityAllocator(store, cluster_id=3, node="n")
    assert c3.allocation_range == range(196608, 262144)
    first = c3.allocate(pod("a", cluster="c3"))
    assert first == 196608
    assert 196608 <= c3.allocate(pod("b", cluster="c3")) <= 262143
    wide = IdentityAllocator(EmbeddedKVStore(), cluster_id=3, max_connected_clusters=511)
    assert wide.allocate(WEB) == 3 << 15
    with pytest.raises(ValueError):
        IdentityAllocator(store, cluster_id=256)
    with pytest.raises(ValueError):
        IdentityAllocator(store, cluster_id=1, max_connected_clusters=100)


def test_identities_of_another_cluster_range_are_not_reused() -> None:
    # The same store (and the same labels) seen by an allocator of a different cluster id: it must
    # not hand out an id outside its own range.
    store = EmbeddedKVStore()
    c1 = IdentityAllocator(store, cluster_id=1, node="n")
    c2 = IdentityAllocator(store, cluster_id=2, node="n")
    i1, i2 = c1.allocate(WEB), c2.allocate(WEB)
    assert i1 in c1.allocation_range and i2 in c2.allocation_range and i1 != i2


def test_reserved_label_sets_return_reserved_ids_and_are_not_stored() -> None:
    store = EmbeddedKVStore()
    a = IdentityAllocator(store)
    assert a.allocate(LabelSet([reserved("host")])) == 1
    assert a.allocate(LabelSet([reserved("world")])) == 2
    assert a.allocate(LabelSet([reserved("remote-node"), reserved("kube-apiserver")])) == 7
    assert a.lookup(2) == LabelSet([reserved("world")])
    assert a.lookup_by_labels(LabelSet([reserved("health")])) == 4
    assert a.release(2) is False
    assert store.list_prefix("") == []


@pytest.mark.parametrize("labels", [
    LabelSet(),
    LabelSet([reserved("world"), Label("cidr", "10.0.0.0/8")]),
    LabelSet([reserved("world"), Label("fqdn", "*.example.com")]),
    LabelSet([Label("k8s", "app", "x"), reserved("world")]),
])
def test_labels_that_need_no_global_identity_are_refused(labels: LabelSet) -> None:
    with pytest.raises(ValueError):
        IdentityAllocator(EmbeddedKVStore()).allocate(labels)


def test_release_counts_references() -> None:
    store = EmbeddedKVStore()
    a = IdentityAllocator(store, node="n1")
    ident = a.allocate(WEB)
    a.allocate(WEB)
    assert a.release(ident) is False
    assert a.lookup(ident) == WEB
    assert a.release(WEB) is True  # by labels works too
    assert a.lookup(ident) is None
    assert store.list_prefix(PREFIX) == []  # master, claim and guard all gone
    assert a.release(ident) is False
    assert a.release(DB) is False


def test_release_by_one_node_keeps_the_identity_for_others() -> None:
    store = EmbeddedKVStore()
    n1 = IdentityAllocator(store, node="n1")
    n2 = IdentityAllocator(store, node="n2")
    ident = n1.allocate(WEB)
    n2.allocate(WEB)
    assert n1.release(ident) is True
    assert n2.lookup(ident) == WEB
    assert n1.allocate(WEB) == ident  # rejoining finds the same id
    n1.release(ident)
    n2.release(ident)
    assert store.list_prefix(PREFIX) == []


def test_released_identity_is_not_reused_right_away(tmp_path: Path) -> None:
    path = tmp_path / "kv.json"
    a = IdentityAllocator(EmbeddedKVStore(path))
    first = a.allocate(WEB)
    a.release(first)
    second = a.allocate(DB)
    assert second != first
    # Also not after a restart: the cursor resumes past the highest identity in use.
    a2 = IdentityAllocator(EmbeddedKVStore(path))
    third = a2.allocate(pod("x"))
    assert third not in (first, second) and third > second


def test_exhaustion_is_a_clear_error() -> None:
    store = EmbeddedKVStore()
    rng = IdentityAllocator(store, cluster_id=5).allocation_range
    # Fill the range directly (fast), leaving one free identity.
    store.txn([], [Put(id_key(i), f"k8s:filler={i};") for i in rng[:-1]])
    a = IdentityAllocator(store, cluster_id=5)
    assert a.allocate(WEB) == rng[-1]
    with pytest.raises(IdentityAllocationError) as info:
        a.allocate(DB)
    msg = str(info.value)
    assert "327680..393215" in msg and "cluster 5" in msg and "exhausted" in msg
    # Existing label sets still resolve.
    assert a.allocate(WEB) == rng[-1]


def test_concurrent_first_allocation_from_many_nodes_yields_one_identity() -> None:
    store = EmbeddedKVStore()
    nodes = [IdentityAllocator(store, node=f"node-{i}") for i in range(8)]
    sets = [pod(f"app{i}") for i in range(20)]
    results: dict[int, list[int]] = {}
    barrier = threading.Barrier(len(nodes))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = [nodes[i].allocate(s) for s in sets]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == results[0] for i in results)
    assert len(set(results[0])) == len(sets)
    assert len(store.list_prefix(f"{PREFIX}id/")) == len(sets)


def test_garbage_collection_of_unclaimed_masters() -> None:
    store = EmbeddedKVStore()
    lease = store.grant_lease(10, now=0)
    dead = IdentityAllocator(store, node="dead", lease=lease)
    alive = IdentityAllocator(store, node="alive")
    orphan = dead.allocate(WEB)
    shared = dead.allocate(DB)
    alive.allocate(DB)
    assert alive.collect_garbage() == []
    store.expire(10)  # the dead node's claims vanish with its lease
    assert alive.lookup(orphan) == WEB  # masters outlive claims until collected
    assert alive.collect_garbage() == [orphan]
    assert alive.lookup(orphan) is None and alive.lookup(shared) == DB
    assert store.list_prefix(f"{PREFIX}locks/") == [
        (f"{PREFIX}locks/{encode_label_set(DB)}", "alive")]


def test_undecodable_master_is_unknown() -> None:
    store = EmbeddedKVStore()
    store.put(id_key(300), "garbage")
    a = IdentityAllocator(store)
    assert a.lookup(300) is None
    assert a.list() == []
    assert a.allocate(WEB) == 301  # the cursor resumes past every id in use


def test_statistics() -> None:
    a = IdentityAllocator(EmbeddedKVStore(), cluster_id=2)
    a.allocate(WEB)
    a.allocate(WEB)
    a.allocate(DB)
    st_ = a.statistics()
    assert (st_.cluster_id, st_.range_first, st_.range_last) == (2, 131072, 196607)
    assert (st_.label_sets_held, st_.references, st_.allocations) == (2, 3, 2)


def test_node_name_is_checked() -> None:
    with pytest.raises(ValueError):
        IdentityAllocator(EmbeddedKVStore(), node="a/b")


label = st.tuples(st.sampled_from(["app", "tier", "env", "app.kubernetes.io/name"]),
                  st.sampled_from(["a", "b", "c", ""]))
label_sets = st.lists(
    st.lists(label, min_size=1, max_size=4).map(
        lambda kvs: LabelSet(Label("k8s", k, v) for k, v in kvs)),
    min_size=1, max_size=25)


@settings(max_examples=400 if DEEP else 50, deadline=None)
@given(label_sets)
def test_distinct_ids_iff_label_sets_differ(sets: list[LabelSet]) -> None:
    store = EmbeddedKVStore()
    n1 = IdentityAllocator(store, node="n1")
    n2 = IdentityAllocator(store, node="n2")
    ids = [(n1 if i % 2 else n2).allocate(s) for i, s in enumerate(sets)]
    for i, a in enumerate(sets):
        for j, b in enumerate(sets):
            assert (ids[i] == ids[j]) == (a == b)
    assert all(i in n1.allocation_range for i in ids)
    assert all(n1.lookup(i) == s for i, s in zip(ids, sets, strict=True))


class _RacingStore(EmbeddedKVStore):
    """Runs `hook` once, right before the next transaction commits (a deterministic race)."""

    hook: object = None

    def txn(self, compares, ops):  # type: ignore[no-untyped-def]
        hook, self.hook = self.hook, None
        if callable(hook):
            hook()
        return super().txn(compares, ops)


def test_racing_first_allocations_of_one_label_set_end_with_one_identity() -> None:
    store = _RacingStore()
    b = IdentityAllocator(store, node="b")
    b.release(b.allocate(DB))  # b's cursor is now past 256; the store is empty again
    a = IdentityAllocator(store, node="a")
    # a reads the store, picks 256 for WEB, and just before it commits b allocates WEB (at 257).
    store.hook = lambda: b.allocate(WEB)
    ident = a.allocate(WEB)
    assert ident == b.lookup_by_labels(WEB) == 257
    assert [i for i, _ in a.list()] == [257]
    assert a.statistics().conflicts == 1


def test_release_racing_a_join_keeps_the_identity() -> None:
    store = _RacingStore()
    a = IdentityAllocator(store, node="a")
    b = IdentityAllocator(store, node="b")
    ident = a.allocate(WEB)
    # a sees no other claim and is about to delete the master when b joins.
    store.hook = lambda: b.allocate(WEB)
    assert a.release(ident) is True
    assert b.lookup(ident) == WEB
    assert store.get(id_key(ident)) is not None
