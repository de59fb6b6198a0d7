"""Text, markdown and JSON renderings of the datapath and churn bench reports.

Pure functions from a report to a string or a JSON-ready dict; the CLI prints them. Every
table shows ratios to the baseline measured in the same run, which is what carries over
between machines (absolute rates on a 2-vCPU VM do not).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from netstrata.bench.churn import (
    TARGET_CHANGE_MS,
    TARGET_P50_MS,
    TARGET_P99_MS,
    TARGET_SYNC_MS,
    ChurnReport,
    percentile,
)
from netstrata.bench.datapath import METRICS, DatapathReport, Measurement

_COLUMNS = ("N", "lane", "RR/s", "xbase", "p50 us", "p99 us", "CRR/s", "xbase", "CRR p99 us",
            "Gbit/s", "xbase", "CPU us/RR", "CPU us/CRR", "prog ns/pkt", "pkt/RR", "program s")


def _k(rate: float) -> str:
    return f"{rate / 1000:.1f}k" if rate >= 1000 else f"{rate:.0f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 0.1 else f"{value:.4f}"


def _row(report: DatapathReport, lane: str, n: int) -> list[str] | None:
    rr, crr, st = (report.get(lane, n, m) for m in METRICS)
    if rr is None and crr is None and st is None:
        return None

    def f(m: Measurement | None, fn: Any) -> str:
        return "-" if m is None else str(fn(m))

    prog = report.programming_s.get((lane, n))
    return [
        f"{n:,}", lane,
        f(rr, lambda m: _k(m.rate)), _ratio(report.ratio(lane, n, "rr")),
        f(rr, lambda m: f"{m.p50_us:.1f}"), f(rr, lambda m: f"{m.p99_us:.1f}"),
        f(crr, lambda m: _k(m.rate)), _ratio(report.ratio(lane, n, "crr")),
        f(crr, lambda m: f"{m.p99_us:.0f}"),
        f(st, lambda m: f"{m.gbit:.2f}"), _ratio(report.ratio(lane, n, "stream")),
        f(rr, lambda m: f"{m.cpu_us:.1f}"), f(crr, lambda m: f"{m.cpu_us:.0f}"),
        f(rr, lambda m: f"{m.prog_ns:.0f}" if m.prog_ns else "-"),
        f(rr, lambda m: f"{m.prog_runs:.1f}" if m.prog_runs else "-"),
        "-" if not prog else f"{prog:.2f}",
    ]


def _rows(report: DatapathReport) -> list[list[str]]:
    lanes = list(dict.fromkeys(m.lane for m in report.measurements))
    return [row for n in report.config.entries for lane in lanes
            if (row := _row(report, lane, n)) is not None]


def _targets(report: DatapathReport) -> list[str]:
    lines = []
    for c in report.target_checks():
        mark = "met" if c.met else "MISSED"
        lines.append(f"N={c.entries:,}: eBPF {c.what} {c.measured:.3f} (target {c.target}) {mark}")
    return lines


def datapath_text(report: DatapathReport) -> str:
    rows = [list(_COLUMNS), *_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    out = ["  ".join(c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in
                     enumerate(zip(r, widths, strict=True))) for r in rows]
    cfg = report.config
    out.insert(0, f"bench datapath: {report.host}; {cfg.duration:g}s x {cfg.rounds} round(s) "
                  f"per point, medians; client on CPU {cfg.client_cpu}, server on CPU "
                  f"{cfg.server_cpu}")
    out += ["", *_targets(report), *report.notes]
    return "\n".join(out)


def datapath_markdown(report: DatapathReport) -> str:
    rows = _rows(report)
    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", *(f"- {line}" for line in _targets(report))]
    return "\n".join(out)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {("@".join(map(str, k)) if isinstance(k, tuple) else str(k)): _plain(v)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def datapath_json(report: DatapathReport) -> dict[str, Any]:
    out: dict[str, Any] = _plain(report)
    out["ratios"] = {f"{m.lane}@{m.entries}@{m.metric}": report.ratio(m.lane, m.entries, m.metric)
                     for m in report.measurements}
    out["targets"] = _plain(report.target_checks())
    return out


# ----------------------------------------------------------------------------- churn


def _vs(value: float, target: float) -> str:
    return f"(target <= {target:g} ms: {value / target:.2f}x, {'met' if value <= target else 'MISSED'})"


def churn_lines(report: ChurnReport) -> list[tuple[str, str]]:
    """(measure, result) pairs, in the order they are printed."""
    rows: list[tuple[str, str]] = []
    s = report.sync
    if s is not None:
        n = f"{s.entries:,}"
        rows += [
            (f"full sync of {n} entries from Python (apply_policy)",
             f"{s.full_sync_ms:.0f} ms {_vs(s.full_sync_ms, TARGET_SYNC_MS)}"),
            (f"  of which building + encoding {n} keys/values", f"{s.encode_ms:.0f} ms"),
            (f"kernel floor, {n} entries from C into the exact hash, one BPF_MAP_UPDATE_BATCH",
             f"{s.c_batch.update_ns / 1e6:.1f} ms"),
            (f"kernel floor, {n} entries from C into the exact hash, single BPF_MAP_UPDATE_ELEM",
             f"{s.c_single.update_ns / 1e6:.1f} ms"),
            (f"  for reference: {n} entries from C into the LPM trie, one BPF_MAP_UPDATE_BATCH",
             f"{s.c_batch_lpm.update_ns / 1e6:.1f} ms"),
            (f"removal of {n} entries from Python (apply_policy)", f"{s.full_delete_ms:.0f} ms"),
        ]
        for present, (median, worst) in sorted(s.change_ms.items()):
            rows.append((f"one changed entry, {present:,} present (apply_change: the delta, median)",
                         f"{median:.2f} ms, max {worst:.2f} ms {_vs(median, TARGET_CHANGE_MS)}"))
        for present, (median, worst) in sorted(s.change_full_ms.items()):
            rows.append((f"  same, handed over as the whole MapState (apply_policy, median)"
                         f" at {present:,}", f"{median:.2f} ms, max {worst:.2f} ms"))
        rows.append((f"one BPF_MAP_UPDATE_ELEM from C, {n} present",
                     f"{s.c_one_update_us:.2f} us"))
    e = report.enforce
    if e is not None:
        achieved = e.changes / e.seconds if e.seconds else 0.0
        p50, p99 = percentile(e.enforce_ms, 0.5), percentile(e.enforce_ms, 0.99)
        rows += [
            (f"changes ({report.config.rate:g}/s asked, {e.background_entries} background "
             "entries)", f"{e.changes} in {e.seconds:.2f} s = {achieved:.0f}/s achieved"),
            ("manifest write -> applied in the kernel, p50 / p99",
             f"{percentile(e.pipeline_ms, 0.5):.2f} / {percentile(e.pipeline_ms, 0.99):.2f} ms"),
            ("manifest write -> first packet with the new verdict, p50",
             f"{p50:.2f} ms {_vs(p50, TARGET_P50_MS)}"),
            ("manifest write -> first packet with the new verdict, p99",
             f"{p99:.2f} ms {_vs(p99, TARGET_P99_MS)}"),
            ("  allow changes p50 / p99; deny changes p50 / p99",
             f"{percentile(e.enforce_allow_ms, 0.5):.2f} / "
             f"{percentile(e.enforce_allow_ms, 0.99):.2f}; "
             f"{percentile(e.enforce_deny_ms, 0.5):.2f} / "
             f"{percentile(e.enforce_deny_ms, 0.99):.2f} ms"),
            ("changes no probe observed before the next write", str(e.unobserved)),
            ("transient allows (packets passed after a deny was applied)",
             f"{e.transient_allows} {'(none: met)' if e.transient_allows == 0 else '(MUST be 0)'}"),
            ("transient denies (packets lost after an allow was applied)",
             str(e.transient_denies)),
            ("probe datagrams sent / received", f"{e.probes_sent} / {e.probes_received}"),
        ]
    return rows


def churn_text(report: ChurnReport) -> str:
    rows = churn_lines(report)
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([f"{k.ljust(width)}  {v}" for k, v in rows] + list(report.notes))


def churn_markdown(report: ChurnReport) -> str:
    out = ["| measure | result |", "|---|---|"]
    out += [f"| {k.strip()} | {v} |" for k, v in churn_lines(report)]
    return "\n".join(out)


def churn_json(report: ChurnReport) -> dict[str, Any]:
    out: dict[str, Any] = _plain(report)
    out["summary"] = dict(churn_lines(report))
    return out


__all__ = ["churn_json", "churn_lines", "churn_markdown", "churn_text", "datapath_json",
           "datapath_markdown", "datapath_text"]
