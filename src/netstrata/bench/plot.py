"""The PNG of `netstrata bench datapath`: ratio to the baseline against N, per lane.

matplotlib is optional (it is only needed here): `plot_datapath` raises ImportError when it
is missing and the CLI says so instead of plotting. The Agg backend is forced, so no display
is needed. N is spaced evenly (0 has no place on a log axis); ratios use a log axis because
the stateless iptables curve falls by two orders of magnitude while eBPF stays near 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from netstrata.bench.datapath import TARGET_CRR, TARGET_RR, DatapathReport, Metric
from netstrata.bench.proxy import Measurement, ProxyReport

_STYLE: Final = {
    "baseline": ("black", "o"),
    "ebpf": ("tab:green", "s"),
    "iptables": ("tab:red", "v"),
    "iptables-est": ("tab:orange", "^"),
    "nftset": ("tab:blue", "D"),
}
_PANELS: Final[tuple[tuple[Metric, str, float | None], ...]] = (
    ("rr", "TCP request/response (1 byte): ratio to baseline", TARGET_RR),
    ("crr", "TCP connect/request/close: ratio to baseline", TARGET_CRR),
    ("stream", "single-stream throughput: ratio to baseline", None),
)


def _label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def plot_datapath(report: DatapathReport, path: Path | str) -> Path:
    """Draw the report to `path` (PNG). Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = list(report.config.entries)
    xs = list(range(len(entries)))
    lanes = list(dict.fromkeys(m.lane for m in report.measurements))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for ax, (metric, title, target) in zip(axes.flat, _PANELS, strict=False):
        for lane in lanes:
            ys = [report.ratio(lane, n, metric) for n in entries]
            color, marker = _STYLE.get(lane, ("gray", "."))
            ax.plot([x for x, y in zip(xs, ys, strict=True) if y],
                    [y for y in ys if y], marker=marker, color=color, label=lane)
        if target is not None:
            ax.axhline(target, color="tab:green", linestyle=":", linewidth=1,
                       label=f"eBPF target {target}")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
    ax = axes.flat[3]
    for lane in lanes:
        ys = [m.p99_us if (m := report.get(lane, n, "rr")) else None for n in entries]
        color, marker = _STYLE.get(lane, ("gray", "."))
        ax.plot([x for x, y in zip(xs, ys, strict=True) if y], [y for y in ys if y],
                marker=marker, color=color, label=lane)
    ax.set_yscale("log")
    ax.set_title("TCP request/response p99 latency (us)", fontsize=10)
    for ax in axes.flat:
        ax.set_xticks(xs, [_label(n) for n in entries])
        ax.set_xlabel("policy entries / rules (N)")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"netstrata bench datapath ({report.host})", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out




def plot_proxy(report: ProxyReport, path: Path | str) -> Path:
    """`netstrata bench proxy`'s PNG: req/s, added p99 and CPU per request per lane and load.
    Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = list(dict.fromkeys(m.load for m in report.measurements))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    panels: tuple[tuple[str, Callable[[Measurement], float | None]], ...] = (
        ("req/s (log)", lambda m: m.rps), ("p99 latency us (log)", lambda m: m.p99_us),
        ("CPU us per request of the middle process (log)", lambda m: m.cpu_us))
    width = 0.8 / max(1, len(loads))
    for ax, (title, value) in zip(axes, panels, strict=True):
        for i, load in enumerate(loads):
            ms = [m for m in report.measurements if m.load == load]
            lanes = [m.lane for m in ms]
            xs = [report_lanes(report).index(lane) + i * width for lane in lanes]
            ax.bar(xs, [value(m) or 0 for m in ms], width, label=load)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(report_lanes(report)))],
                      report_lanes(report), rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"netstrata bench proxy ({report.host})", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def report_lanes(report: ProxyReport) -> list[str]:
    return list(dict.fromkeys(m.lane for m in report.measurements))


__all__ = ["plot_datapath", "plot_proxy"]
