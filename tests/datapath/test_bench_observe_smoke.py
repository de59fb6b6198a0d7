"""Smoke test of `netstrata bench observe` end to end in its smallest form: real drop records
written by the datapath program (BPF_PROG_TEST_RUN with repeat) into the real ring buffer,
read by the agent loop. Checks the report's shape and that nothing is lost at a trickle; no
timing is asserted. The pin directory is the run's own and is removed afterwards."""

from __future__ import annotations

from netstrata.bench import observe


def test_observe_bench_reads_real_kernel_records_without_loss_at_a_trickle(bpf_cache: None) -> None:
    cfg = observe.ObserveBenchConfig(
        stage_events=9, rates=(2_000,), seconds=0.2, consumer_cpu=None, producer_cpu=None
    )
    report = observe.run(cfg, lambda _msg: None)

    for reader in ("ring read + bulk unpack (mmap)", "ring read, bytes only (libbpf callback)"):
        ring = report.stage(reader)
        assert ring is not None and ring.events >= 5_000  # one record or more per repetition
    assert [(r.consumer, r.asked) for r in report.rates] == [
        ("read", 2_000),
        ("agent", 2_000),
        ("agent-eager", 2_000),
    ]
    for r in report.rates:
        assert r.written > 0 and r.read == r.written and r.lost == 0 and r.kernel_lost == 0
    assert report.keeps_up("agent") == 2_000
    assert "highest rate without loss" in observe.render_text(report)
    assert not observe._pin_dir().exists()
