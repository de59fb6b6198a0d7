"""EmbeddedKVStore: reads, writes, revisions, transactions, leases, persistence (in-memory and file)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from netstrata.errors import KVStoreUnavailable
from netstrata.kvstore import Compare, Delete, EmbeddedKVStore, KVStore, Put


def test_put_get_delete_and_revisions() -> None:
    s = EmbeddedKVStore()
    assert isinstance(s, KVStore)
    assert s.revision == 0
    assert s.get("a") is None
    assert s.put("a", "1") == 1
    assert s.put("b", "2") == 2
    assert s.put("a", "3") == 3
    entry = s.get_entry("a")
    assert entry is not None
    assert (entry.value, entry.create_revision, entry.mod_revision, entry.version) == ("3", 1, 3, 2)
    assert s.delete("a") is True
    assert s.delete("a") is False
    assert s.get("a") is None
    assert s.revision == 4
    # Recreating a key restarts its create_revision and version.
    s.put("a", "x")
    entry = s.get_entry("a")
    assert entry is not None and (entry.create_revision, entry.version) == (5, 1)


def test_list_prefix_is_sorted_and_prefix_exact() -> None:
    s = EmbeddedKVStore()
    for k in ["p/b", "p/a", "q/a", "p/c/d", "pp"]:
        s.put(k, k.upper())
    assert s.list_prefix("p/") == [("p/a", "P/A"), ("p/b", "P/B"), ("p/c/d", "P/C/D")]
    assert [k for k, _ in s.list_prefix("")] == ["p/a", "p/b", "p/c/d", "pp", "q/a"]
    assert s.list_prefix("zz") == []
    assert s.delete_prefix("p/") == ["p/a", "p/b", "p/c/d"]
    assert [k for k, _ in s.list_prefix("")] == ["pp", "q/a"]


def test_create_if_absent_is_compare_and_create() -> None:
    s = EmbeddedKVStore()
    assert s.create_if_absent("k", "first") is True
    assert s.create_if_absent("k", "second") is False
    assert s.get("k") == "first"


def test_update_and_delete_if_revision() -> None:
    s = EmbeddedKVStore()
    s.put("k", "v1")
    entry = s.get_entry("k")
    assert entry is not None
    s.put("k", "v2")  # someone else wrote in between
    assert s.update_if_revision("k", "mine", entry.mod_revision) is False
    assert s.get("k") == "v2"
    current = s.get_entry("k")
    assert current is not None
    assert s.update_if_revision("k", "mine", current.mod_revision) is True
    assert s.get("k") == "mine"
    assert s.update_if_revision("new", "x", 0) is True  # 0 = must be absent
    assert s.delete_if_revision("k", current.mod_revision) is False
    latest = s.get_entry("k")
    assert latest is not None
    assert s.delete_if_revision("k", latest.mod_revision) is True
    assert s.delete_if_revision("absent", 0) is False


def test_txn_is_all_or_nothing() -> None:
    s = EmbeddedKVStore()
    s.put("guard", "g")
    rev = s.revision
    ok = s.txn([Compare("guard", rev), Compare("slot", 0)],
               [Put("slot", "taken"), Put("other", "o"), Delete("guard")])
    assert ok == rev + 1
    # Every op of one transaction shares one revision.
    assert {e.mod_revision for e in s.list_entries("")} == {rev + 1}
    assert s.get("guard") is None
    failed = s.txn([Compare("slot", 0)], [Put("slot", "again"), Put("x", "y")])
    assert failed is None
    assert s.get("slot") == "taken" and s.get("x") is None
    assert s.revision == rev + 1


def test_txn_that_changes_nothing_keeps_revision() -> None:
    s = EmbeddedKVStore()
    s.put("a", "1")
    assert s.txn([], [Delete("missing")]) == 1
    assert s.revision == 1


def test_put_with_unknown_lease_is_rejected_without_effect() -> None:
    s = EmbeddedKVStore()
    with pytest.raises(ValueError, match="lease 42"):
        s.txn([], [Put("a", "1"), Put("b", "2", lease=42)])
    assert s.get("a") is None and s.revision == 0


def test_empty_key_rejected() -> None:
    with pytest.raises(ValueError):
        EmbeddedKVStore().put("", "v")


# -- leases -----------------------------------------------------------------------------------

def test_lease_expiry_is_driven_by_injected_now() -> None:
    s = EmbeddedKVStore()
    lease = s.grant_lease(10.0, now=100.0)
    s.put("node/a", "alive", lease=lease)
    s.put("static", "stays")
    assert s.next_expiry() == 110.0
    assert s.expire(109.9) == []
    assert s.get("node/a") == "alive"
    assert s.keep_alive(lease, now=105.0) is True
    assert s.next_expiry() == 115.0
    assert s.expire(110.0) == []
    assert s.expire(115.0) == ["node/a"]
    assert s.get("node/a") is None and s.get("static") == "stays"
    assert s.keep_alive(lease, now=120.0) is False
    assert s.next_expiry() is None
    with pytest.raises(ValueError):
        s.put("late", "x", lease=lease)


def test_revoke_deletes_owned_keys_and_put_without_lease_detaches() -> None:
    s = EmbeddedKVStore()
    lease = s.grant_lease(5, now=0)
    s.put("a", "1", lease=lease)
    s.put("b", "2", lease=lease)
    s.put("b", "2 again")  # no lease: b no longer belongs to the lease (etcd semantics)
    entry = s.get_entry("b")
    assert entry is not None and entry.lease is None
    assert s.revoke_lease(lease) == ["a"]
    assert s.get("b") == "2 again"
    assert s.revoke_lease(lease) == []


def test_lease_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EmbeddedKVStore().grant_lease(0, now=0)


# -- persistence ------------------------------------------------------------------------------

def test_file_persistence_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "kv.json"  # parent created on first write
    s = EmbeddedKVStore(path)
    lease = s.grant_lease(30, now=1000.0)
    s.put("a", "1")
    s.put("b", "ü/ünicode", lease=lease)
    s.put("a", "2")
    s.delete("missing")
    rev = s.revision
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    r = EmbeddedKVStore(path)  # a restart, without close(): every change was written through
    assert r.revision == rev
    assert r.list_prefix("") == [("a", "2"), ("b", "ü/ünicode")]
    a = r.get_entry("a")
    assert a is not None and (a.create_revision, a.version) == (1, 2)  # leases take no revision
    # The reloaded lease has no deadline until the caller passes a `now`; then it gets a full TTL.
    assert r.next_expiry() is None
    assert r.expire(5.0) == []
    assert r.next_expiry() == 35.0
    assert r.expire(35.0) == ["b"]
    # Revisions continue, they do not restart.
    assert r.put("c", "3") == rev + 2


def test_lease_ids_are_not_reused_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "kv.json"
    s = EmbeddedKVStore(path)
    first = s.grant_lease(1, now=0)
    s.revoke_lease(first)
    s.close()
    r = EmbeddedKVStore(path)
    assert r.grant_lease(1, now=0) > first


def test_write_through_off_writes_on_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "kv.json"
    s = EmbeddedKVStore(path, write_through=False)
    s.put("a", "1")
    assert not path.exists()
    s.flush()
    assert EmbeddedKVStore(path).get("a") == "1"
    s.put("b", "2")
    assert EmbeddedKVStore(path).get("b") is None
    s.close()
    assert EmbeddedKVStore(path).get("b") == "2"
    assert s.statistics().file_writes == 2


def test_fsync_mode_writes(tmp_path: Path) -> None:
    path = tmp_path / "kv.json"
    s = EmbeddedKVStore(path, fsync=True)
    s.put("a", "1")
    assert EmbeddedKVStore(path).get("a") == "1"


@pytest.mark.parametrize("content", [
    b"{not json",
    b"\xff\xfe\x00garbage",
    b'{"format": "something-else", "version": 1}',
    b'{"format": "netstrata-kvstore", "version": 99, "revision": 0, "next_lease": 1}',
    b'{"format": "netstrata-kvstore", "version": 1, "revision": 1, "next_lease": 1, '
    b'"entries": [["a", "1", 1, 1, 1, 7]]}',
    b'{"format": "netstrata-kvstore", "version": 1, "revision": 1, "next_lease": 1, '
    b'"entries": [["a", 1, 1, 1, 1, null]]}',
    b'{"format": "netstrata-kvstore", "version": 1, "revision": 0, "next_lease": 1, '
    b'"entries": [["a", "1", 1, 5, 1, null]]}',
])
def test_corrupt_file_raises_kvstore_unavailable_naming_the_path(tmp_path: Path,
                                                                 content: bytes) -> None:
    path = tmp_path / "kv.json"
    path.write_bytes(content)
    with pytest.raises(KVStoreUnavailable) as info:
        EmbeddedKVStore(path)
    assert str(path) in str(info.value)


def test_unreadable_path_raises_kvstore_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "a-directory"
    path.mkdir()
    with pytest.raises(KVStoreUnavailable, match="a-directory"):
        EmbeddedKVStore(path)


def test_file_is_the_documented_json_shape(tmp_path: Path) -> None:
    path = tmp_path / "kv.json"
    s = EmbeddedKVStore(path)
    s.put("k", "v")
    doc = json.loads(path.read_text())
    assert doc["format"] == "netstrata-kvstore" and doc["version"] == 1
    assert doc["entries"] == [["k", "v", 1, 1, 1, None]]


def test_failed_write_rolls_back_memory_and_emits_nothing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import netstrata.kvstore._embedded as embedded

    path = tmp_path / "kv.json"
    s = EmbeddedKVStore(path)
    s.put("a", "1")
    watch = s.watch_prefix("")

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embedded, "write_atomically", failing)
    with pytest.raises(KVStoreUnavailable, match="No space left"):
        s.txn([], [Put("a", "2"), Put("b", "new")])
    assert s.list_prefix("") == [("a", "1")]
    assert s.revision == 1
    assert watch.drain() == []
    with pytest.raises(KVStoreUnavailable):
        s.grant_lease(5, now=0)
    monkeypatch.undo()
    assert s.put("b", "ok") == 2
    assert EmbeddedKVStore(path).list_prefix("") == [("a", "1"), ("b", "ok")]


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    s = EmbeddedKVStore(tmp_path / "kv.json")
    s.put("a", "1")
    s.close()
    s.close()  # idempotent
    with pytest.raises(KVStoreUnavailable, match="closed"):
        s.put("b", "2")
    assert s.get("a") == "1"  # reads of the last state still work


def test_context_manager_closes() -> None:
    with EmbeddedKVStore() as s:
        w = s.watch_prefix("")
    assert w.closed


def test_concurrent_create_if_absent_has_one_winner_per_key() -> None:
    s = EmbeddedKVStore()
    wins: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(me: int) -> None:
        for k in range(50):
            if s.create_if_absent(f"slot/{k}", str(me)):
                with lock:
                    wins.append((f"slot/{k}", me))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k for k, _ in wins) == sorted(f"slot/{k}" for k in range(50))
    assert all(s.get(k) == str(me) for k, me in wins)
    assert s.revision == 50


def test_statistics_snapshot(tmp_path: Path) -> None:
    s = EmbeddedKVStore(tmp_path / "kv.json")
    s.grant_lease(1, now=0)
    s.put("a", "1")
    w = s.watch_prefix("")
    st = s.statistics()
    assert (st.revision, st.keys, st.leases, st.watches, st.file_writes) == (1, 1, 1, 1, 2)
    w.close()
    assert s.statistics().watches == 0


def test_no_temp_files_left_after_many_writes(tmp_path: Path) -> None:
    s = EmbeddedKVStore(tmp_path / "kv.json")
    for i in range(20):
        s.put(f"k{i}", str(i))
    assert sorted(os.listdir(tmp_path)) == ["kv.json"]
