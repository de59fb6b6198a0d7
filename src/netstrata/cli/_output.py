"""Rendering helpers shared by the check commands (json and table)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def dump_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _target(to: object) -> str:
    if isinstance(to, dict):
        if "service" in to:
            return f"svc:{to.get('namespace', 'default')}/{to['service']}"
        for k in ("fqdn", "ip", "node"):
            if k in to:
                return f"{k}:{to[k]}"
    return str(to)


def check_table(report: dict[str, Any], verbose: bool = False) -> str:
    out = []
    for case in report["cases"]:
        out.append(f"{case['status'].upper():7} {case['id']}" + (f"  ({case['reason']})" if case.get("reason") else ""))
        show = case["probes"] if verbose else [p for p in case["probes"] if p["status"] == "failed"]
        if show:
            rows = [
                (p["status"], p["from"], _target(p["to"]), f"{p.get('port') or ''}/{p['protocol']}",
                 p.get("expect"), p.get("got"), p.get("layer"), p.get("rule") or "", p.get("reason") or "")
                for p in show
            ]
            tbl = table(rows, ["status", "from", "to", "port", "expect", "got", "layer", "rule", "why"])
            out.append("    " + tbl.replace("\n", "\n    "))
    s = report["summary"]
    out.append(f"\n{report['suite']} ({report['mode']}): {s['passed']} passed, {s['failed']} failed, "
               f"{s['skipped']} skipped; {s['probes']} probes")
    return "\n".join(out)
