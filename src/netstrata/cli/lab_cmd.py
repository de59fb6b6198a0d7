"""`netstrata lab ...`: labs of network namespaces with the kernel datapath (needs root).

  lab up TOPOLOGY [--name N] [--case ID] [--manifests DIR]
  lab status [--name N] [-o json|table]
  lab exec [--name N] NS/POD -- CMD ...
  lab down [--name N] [--all]
  lab check CASES.yaml ... [-o json|table] [-v] [--case ID]

The topology format is described in docs/lab.md.
"""

from __future__ import annotations

import argparse
import sys

from netstrata.cli._output import check_table, dump_json, table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lab", help="namespace labs with the kernel datapath and real traffic (root)")
    lsub = p.add_subparsers(dest="lab_command", metavar="SUBCOMMAND")

    up = lsub.add_parser("up", help="build a lab from a topology and start its agents and servers")
    up.add_argument("topology", help="a case file (scenarios or k8s-netpol shape) or a manifests "
                                     "directory/file with Workload or Pod objects")
    up.add_argument("--name", default="default", help="lab name (default: default)")
    up.add_argument("--case", help="which case of a case file (default: the first)")
    up.add_argument("--manifests", help="policy directory the agents watch (default: a copy of "
                                        "the topology's policies under the lab's run directory)")
    up.add_argument("--policy-audit-mode", action="store_true", default=None,
                    help="agent-wide audit mode: would-be policy drops are reported as AUDIT "
                    "and forwarded (switch it later with `lab config`)")
    up.set_defaults(func=cmd_up)

    cf = lsub.add_parser("config", help="show or change agent-wide settings of a running lab "
                         "(as `cilium config`); the agents re-apply within ~0.2 s")
    cf.add_argument("--name")
    cf.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                    help="PolicyAuditMode=Enabled|Disabled (also policy-audit-mode=true|false)")
    cf.set_defaults(func=cmd_config)

    st = lsub.add_parser("status", help="show a running lab")
    st.add_argument("--name")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")
    st.set_defaults(func=cmd_status)

    ex = lsub.add_parser("exec", help="run a command inside a workload's network namespace")
    ex.add_argument("--name")
    ex.add_argument("target", help="NS/POD, a workload id, node:NAME, or an external host's name")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    ex.set_defaults(func=cmd_exec)

    dn = lsub.add_parser("down", help="stop a lab and remove every namespace, link and pin it made")
    dn.add_argument("--name")
    dn.add_argument("--all", action="store_true", help="every lab, and whatever any lab left behind")
    dn.set_defaults(func=cmd_down)

    chk = lsub.add_parser("check", help="run case files as real traffic through the kernel datapath")
    chk.add_argument("cases", nargs="+", help="case files (shared/acceptance format)")
    chk.add_argument("-o", "--output", choices=["table", "json"], default="table")
    chk.add_argument("-v", "--verbose", action="store_true", help="table: list every probe")
    chk.add_argument("--case", action="append", default=[], help="only these case ids")
    chk.set_defaults(func=cmd_check)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_up(args: argparse.Namespace) -> int:
    from netstrata.lab.control import lab_up

    state = lab_up(args.topology, name=args.name, case=args.case, manifests=args.manifests,
                   policy_audit_mode=args.policy_audit_mode)
    plan = state.plan
    print(f"lab {state.name} is up: {len(plan.nodes)} node(s), {len(plan.pods)} pod(s), "
          f"{len(plan.hosts)} outside host(s)")
    rows = [(p.workload, p.ref, ", ".join(p.ips), p.node) for p in plan.pods]
    rows += [(ref, ref, "(node network)", node) for ref, node in plan.host_network.items()]
    rows += [(h.ref, h.kind, ", ".join(h.ips), "-") for h in plan.hosts]
    print(table(rows, ["WORKLOAD", "ID", "IP", "NODE"]))
    print(f"\nagents watch {state.manifests_dir}")
    print(f"try: netstrata lab exec --name {state.name} {plan.pods[0].workload if plan.pods else 'NS/POD'} "
          "-- curl -s http://IP:PORT/")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from netstrata.lab.agent_config import apply_setting, read_agent_config, write_agent_config
    from netstrata.lab.control import default_lab
    from netstrata.lab.labstate import LabState

    state = LabState.load(default_lab(args.name))
    config = read_agent_config(state.agent_config_path)
    for setting in args.settings:  # all checked before anything is written
        config = apply_setting(config, setting)
    if args.settings:
        write_agent_config(state.agent_config_path, config)
    audit = config.policy_audit_mode
    print("PolicyAuditMode  " + ("(as the topology defines)" if audit is None
                                 else "Enabled" if audit else "Disabled"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from netstrata.lab.control import default_lab, lab_status

    status = lab_status(default_lab(args.name))
    if args.output == "json":
        sys.stdout.write(dump_json(status) + "\n")
        return 0
    print(f"lab {status['name']}  ({status['directory']})")
    print(f"manifests: {status['manifests']}   servers: "
          f"{'running' if status['servers_running'] else 'NOT RUNNING'}\n")
    print(table([(n["node"], n["ip"], n["agent_pid"], "running" if n["agent_running"] else "STOPPED",
                  n["revision"], n["syncs"], n["flows"], (n["last_error"] or "")[:60])
                 for n in status["nodes"]],
                ["NODE", "IP", "AGENT", "STATE", "REVISION", "SYNCS", "FLOWS", "LAST ERROR"]))
    print()
    print(table([(p["workload"], p["ref"], ", ".join(p["ips"]), p["node"], p["netns"])
                 for p in status["pods"]], ["WORKLOAD", "ID", "IP", "NODE", "NETNS"]))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from netstrata.lab.control import default_lab, lab_exec

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return lab_exec(default_lab(args.name), args.target, cmd)


def cmd_down(args: argparse.Namespace) -> int:
    from netstrata.lab.control import default_lab, lab_down, lab_down_all, require_root

    require_root("netstrata lab down")
    removed = lab_down_all() if args.all else lab_down(default_lab(args.name))
    print(f"removed {len(removed)} item(s)" + (":\n  " + "\n  ".join(removed) if removed else ""))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from netstrata.lab.cases import load_case_file
    from netstrata.lab.control import require_root
    from netstrata.lab.kernel_check import kernel_check_report

    require_root("netstrata lab check")
    failed = False
    reports = []
    for path in args.cases:
        suite, scenarios = load_case_file(path)
        if args.case:
            scenarios = [s for s in scenarios if s.id in set(args.case)]
        report = kernel_check_report(suite, scenarios)
        reports.append(report)
        failed |= report["summary"]["failed"] > 0
    if args.output == "json":
        sys.stdout.write(dump_json(reports[0] if len(reports) == 1 else {"reports": reports}) + "\n")
    else:
        for r in reports:
            print(check_table(r, args.verbose))
    return 1 if failed else 0
