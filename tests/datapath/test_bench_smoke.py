"""Smoke tests of `netstrata bench datapath` and `bench churn` with tiny N and fractions of a
second: every lane is built, measured and torn down, ratios come out, nothing is left behind.
No timing is asserted (speed belongs to the benches themselves); the one correctness property
checked is the churn bench's: a deny change never lets a packet through once it is applied.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from netstrata.bench import _render  # noqa: E402
from netstrata.bench import churn as churn_bench  # noqa: E402
from netstrata.bench import datapath as dp_bench  # noqa: E402
from netstrata.netns import list_netns  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler: the bench builds its load generator")


def test_datapath_bench_measures_every_lane_and_prints_ratios(bpf_cache: None) -> None:
    cfg = dp_bench.DatapathBenchConfig(entries=(0, 50), duration=0.2, rounds=1, warmup=0.05)
    report = dp_bench.run(cfg, lambda _msg: None)

    lanes = {m.lane for m in report.measurements}
    assert {"baseline", "ebpf"} <= lanes
    if dp_bench.fw.missing_tools() is None:
        assert lanes == set(dp_bench.LANES)
    for lane in lanes:
        for n in cfg.entries:
            for metric in dp_bench.METRICS:
                m = report.get(lane, n, metric)
                assert m is not None and m.errors == 0 and m.value > 0
                assert report.ratio(lane, n, metric) is not None
    assert report.ratio("baseline", 50, "rr") == 1.0
    # the kernel counted the eBPF lane's programs (and only that lane's): a run costs something,
    # an RR transaction passes the programs on both veths at least twice (request and response)
    for n in cfg.entries:
        ebpf_rr, base_rr = report.get("ebpf", n, "rr"), report.get("baseline", n, "rr")
        assert ebpf_rr is not None and base_rr is not None
        assert 0 < ebpf_rr.prog_ns < 1_000_000 and ebpf_rr.prog_runs >= 2
        assert base_rr.prog_ns == 0
    text = _render.datapath_text(report)
    assert "xbase" in text and "eBPF RR ratio" in text and "prog ns/pkt" in text
    assert "| 50 | ebpf |" in _render.datapath_markdown(report)
    assert not list_netns(f"{dp_bench.fw.NETNS_PREFIX}{os.getpid():x}")


def test_churn_bench_never_lets_a_denied_packet_through(bpf_cache: None) -> None:
    cfg = churn_bench.ChurnConfig(sync_entries=2000, change_samples=3, rate=40.0, seconds=0.5,
                                  probe_rate=2000.0, background=3)
    report = churn_bench.run(cfg, lambda _msg: None)

    assert report.sync is not None and report.sync.entries == 2000
    assert report.sync.c_batch.count == 2000 and set(report.sync.change_ms) == {1000, 2000}
    e = report.enforce
    assert e is not None and e.changes == 20
    assert e.probes_received > 0 and e.enforce_deny_ms and e.enforce_allow_ms
    assert e.transient_allows == 0
    assert "transient allows" in _render.churn_text(report)
    assert not list_netns(f"{churn_bench.NETNS_PREFIX}{os.getpid():x}")
