"""The flow ring: capacity, overwrite and loss counting, queries, follow subscriptions, merging,
and JSON-lines files with size rotation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from observe_fixtures import NODE, T0

from netstrata.observe.filters import build_filters
from netstrata.observe.flow import Flow, Verdict, dumps, lost_events_dict, to_json_dict
from netstrata.observe.store import (
    FlowLogWriter,
    FlowStore,
    SubscriptionClosed,
    merge_flows,
    read_flow_log,
    read_flows,
)


def flow(i: int, verdict: Verdict = Verdict.FORWARDED, node: str = NODE) -> Flow:
    return Flow(time_ns=T0 + i * 1_000_000, uuid=f"u{i}", verdict=verdict, node_name=node)


def uuids(flows: list[Flow]) -> list[str]:
    return [f.uuid for f in flows]


def test_ring_keeps_newest_and_counts_overwrites() -> None:
    store = FlowStore(capacity=3)
    store.extend(flow(i) for i in range(5))
    assert uuids(list(store)) == ["u2", "u3", "u4"]
    stats = store.statistics()
    assert (stats.capacity, stats.size, stats.seen, stats.overwritten) == (3, 3, 5, 2)


def test_last_first_between() -> None:
    store = FlowStore(capacity=10)
    store.extend(flow(i) for i in range(6))
    assert uuids(store.last(2)) == ["u4", "u5"]
    assert uuids(store.last(0)) == []
    assert uuids(store.last(100)) == [f"u{i}" for i in range(6)]
    assert uuids(store.first(2)) == ["u0", "u1"]
    assert uuids(store.between(T0 + 2_000_000, T0 + 4_000_000)) == ["u2", "u3", "u4"]
    assert uuids(store.between(since_ns=T0 + 5_000_000)) == ["u5"]
    assert uuids(store.between(until_ns=T0)) == ["u0"]


def test_query_applies_filters_then_limits() -> None:
    store = FlowStore()
    store.extend(flow(i, Verdict.DROPPED if i % 2 else Verdict.FORWARDED) for i in range(8))
    allow, deny = build_filters(["--verdict", "DROPPED"])
    assert uuids(store.query(allow, deny)) == ["u1", "u3", "u5", "u7"]
    assert uuids(store.query(allow, deny, last=2)) == ["u5", "u7"]
    assert uuids(store.query(allow, deny, first=1)) == ["u1"]
    allow, deny = build_filters(["--since", "2026-05-01T10:00:00.126Z", "--not", "--uuid", "u7"])
    assert uuids(store.query(allow, deny)) == ["u3", "u4", "u5", "u6"]
    with pytest.raises(ValueError):
        store.query(first=1, last=1)


def test_subscription_gets_only_new_flows() -> None:
    async def scenario() -> list[str]:
        store = FlowStore()
        store.add(flow(0))
        sub = store.subscribe()

        async def producer() -> None:
            await asyncio.sleep(0)
            store.add(flow(1))
            store.add(flow(2))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(producer())
            batch = await sub.wait_new()
        assert batch.lost == 0
        return uuids(list(batch.flows))

    assert asyncio.run(scenario()) == ["u1", "u2"]


def test_slow_follower_loses_oldest_and_is_told() -> None:
    lost_reports: list[tuple[str, int]] = []
    store = FlowStore(on_lost=lambda src, n: lost_reports.append((src, n)))
    sub = store.subscribe(maxsize=2)
    store.extend(flow(i) for i in range(5))
    assert sub.full() and sub.qsize() == 2
    batch = asyncio.run(sub.wait_new())
    assert uuids(list(batch.flows)) == ["u3", "u4"]
    assert batch.lost == 3
    assert store.statistics().lost_to_followers == 3
    assert sum(n for _, n in lost_reports) == 3
    assert sub.take_nowait().lost == 0  # reported once


def test_get_nowait_and_close() -> None:
    store = FlowStore()
    sub = store.subscribe()
    with pytest.raises(asyncio.QueueEmpty):
        sub.get_nowait()
    store.add(flow(1))
    assert sub.get_nowait().uuid == "u1"
    assert sub.empty()

    async def waits_then_closed() -> None:
        async def closer() -> None:
            await asyncio.sleep(0)
            store.close()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(closer())
            with pytest.raises(SubscriptionClosed):
                await sub.wait_new()

    asyncio.run(waits_then_closed())
    assert sub.closed and store.statistics().followers == 0
    store.add(flow(2))  # no longer delivered
    assert sub.empty()


def test_merge_orders_by_time_across_nodes() -> None:
    a = [flow(1, node="c1/a"), flow(4, node="c1/a"), flow(2, node="c1/a")]
    b = [flow(3, node="c1/b"), flow(0, node="c1/b")]
    merged = merge_flows(a, b)
    assert [f.time_ns - T0 for f in merged] == [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000]
    assert [f.node_name for f in merged] == ["c1/b", "c1/a", "c1/a", "c1/b", "c1/a"]


def test_jsonl_export_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    line_size = len(dumps(to_json_dict(flow(0))) + "\n")
    # Room for exactly two lines per file, two backups: 10 flows keep the newest 6.
    with FlowLogWriter(path, max_bytes=2 * line_size, backups=2) as writer:
        for i in range(10):
            writer.write(flow(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "flows.jsonl", "flows.jsonl.1", "flows.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 2 * line_size
    assert uuids(list(read_flows(path))) == ["u8", "u9"]
    assert uuids(read_flow_log(path, backups=2)) == ["u4", "u5", "u6", "u7", "u8", "u9"]
    assert read_flow_log(path, backups=2)[0] == flow(4)


def test_writer_appends_to_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    with FlowLogWriter(path) as w:
        w.write(flow(1))
    with FlowLogWriter(path) as w:
        w.write(flow(2))
    assert uuids(read_flow_log(path)) == ["u1", "u2"]


def test_import_skips_lost_events_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "hubble.json"
    path.write_text(
        dumps(to_json_dict(flow(1))) + "\n\n"
        + dumps(lost_events_dict(7, "HUBBLE_RING_BUFFER", NODE, T0)) + "\n"
        + dumps(to_json_dict(flow(2))) + "\n", encoding="utf-8")
    assert uuids(list(read_flows(path))) == ["u1", "u2"]
    assert json.loads(path.read_text().splitlines()[2])["lost_events"] == {
        "source": "HUBBLE_RING_BUFFER", "num_events_lost": "7"}


def test_import_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(dumps(to_json_dict(flow(1))) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json:2"):
        list(read_flows(path))


def test_bad_sizes_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FlowStore(capacity=0)
    with pytest.raises(ValueError):
        FlowStore().subscribe(maxsize=0)
    with pytest.raises(ValueError):
        FlowLogWriter(tmp_path / "x", max_bytes=0)
