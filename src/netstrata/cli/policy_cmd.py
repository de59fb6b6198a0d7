"""`netstrata policy ...`: check case files, trace a flow, show an endpoint's map state."""

from __future__ import annotations

import argparse
import sys

from netstrata.cli._output import check_table, dump_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("policy", help="check, trace and inspect policy (reference datapath)")
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")

    chk = psub.add_parser("check", help="run acceptance case files through the reference datapath")
    chk.add_argument("cases", nargs="+", help="case files (shared/acceptance format)")
    chk.add_argument("-o", "--output", choices=["table", "json"], default="table")
    chk.add_argument("-v", "--verbose", action="store_true", help="table: list every probe")
    chk.add_argument("--case", action="append", default=[], help="only these case ids")
    chk.set_defaults(func=cmd_check)

    from netstrata.cli import rollout_cmd, trace_cmd

    trace_cmd.register(psub)
    rollout_cmd.register(psub)


def cmd_check(args: argparse.Namespace) -> int:
    from netstrata.lab.cases import load_case_file
    from netstrata.lab.reference_check import check_report

    failed = False
    reports = []
    for path in args.cases:
        suite, scenarios = load_case_file(path)
        if args.case:
            scenarios = [s for s in scenarios if s.id in set(args.case)]
        report = check_report(suite, scenarios, mode="reference")
        reports.append(report)
        failed |= report["summary"]["failed"] > 0
    if args.output == "json":
        sys.stdout.write(dump_json(reports[0] if len(reports) == 1 else {"reports": reports}) + "\n")
    else:
        for r in reports:
            print(check_table(r, args.verbose))
    return 1 if failed else 0
