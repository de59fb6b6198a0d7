"""`netstrata mesh ...`: run istio-authz case files through the mesh evaluator."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from netstrata.cli._output import dump_json, table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("mesh", help="Istio authorization (AuthorizationPolicy, JWT, mTLS)")
    msub = p.add_subparsers(dest="mesh_command", metavar="SUBCOMMAND")
    chk = msub.add_parser("check", help="run istio-authz case files through the evaluator")
    chk.add_argument("cases", nargs="+", help="istio-authz case files (shared/acceptance format)")
    chk.add_argument("-o", "--output", choices=["table", "json"], default="table")
    chk.add_argument("-v", "--verbose", action="store_true",
                     help="table: list every case with its explanation")
    chk.add_argument("--case", action="append", default=[], help="only these case ids")
    chk.add_argument("--now", type=float, default=None,
                     help="evaluation time, Unix seconds (default: a fixed instant)")
    chk.set_defaults(func=cmd_check)

    def usage(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _table(report: dict[str, Any], explanations: dict[str, tuple[str, ...]],
           verbose: bool) -> str:
    rows = []
    for case in report["cases"]:
        probe = case["probes"][0]
        if verbose or case["status"] != "passed":
            rows.append((case["status"].upper(), case["id"], probe["from"],
                         f"{probe['to']}:{probe['port']}/{probe['protocol']}",
                         probe["expect"] or "", probe["got"], probe["rule"] or "",
                         case["reason"] or ""))
    out = []
    if rows:
        out.append(table(rows, ["status", "case", "from", "to", "expect", "got", "decided by",
                                "why"]))
    if verbose:
        for case in report["cases"]:
            out.append(f"\n{case['id']}:")
            out.extend(f"    {line}" for line in explanations.get(case["id"], ()))
    s = report["summary"]
    out.append(f"\n{report['suite']} ({report['mode']}): {s['passed']} passed, "
               f"{s['failed']} failed, {s['skipped']} skipped; {s['probes']} probes")
    return "\n".join(out)


def cmd_check(args: argparse.Namespace) -> int:
    from netstrata.mesh.casefile import DEFAULT_NOW, case_record, load_cases, report_of, run_case

    now = DEFAULT_NOW if args.now is None else args.now
    reports, failed = [], False
    for path in args.cases:
        cases = load_cases(path, now=now)
        if args.case:
            cases = [c for c in cases if c.id in set(args.case)]
        records, explanations = [], {}
        for case in cases:
            decision = run_case(case, now=now)
            records.append(case_record(case, decision))
            explanations[case.id] = tuple(f"rejected manifest: {r}" for r in case.rejected) + (
                decision.explanation)
        report = report_of(records)
        reports.append((report, explanations))
        failed |= report["summary"]["failed"] > 0
    if args.output == "json":
        body = reports[0][0] if len(reports) == 1 else {"reports": [r for r, _ in reports]}
        sys.stdout.write(dump_json(body) + "\n")
    else:
        print("\n\n".join(_table(r, e, args.verbose) for r, e in reports))
    return 1 if failed else 0
