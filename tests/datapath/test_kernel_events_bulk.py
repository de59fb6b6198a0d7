"""The ring buffer read in bulk from its mapping, and the datapath's loss counter, with real
records: `from_pod` under BPF_PROG_TEST_RUN (repeat) on a frame its policy denies writes a
policy verdict and a drop per run into the real `nst_events` ring."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from netstrata.bench.observe import CLIENT_EP, ENFORCED_BOTH, SERVER_EP, _denied_frame, _setting
from netstrata.datapath.kernel import KernelDatapath
from netstrata.datapath.loader.ringbuf_mmap import record_stride
from netstrata.datapath.maps import FLOW_EVENT, EventType


def _datapath(pin_dir: Path) -> tuple[KernelDatapath, bytes]:
    s = _setting()
    dp = KernelDatapath(pin_dir)
    dp.register_endpoint(s.client_ip, CLIENT_EP, s.client_id, 1, ENFORCED_BOTH)
    dp.register_endpoint(s.server_ip, SERVER_EP, s.server_id, 1, ENFORCED_BOTH)
    return dp, _denied_frame(s)


def test_bulk_reads_equal_libbpf_reads_across_the_ring_wrapping(pin_dir: Path) -> None:
    dp, frame = _datapath(pin_dir)
    try:
        dp.test_run("from_pod", frame, repeat=3)
        by_libbpf = [replace(e, timestamp_ns=0) for e in dp.read_events(0)]
        dp.test_run("from_pod", frame, repeat=3)
        bulk = [replace(FLOW_EVENT.from_values(v), timestamp_ns=0) for v in dp.read_raw_events()]
        assert len(bulk) == 6 and bulk == by_libbpf
        assert dp.read_events(0) == [] and dp.read_raw_events() == []  # one consumer position
        # 7 runs at a time, far past the ring's end: records that straddle the wrap included
        capacity = (4 << 20) // record_stride(FLOW_EVENT.size)
        for i in range(capacity // 14 + 50):
            dp.test_run("from_pod", frame, repeat=7)
            got = [FLOW_EVENT.from_values(v) for v in dp.read_raw_events()]
            assert [e.type for e in got] == [EventType.POLICY_VERDICT, EventType.DROP] * 7, i
            assert all(e.dport_be == 9999 and e.endpoint_id == CLIENT_EP for e in got)
        assert dp.events_lost() == 0
    finally:
        dp.teardown()


def test_a_full_ring_counts_every_record_it_refuses(pin_dir: Path) -> None:
    dp, frame = _datapath(pin_dir)
    try:
        before = dp.events_lost()
        runs = 40_000  # 80k records into a ring of ~58k
        dp.test_run("from_pod", frame, repeat=runs)
        read = len(dp.read_raw_events())
        assert read > 0
        assert dp.events_lost() - before == 2 * runs - read
    finally:
        dp.teardown()
