"""`netstrata demo`: the seed scenarios, layer by layer, with the rule behind every verdict."""

from __future__ import annotations

import argparse
import os
from importlib import resources
from typing import Any

from netstrata.cli._output import table
from netstrata.lab.preflight import kernel_lab_missing


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="run the seed scenarios and show what each layer decided")
    p.add_argument("--scenario", action="append", default=[], help="only these scenario names")
    p.add_argument("--mode", choices=["auto", "reference", "kernel"], default="auto",
                   help="kernel: real traffic (curl, dig, grpcio, aiokafka) through the eBPF "
                        "datapath and the node L7 proxy in a namespace lab (root); reference: "
                        "the pure-Python datapath (no root needed); auto (default): kernel where "
                        "it can run, else reference, saying why")
    p.set_defaults(func=cmd_demo)


def _skipped(reason: str) -> str:
    for word, text in (("mesh", "mesh layer"), ("DNS", "DNS proxy"), ("proxy", "L7 proxy")):
        if word in reason:
            return f"skipped ({text})"
    return "skipped"


def _target(to: object) -> str:
    if isinstance(to, dict):
        if "service" in to:
            return f"svc {to.get('namespace', 'default')}/{to['service']}"
        for k in ("fqdn", "ip", "node"):
            if k in to:
                return f"{to[k]}"
    return str(to)


def _request(p: dict[str, Any]) -> str:
    l7 = p.get("l7") or {}
    if "http" in l7:
        h = l7["http"]
        return f"{h.get('method', 'GET')} {h.get('path', '/')}"
    if "grpc" in l7:
        g = l7["grpc"]
        return f"gRPC {g.get('service')}/{g.get('method')}"
    if "kafka" in l7:
        k = l7["kafka"]
        return f"kafka {k.get('action')} {k.get('topic', '')}".strip()
    if "dns" in l7:
        return f"dns {l7['dns'].get('query')}"
    return ""





def _kernel_report(suite: str, scenarios: list[Any]) -> dict[str, Any] | None:
    """The kernel lab's report, or None (after saying why) when the lab could not be built;
    the lab removes what it made either way."""
    from netstrata.errors import NetstrataError
    from netstrata.lab.kernel_check import kernel_check_report

    try:
        return kernel_check_report(suite, scenarios, lab_name=f"demo-{os.getpid()}")
    except (NetstrataError, OSError) as exc:
        print(f"netstrata demo: the kernel lab failed ({exc}); "
              "showing the reference datapath instead\n")
        return None


def cmd_demo(args: argparse.Namespace) -> int:
    from netstrata.lab.cases import load_case_file
    from netstrata.lab.reference_check import check_report

    seeds = resources.files("netstrata.lab.demo").joinpath("seeds.yaml")
    with resources.as_file(seeds) as path:
        suite, scenarios = load_case_file(path)
    if args.scenario:
        scenarios = [s for s in scenarios if s.id in set(args.scenario)]
    mode = args.mode
    if mode != "reference":
        missing = kernel_lab_missing()
        if missing is not None:
            print(f"netstrata demo: no kernel lab here ({missing}); "
                  "showing the reference datapath instead\n")
            mode = "reference"
    report = None
    if mode == "kernel" or mode == "auto":
        print(f"netstrata demo: {len(scenarios)} seed scenarios on real traffic through the "
              "kernel datapath and the node L7 proxy (curl, dig, grpcio, aiokafka)\n")
        report = _kernel_report(suite, scenarios)
    if report is None:
        print(f"netstrata demo: {len(scenarios)} seed scenarios through the reference datapath\n")
        report = check_report(suite, scenarios, mode="reference")
    for case in report["cases"]:
        print(f"== {case['id']}  [{case['status']}]" + (f"  {case['reason']}" if case.get("reason") else ""))
        rows = []
        for p in case["probes"]:
            got = _skipped(p["reason"] or "") if p["status"] == "skipped" else p["got"]
            mark = {"passed": "ok", "failed": "MISMATCH", "skipped": "-"}[p["status"]]
            rows.append((p["from"], _target(p["to"]), f"{p.get('port') or ''}/{p['protocol']}", _request(p),
                         got, p.get("layer") or "", (p.get("rule") or "")[:70], mark))
        if rows:
            print(table(rows, ["FROM", "TO", "PORT", "REQUEST", "VERDICT", "LAYER", "DECIDED BY", "EXPECTED?"]))
        for p in case["probes"]:  # a mismatch says why (what the client and the proxy saw)
            if p["status"] == "failed":
                print(f"MISMATCH {p['id']}: {p.get('reason') or 'no reason given'}")
        print()
    s = report["summary"]
    print(f"{s['passed']} scenarios as expected, {s['failed']} not, {s['skipped']} skipped "
          f"({s['probes']} probes).")
    reasons = sorted({str(p.get("reason") or p.get("detail") or "no reason given")
                      for c in report["cases"] for p in c["probes"] if p["status"] == "skipped"})
    for reason in reasons:
        print(f"Probes marked '-' were skipped: {reason}")
    return 0 if s["failed"] == 0 else 1
