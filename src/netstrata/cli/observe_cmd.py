"""`netstrata observe`: `hubble observe` against a lab's agents, or an exported flow file.

  observe [--name LAB] [--node NODE] [--flows FILE] [hubble observe flags ...]

Filter and selection flags travel to every agent as query parameters of its local API
(`GET /v1/flows`, docs/observe.md), so filtering happens where the flows are. The answers
are merged by time (Hubble Relay does the same across nodes) and printed in Hubble's formats.
With `-f` one streaming request per agent stays open and each flow is printed as it arrives.
With `--flows FILE` the same flags apply to a JSON-lines file (and its rotated `.1`, `.2`, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from netstrata.errors import NetstrataError
from netstrata.observe import Flow, ObserveArgs, compile_filters, merge_flows, parse_observe_args
from netstrata.observe.filters import NO_VALUE_FLAGS, SHORT_FLAGS, split_flag
from netstrata.observe.flow import from_json_dict
from netstrata.observe.render import Printer, render_flows, render_lost_compact
from netstrata.observe.store import read_flow_log

OWN_FLAGS: Final = ("name", "node", "flows")
"""Flags of this command (not Hubble's): which lab, which agent, or which file."""
OUTPUT_ONLY: Final = frozenset(
    {"output", "time-format", "print-node-name", "print-policy-names", "numeric", "ip-translation"}
)
"""Flags that shape printing only; they stay in the client."""
_BOOL: Final = frozenset(
    {"follow", "all", "print-node-name", "print-policy-names", "numeric", "ip-translation"}
)
_SHORT: Final = {**SHORT_FLAGS, "o": "output", "f": "follow"}
MAX_ROTATED: Final = 100

USAGE: Final = """usage: netstrata observe [--name LAB] [--node NODE] [--flows FILE] [FLAGS ...]

Observe flows of a running lab (every agent, merged by time) or of an exported file, with
`hubble observe` flags, e.g.:
  netstrata observe --verdict DROPPED --last 50
  netstrata observe --from-pod shop/client --to-port 8080 -o json
  netstrata observe --type l7 --http-status 5+ -f
  netstrata observe --flows flows.jsonl --pod shop/api -o table
Filters: --from-pod/--to-pod/--pod, -n, --from-label/--to-label/-l, --from-identity/
--to-identity/--identity, --from-ip/--to-ip/--ip, --port/--from-port/--to-port, --protocol,
--verdict, --drop-reason-desc, -t/--type, --traffic-direction, --http-method, --http-path,
--http-url, --http-status, --http-header, --fqdn/--from-fqdn/--to-fqdn, --not, ...
Selection: --last N (default 20), --first N, --all, --since T, --until T, -f/--follow.
Output: -o compact|dict|json|jsonpb|table, --print-node-name, --print-policy-names,
--time-format, --numeric.  See docs/observe.md.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    # Hubble's flags are parsed by observe.options, not argparse: '+' as the prefix makes
    # argparse hand every argument through untouched.
    p = sub.add_parser(
        "observe",
        help="observe flows of a lab's agents (hubble observe flags)",
        add_help=False,
        prefix_chars="+",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_observe)


def split_own(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(this command's flags, the Hubble flags) of the command line."""
    own: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in OWN_FLAGS:
            if not sep:
                if i + 1 >= len(argv):
                    raise NetstrataError(f"flag needs an argument: --{name}")
                value, i = argv[i + 1], i + 1
            own[name] = value
        else:
            rest.append(arg)
        i += 1
    return own, rest


def select(flows: list[Flow], args: ObserveArgs) -> list[Flow]:
    """Apply --first/--last to an already filtered, time-ordered list."""
    if args.first:
        return flows[: args.first]
    return flows[-args.last :] if args.last else flows


def cmd_observe(ns: argparse.Namespace) -> int:
    argv = list(ns.argv)
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(USAGE)
        return 0
    own, rest = split_own(argv)
    try:
        args = parse_observe_args(rest, time.time_ns())
    except ValueError as exc:
        raise NetstrataError(f"observe: {exc}") from exc
    if "flows" in own:
        return _from_file(Path(own["flows"]), args)
    sockets = agent_sockets(own.get("name"), own.get("node"))
    params = _params(rest)
    if args.follow:
        return asyncio.run(_follow(sockets, params, args))
    flows = asyncio.run(_fetch(sockets, params))
    sys.stdout.write(render_flows(select(flows, args), args.render))
    return 0


def _params(argv: Sequence[str]) -> list[tuple[str, str]]:
    """Walk the flags the way `parse_observe_args` does, keeping each (name, value) pair."""
    out: list[tuple[str, str]] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and not arg.startswith("--") and arg[1:2] in _SHORT:
            arg = f"--{_SHORT[arg[1]]}" + (f"={arg[2:].removeprefix('=')}" if arg[2:] else "")
        name, value, _ = split_flag([arg], 0)
        i += 1
        if value is None and name not in NO_VALUE_FLAGS and name not in _BOOL:
            value, i = args[i], i + 1  # parse_observe_args already checked it exists
        if name not in OUTPUT_ONLY:
            out.append((name, value if value is not None else ""))
    return out


def agent_sockets(name: str | None, node: str | None) -> dict[str, Path]:
    """Node key -> API socket of the lab's agents (one with `node`)."""
    from netstrata.lab.control import default_lab
    from netstrata.lab.labstate import LabState

    state = LabState.load(default_lab(name))
    nodes = [n for n in state.plan.nodes if node is None or node in (n.key, n.name)]
    if not nodes:
        known = ", ".join(n.key for n in state.plan.nodes)
        raise NetstrataError(f"no node {node!r} in lab {state.name!r} (nodes: {known})")
    return {n.key: state.agent_api_path(n.key) for n in nodes}


async def _fetch(sockets: dict[str, Path], params: list[tuple[str, str]]) -> list[Flow]:
    from netstrata.agent.api_client import flows_query, get

    target = "/v1/flows?" + flows_query(params)
    bodies = await asyncio.gather(*(get(path, target) for path in sockets.values()))
    per_node = [[_flow_line(line) for line in body.splitlines() if line.strip()] for body in bodies]
    return merge_flows(*per_node)


def _flow_line(line: bytes) -> Flow:
    import json

    return from_json_dict(json.loads(line))


async def _follow(
    sockets: dict[str, Path], params: list[tuple[str, str]], args: ObserveArgs
) -> int:
    from netstrata.agent.api_client import flows_query, stream_lines

    target = "/v1/flows?" + flows_query(params)
    printer = Printer(args.render)

    async def one(path: Path) -> None:
        async for obj in stream_lines(path, target):
            if "lost_events" in obj:
                lost = obj["lost_events"]
                if args.render.output in ("json", "jsonpb"):
                    import json

                    sys.stdout.write(json.dumps(obj) + "\n")
                else:
                    sys.stdout.write(
                        render_lost_compact(
                            int(lost.get("num_events_lost", 0)),
                            lost.get("source", ""),
                            time.time_ns(),
                            args.render.time_format,
                        )
                    )
            else:
                sys.stdout.write(printer.write(from_json_dict(obj)))
            sys.stdout.flush()

    async with asyncio.TaskGroup() as tg:
        for node, path in sockets.items():
            tg.create_task(one(path), name=f"observe follow {node}")
    return 0


def _from_file(path: Path, args: ObserveArgs) -> int:
    if args.follow:
        raise NetstrataError("observe --flows reads a file; it cannot --follow")
    if not path.exists():
        raise NetstrataError(f"observe --flows: no such file {path}")
    try:
        flows = read_flow_log(path, backups=MAX_ROTATED)
    except ValueError as exc:
        raise NetstrataError(f"observe --flows: {exc}") from exc
    match = compile_filters(args.allow, args.deny)
    hits = sorted((f for f in flows if match(f)), key=lambda f: f.time_ns)
    sys.stdout.write(render_flows(select(hits, args), args.render))
    return 0
