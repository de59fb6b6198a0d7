"""Text, markdown and JSON renderings of the `netstrata bench proxy` report.

Every row carries its ratios to the direct path and to nginx with the same number of rules,
measured in the same run: those carry over between machines, absolute rates on a shared
2-vCPU VM do not.
"""

from __future__ import annotations

from typing import Any

from netstrata.bench._render import _plain
from netstrata.bench.proxy import ProxyReport, _rule_count

_COLUMNS = (
    "lane",
    "load",
    "req/s",
    "x direct",
    "p50 us",
    "p99 us",
    "+p50 us",
    "+p99 us",
    "CPU us/req",
    "x nginx",
    "req/s/core",
    "RSS MiB",
    "errors",
)


def _nginx_of(lane: str) -> str | None:
    n = _rule_count(lane)
    return f"nginx-{n}" if lane.startswith("l7-") and n else None


def _rows(report: ProxyReport) -> list[list[str]]:
    rows = []
    for m in report.measurements:
        base = {"h2": "grpc-direct", "udp": "dns-direct"}.get(m.load, "direct")
        added = report.added_us(m.lane, m.load, base)
        ratio = report.rps_ratio(m.lane, m.load, base)
        nginx = _nginx_of(m.lane)
        cpu_x = report.cpu_ratio(m.lane, nginx, m.load) if nginx else None
        rows.append(
            [
                m.lane,
                m.load,
                f"{m.rps:,.0f}",
                "-" if ratio is None else f"{ratio:.3f}",
                f"{m.p50_us:,.0f}",
                f"{m.p99_us:,.0f}",
                "-" if added is None or m.lane == base else f"{added[0]:+,.0f}",
                "-" if added is None or m.lane == base else f"{added[1]:+,.0f}",
                "-" if m.cpu_us is None else f"{m.cpu_us:,.1f}",
                "-" if cpu_x is None else f"{cpu_x:.1f}",
                "-" if m.rps_per_core is None else f"{m.rps_per_core:,.0f}",
                "-" if m.rss_kib is None else f"{m.rss_kib / 1024:.1f}",
                str(m.errors),
            ]
        )
    return rows


def target_lines(report: ProxyReport) -> list[str]:
    return [
        f"{c.what}: {c.measured:,.3g} (target {c.target}) {'met' if c.met else 'MISSED'}"
        for c in report.target_checks()
    ]


def proxy_text(report: ProxyReport) -> str:
    rows = [list(_COLUMNS), *_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    out = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    cfg = report.config
    out.insert(
        0,
        f"bench proxy: {report.host}; {cfg.duration:g}s x {cfg.rounds} round(s) per "
        f"point, medians; nginx worker / proxy on CPU {cfg.middle_cpu}, clients and "
        f"upstreams on CPU {cfg.client_cpu}",
    )
    out += ["", *target_lines(report), *report.notes, "", "commands:", *report.commands]
    return "\n".join(out)


def proxy_markdown(report: ProxyReport) -> str:
    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    out += ["", *(f"- {line}" for line in target_lines(report))]
    return "\n".join(out)


def proxy_json(report: ProxyReport) -> dict[str, Any]:
    out: dict[str, Any] = _plain(report)
    out["targets"] = _plain(report.target_checks())
    return out


__all__ = ["proxy_json", "proxy_markdown", "proxy_text", "target_lines"]
