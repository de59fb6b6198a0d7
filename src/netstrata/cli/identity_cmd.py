"""`netstrata identity list` and `netstrata endpoint list` over a manifests directory."""

from __future__ import annotations

import argparse
import json
from typing import Any

from netstrata.cli._output import table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("identity", help="security identities")
    isub = p.add_subparsers(dest="identity_command", metavar="SUBCOMMAND")
    ls = isub.add_parser("list", help="numeric identities and their labels")
    ls.add_argument("--manifests", nargs="+", required=True)
    ls.add_argument("-o", "--output", choices=["table", "json"], default="table")
    ls.set_defaults(func=cmd_identity_list)

    e = sub.add_parser("endpoint", help="policy endpoints")
    esub = e.add_subparsers(dest="endpoint_command", metavar="SUBCOMMAND")
    el = esub.add_parser("list", help="endpoints with IPs, identities and enforcement")
    el.add_argument("--manifests", nargs="+", required=True)
    el.add_argument("-o", "--output", choices=["table", "json"], default="table")
    el.set_defaults(func=cmd_endpoint_list)


def cmd_identity_list(args: argparse.Namespace) -> int:
    from netstrata.lab.from_manifests import lab_from_manifests

    lab = lab_from_manifests(args.manifests)
    ids: dict[int, list[str]] = {i: ls.strings() for i, ls in lab.identities.items()}
    for eng in lab.engines.values():
        for i, ls in eng.cache.identities.items():
            ids.setdefault(i, ls.strings())
    if args.output == "json":
        print(json.dumps([{"id": i, "labels": ids[i]} for i in sorted(ids)], indent=2))
    else:
        print(table([(i, ", ".join(ids[i])) for i in sorted(ids)], ["ID", "LABELS"]))
    return 0


def cmd_endpoint_list(args: argparse.Namespace) -> int:
    from netstrata.lab.from_manifests import lab_from_manifests

    lab = lab_from_manifests(args.manifests)
    rows: list[dict[str, Any]] = []
    for eng in lab.engines.values():
        for ep in eng.endpoints.values():
            pol = eng.state.policies.get(ep.endpoint_id)
            rows.append({
                "id": ep.endpoint_id, "cluster": ep.workload.cluster, "endpoint": ep.ref,
                "ips": list(ep.ips), "identity": ep.identity,
                "ingress": "enforced" if pol and pol.ingress_enforced else "disabled",
                "egress": "enforced" if pol and pol.egress_enforced else "disabled",
                "audit": bool(pol and pol.audit), "map_entries": len(pol.entries) if pol else 0,
            })
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(table([(r["id"], r["cluster"], r["endpoint"], ",".join(r["ips"]), r["identity"], r["ingress"],
                      r["egress"], "on" if r["audit"] else "", r["map_entries"]) for r in rows],
                    ["ENDPOINT", "CLUSTER", "POD", "IPS", "IDENTITY", "INGRESS", "EGRESS", "AUDIT", "ENTRIES"]))
    return 0
