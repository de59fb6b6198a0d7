"""`netstrata policy suggest` and `netstrata policy replay`: the roll-out loop's two commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from netstrata.cli._output import dump_json, table
from netstrata.errors import NetstrataError

if TYPE_CHECKING:
    from netstrata.observe.flow import Flow


def register(psub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sg = psub.add_parser(
        "suggest", help="write minimal CiliumNetworkPolicy allow-lists from observed flows"
    )
    sg.add_argument(
        "--flows", required=True, help="Hubble JSON lines (`observe -o jsonpb`); - for stdin"
    )
    sg.add_argument(
        "--manifests",
        action="append",
        default=[],
        help="validate the suggestion together with these manifests (files or directories)",
    )
    sg.add_argument(
        "-o",
        "--output-dir",
        help="write one <namespace>-<name>.yaml per policy here (default: all to stdout)",
    )
    sg.add_argument(
        "--include-dropped",
        action="store_true",
        help="also admit flows with verdict DROPPED (left out by default)",
    )
    sg.set_defaults(func=cmd_suggest)

    rp = psub.add_parser("replay", help="re-decide recorded flows under a candidate policy set")
    rp.add_argument("--flows", required=True, help="Hubble JSON lines; - for stdin")
    rp.add_argument(
        "--manifests",
        action="append",
        required=True,
        help="candidate policies plus the workloads (files or directories)",
    )
    rp.add_argument("-o", "--output", choices=["table", "json"], default="table")
    rp.add_argument("-v", "--verbose", action="store_true", help="table: list unchanged rows too")
    rp.set_defaults(func=cmd_replay)


def _flow_lines(fh: IO[str], name: str) -> Iterator[Flow]:
    from netstrata.observe.flow import from_json_dict

    for number, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if "flow" not in data and ("lost_events" in data or "node_status" in data):
                continue
            yield from_json_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise NetstrataError(
                f"{name}:{number}: expected a Hubble flow JSON object, "
                f"found {line.strip()[:60]!r} ({exc})"
            ) from exc


def read_flow_source(source: str) -> list[Flow]:
    """Flows from a JSON-lines file, or stdin for `-`; a bad line names file and line."""
    if source == "-":
        return list(_flow_lines(sys.stdin, "<stdin>"))
    try:
        with Path(source).open(encoding="utf-8") as fh:
            return list(_flow_lines(fh, source))
    except OSError as exc:
        raise NetstrataError(f"{source}: cannot read flows: {exc.strerror}") from exc


def _yaml(policy: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(policy, sort_keys=False, default_flow_style=False)


def _validate(policies: list[dict[str, Any]], manifests: list[str]) -> None:
    """Parse what we are about to write with our own validator (and the given manifests)."""
    from netstrata.api import load_manifests
    from netstrata.api._yaml import load_documents
    from netstrata.api.manifests import parse_documents

    text = "---\n".join(_yaml(p) for p in policies)
    parse_documents(load_documents(text, "<suggested>"))
    if manifests:
        load_manifests(manifests)


def cmd_suggest(args: argparse.Namespace) -> int:
    from netstrata.rollout import suggest_policies

    flows = read_flow_source(args.flows)
    policies, stats = suggest_policies(flows, include_dropped=args.include_dropped)
    _validate(policies, args.manifests)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for p in policies:
            meta = p["metadata"]
            (out / f"{meta['namespace']}-{meta['name']}.yaml").write_text(
                _yaml(p), encoding="utf-8"
            )
    else:
        sys.stdout.write("---\n".join(_yaml(p) for p in policies))
    print(
        f"# {len(policies)} policies from {stats.used} flows; skipped {stats.dropped_skipped} "
        f"DROPPED and {stats.other_skipped} other flows",
        file=sys.stderr,
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from netstrata.lab.from_manifests import lab_from_manifests
    from netstrata.rollout import replay

    flows = read_flow_source(args.flows)
    lab = lab_from_manifests(args.manifests)
    report = replay(flows, lab)
    if args.output == "json":
        sys.stdout.write(dump_json(report.to_json()) + "\n")
        return 0
    rows = [
        (
            r.change,
            r.key.source,
            r.key.destination,
            f"{r.key.port}",
            r.request,
            r.before,
            r.after,
            r.flows,
        )
        for r in report.rows
        if args.verbose or r.change != "unchanged"
    ]
    if rows:
        print(
            table(
                rows,
                ["CHANGE", "SOURCE", "DESTINATION", "PORT", "REQUEST", "BEFORE", "AFTER", "FLOWS"],
            )
        )
    counts = report.counts()
    print(
        f"newly dropped: {counts['newly-dropped']}  newly allowed: {counts['newly-allowed']}  "
        f"unchanged: {counts['unchanged']}  unmatched: {counts['unmatched']}"
    )
    return 0
