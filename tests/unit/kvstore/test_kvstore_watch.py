"""Watches: ordering, prefixes, list+watch without gaps, lag cut-off, threads and asyncio."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.errors import KVStoreUnavailable
from netstrata.kvstore import EmbeddedKVStore, KVEvent, watch_events

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


def test_events_in_commit_order_with_revisions() -> None:
    s = EmbeddedKVStore()
    w = s.watch_prefix("ids/")
    s.put("ids/1", "a")
    s.put("other", "x")
    s.put("ids/1", "b")
    s.delete("ids/1")
    assert w.drain() == [
        KVEvent("put", "ids/1", "a", 1, created=True),
        KVEvent("put", "ids/1", "b", 3, created=False),
        KVEvent("delete", "ids/1", "b", 4),
    ]
    assert w.drain() == []
    assert w.get_nowait() is None


def test_include_existing_lists_then_watches_without_gap() -> None:
    s = EmbeddedKVStore()
    s.put("p/b", "2")
    s.put("p/a", "1")
    s.put("q", "no")
    w = s.watch_prefix("p/", include_existing=True)
    s.put("p/c", "3")
    events = list(w)
    assert [(e.kind, e.key, e.value) for e in events] == [
        ("put", "p/a", "1"), ("put", "p/b", "2"), ("put", "p/c", "3")]
    assert [e.revision for e in events] == [2, 1, 4]


def test_lease_expiry_is_seen_as_deletes() -> None:
    s = EmbeddedKVStore()
    lease = s.grant_lease(1, now=0)
    s.put("n/x", "v", lease=lease)
    w = s.watch_prefix("n/")
    s.expire(1)
    assert [(e.kind, e.key, e.value) for e in w.drain()] == [("delete", "n/x", "v")]


def test_lagging_watch_is_cut_off_loudly() -> None:
    s = EmbeddedKVStore()
    w = s.watch_prefix("", max_pending=3)
    for i in range(4):
        s.put(f"k{i}", "v")
    assert w.lagged and w.closed
    with pytest.raises(KVStoreUnavailable, match="list the prefix again"):
        w.drain()
    with pytest.raises(KVStoreUnavailable):
        w.get_nowait()
    # The store itself is fine and forgets the dead watch.
    s.put("k9", "v")
    assert s.statistics().watches == 0


def test_closed_watch_receives_nothing_more() -> None:
    s = EmbeddedKVStore()
    w = s.watch_prefix("")
    s.put("a", "1")
    w.close()
    s.put("b", "2")
    assert [e.key for e in w.drain()] == ["a"]


def test_wait_event_from_a_worker_thread() -> None:
    s = EmbeddedKVStore()
    w = s.watch_prefix("")
    got: list[KVEvent | None] = []
    t = threading.Thread(target=lambda: got.append(w.wait_event(timeout=5)))
    t.start()
    s.put("a", "1")
    t.join()
    assert got[0] is not None and got[0].key == "a"
    assert w.wait_event(timeout=0) is None
    w.close()
    assert w.wait_event(timeout=None) is None  # returns at once when closed


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EmbeddedKVStore().watch_prefix("", max_pending=0)


def test_async_adapter_yields_events_committed_from_another_thread() -> None:
    s = EmbeddedKVStore()
    s.put("p/existing", "0")

    async def main() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        agen = watch_events(s, "p/", include_existing=True)

        def writer() -> None:
            s.put("p/a", "1")
            s.put("elsewhere", "x")
            s.delete("p/a")

        async with asyncio.timeout(5):
            async for event in agen:
                seen.append((event.kind, event.key))
                if len(seen) == 1:
                    await asyncio.to_thread(writer)
                if len(seen) == 3:
                    break
        await agen.aclose()
        return seen

    assert asyncio.run(main()) == [("put", "p/existing"), ("put", "p/a"), ("delete", "p/a")]
    assert s.statistics().watches == 0


def test_async_adapter_ends_when_store_closes() -> None:
    s = EmbeddedKVStore()

    async def main() -> int:
        n = 0
        async with asyncio.timeout(5):
            agen = watch_events(s, "")
            loop = asyncio.get_running_loop()
            loop.call_later(0.01, s.put, "a", "1")
            loop.call_later(0.02, s.close)
            async for _ in agen:
                n += 1
        return n

    assert asyncio.run(main()) == 1


keys = st.sampled_from(["a", "b", "c/d", "c/e", "f"])
ops = st.lists(st.tuples(st.sampled_from(["put", "delete"]), keys, st.text(max_size=5)),
               max_size=30)


@settings(max_examples=300 if DEEP else 40, deadline=None)
@given(ops)
def test_model_watch_and_reload_agree_with_a_dict(sequence: list[tuple[str, str, str]]) -> None:
    """Any sequence of writes: the store equals a dict, a watch replays it, a reload equals it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kv.json"
        s = EmbeddedKVStore(path)
        w = s.watch_prefix("")
        model: dict[str, str] = {}
        for kind, key, value in sequence:
            if kind == "put":
                s.put(key, value)
                model[key] = value
            else:
                assert s.delete(key) == (key in model)
                model.pop(key, None)
        assert s.list_prefix("") == sorted(model.items())
        replay: dict[str, str] = {}
        last = 0
        for event in w.drain():
            assert event.revision > last
            last = event.revision
            if event.kind == "put":
                replay[event.key] = event.value
            else:
                replay.pop(event.key)
        assert replay == model
        assert last == s.revision
        reloaded = EmbeddedKVStore(path)
        assert reloaded.list_prefix("") == sorted(model.items())
        assert reloaded.revision == s.revision
