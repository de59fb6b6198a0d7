"""`netstrata bench proxy`: its policy comes from the real resolver, and its quickest run
measures every lane and prints ratios and targets. No timing is asserted (speed is the bench's
own business); the smoke run checks the report's shape and that every request was answered
2xx through every path (so the rules it measures really allow the request it sends)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from netstrata.api import types as api
from netstrata.bench import _render_proxy
from netstrata.bench import proxy as bench
from netstrata.policy.types import Direction, Proto

PORTS = {"l7-3": 8081, "l7-5": 8082, "l4": 8083, "grpc": 8084}


def test_resolved_policy_holds_every_http_rule_and_the_dns_rule() -> None:
    server, client = bench.resolve_bench_policies(PORTS, 5353, (3, 5))

    for n in (3, 5):
        l7 = server.find_l7(Direction.INGRESS, Proto.TCP, PORTS[f"l7-{n}"])
        assert l7 is not None and l7.parser == "http"
        rules = [r for e in l7.entries for r in e.rules or ()]
        assert rules == list(bench.http_rules(n))
        assert all(e.identities is None or bench.ID_CLIENT in e.identities for e in l7.entries)
    l4 = server.find_l7(Direction.INGRESS, Proto.TCP, PORTS["l4"])
    assert l4 is not None and [r for e in l4.entries for r in e.rules or ()] == [api.HTTPRule()]
    dns = client.find_l7(Direction.EGRESS, Proto.UDP, 5353)
    assert dns is not None and dns.parser == "dns"
    assert server.find_l7(Direction.INGRESS, Proto.TCP, 9999) is None


def test_wrk_output_is_read_with_its_units() -> None:
    out = """Running 1s test @ http://127.0.0.1:80/
  Latency Distribution
     50%   40.00us
     75%   50.00us
     90%   60.00us
     99%    1.50ms
  12000 requests in 1.00s, 1.2MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  12000.00
"""
    res = bench.parse_wrk(out)
    assert (res.requests, res.seconds, res.p50_us, res.p99_us, res.errors) == (
        12000,
        1.0,
        40.0,
        1500.0,
        3,
    )
    with pytest.raises(bench.BenchError, match="cannot read wrk"):
        bench.parse_wrk("garbage")


@pytest.mark.skipif(
    bench.missing_requirements() is not None,
    reason=f"bench proxy cannot run here: {bench.missing_requirements()}",
)
def test_quickest_run_measures_every_lane(tmp_path: Path) -> None:
    cfg = bench.ProxyBenchConfig(duration=0.3, rounds=1, rules=(3, 5), dns_inflight=4)
    report = bench.run(cfg, lambda _msg: None)

    points = {(m.lane, m.load) for m in report.measurements}
    assert points == set(bench._points(cfg))
    assert {lane for lane, _ in points} >= {
        "direct",
        "nginx-5",
        "l4",
        "l7-3",
        "l7-5",
        "grpc-l7",
        "dns-proxy",
    }
    for m in report.measurements:
        assert m.errors == 0 and m.requests > 0 and m.rps > 0, m
        middle = m.lane not in ("direct", "grpc-direct", "dns-direct")
        assert (m.cpu_us is not None and m.cpu_us > 0) == middle, m
        assert (m.rss_kib is not None) == middle
    assert report.rps_ratio("direct", "c16") == 1.0
    assert report.cpu_ratio("l7-5", "nginx-5") is not None
    whats = [c.what for c in report.target_checks()]
    assert any("nginx-5" in w for w in whats) and any("l4 rps" in w for w in whats)
    text = _render_proxy.proxy_text(report)
    assert "x nginx" in text and "wrk -t1 -c16" in text and "h2load --h1" in text
    assert "| l7-5 | c16 |" in _render_proxy.proxy_markdown(report)
    if importlib.util.find_spec("matplotlib") is not None:
        from netstrata.bench.plot import plot_proxy

        png = plot_proxy(report, tmp_path / "proxy.png")
        assert png.read_bytes()[:4] == b"\x89PNG"
