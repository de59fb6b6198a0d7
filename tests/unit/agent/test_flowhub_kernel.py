"""`FlowHub.record_kernel`: raw kernel records kept raw and built into flows when read must be
what the flow-by-flow path (`flow_of` + `FlowHub.record`) gives: same flows field by field
(the uuid aside, which each path picks), same metrics, same follower feed."""

from __future__ import annotations

from typing import Any

from netstrata.agent.flowhub import KERNEL_LOST_SOURCE, FlowHub
from netstrata.agent.flows import flow_of
from netstrata.bench.observe import NODE, _setting, synthetic_events
from netstrata.datapath.maps import FLOW_EVENT, EventType, decode_flow_event
from netstrata.observe.flow import to_json_dict


def _records(n: int) -> tuple[Any, list[bytes], list[tuple[Any, ...]]]:
    s = _setting()
    raw = synthetic_events(s, n)
    return s, raw, [FLOW_EVENT.struct.unpack(r) for r in raw]


def _without_uuid(flow: Any) -> dict[str, Any]:
    d = to_json_dict(flow)
    d["flow"].pop("uuid")
    return d


def _flow_metrics(hub: FlowHub) -> list[str]:
    return sorted(
        line
        for line in hub.metrics.exposition().decode().splitlines()
        if line.startswith(
            ("hubble_flows_processed_total{", "hubble_drop_total{", "hubble_policy_verdicts_total{")
        )
    )


def test_lazy_kernel_flows_equal_the_eager_ones_and_count_the_same() -> None:
    s, raw, records = _records(30)
    eager, lazy = FlowHub(NODE, enricher=s.enricher), FlowHub(NODE, enricher=s.enricher)
    for r in raw:
        e = decode_flow_event(r)
        f = flow_of(e, NODE, 1_000)
        assert f is not None
        eager.record(f, endpoint_id=e.endpoint_id, cookie=e.cookie)
    follower = lazy.store.subscribe()
    assert lazy.record_kernel(records[:7], 1_000) == 7
    assert lazy.record_kernel(records[7:]) == 23  # the offset carries over

    want = [_without_uuid(f) for f in eager.store.last(100)]
    assert [_without_uuid(f) for f in lazy.store.last(100)] == want
    assert [_without_uuid(f) for f in follower.take_nowait().flows] == want
    assert _flow_metrics(lazy) == _flow_metrics(eager)
    assert any('reason="POLICY_DENIED"' in line for line in _flow_metrics(lazy))


def test_a_stored_record_keeps_its_flow_id_across_readers() -> None:
    s, _, records = _records(6)
    hub = FlowHub(NODE, enricher=s.enricher)
    follower = hub.store.subscribe()
    hub.record_kernel(records, 0)
    first = [f.uuid for f in follower.take_nowait().flows]
    assert len(set(first)) == 6
    assert [f.uuid for f in hub.store.last(6)] == first
    assert [f.uuid for f in hub.store.query()] == first


def test_records_of_types_that_are_not_flows_are_skipped() -> None:
    s, _, records = _records(3)
    debug = list(records[0])
    debug[FLOW_EVENT.index("type")] = EventType.DEBUG
    hub = FlowHub(NODE, enricher=s.enricher)
    assert hub.record_kernel([tuple(debug), *records], 0) == 3
    assert len(hub.store) == 3


def test_a_full_follower_queue_counts_the_loss() -> None:
    s, _, records = _records(10)
    hub = FlowHub(NODE, enricher=s.enricher)
    follower = hub.store.subscribe(maxsize=4)
    hub.record_kernel(records, 0)
    batch = follower.take_nowait()
    assert batch.lost == 6 and len(batch.flows) == 4
    assert [f.uuid for f in batch.flows] == [f.uuid for f in hub.store.last(4)]


def test_kernel_losses_count_from_the_first_reading_on() -> None:
    hub = FlowHub(NODE)
    hub.lost_in_kernel(40)  # lost before this agent started: a baseline, not reported
    hub.lost_in_kernel(40)
    hub.lost_in_kernel(55)
    text = hub.metrics.exposition().decode()
    assert f'hubble_lost_events_total{{source="{KERNEL_LOST_SOURCE}"}} 15.0' in text
