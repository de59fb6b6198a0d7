"""`netstrata ui`: the service-map web page for a running lab or a flows file.

  ui --lab NAME | --flows FILE [--flows FILE ...] [--listen 127.0.0.1:12000]

With `--lab` the page follows every agent of the lab over its local API (`/v1/flows?follow`,
docs/observe.md), reconnecting when an agent restarts, and names endpoints the flows leave
unnamed from the lab plan (pod IPs -> namespace/pod). With `--flows` it follows JSON-lines files (`observe -o json` output, an
agent's export, a directory of them). Either way the page keeps the newest `--capacity` flows.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import sys
from pathlib import Path

from netstrata.errors import NetstrataError
from netstrata.observe.flow import Endpoint, Flow, Workload, from_json_dict
from netstrata.observe.store import DEFAULT_CAPACITY, FlowStore
from netstrata.observe.ui.feeds import Enrich, FileFollower, check_readable
from netstrata.observe.ui.server import UIServer

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:12000"
"""Hubble UI's port, on loopback: the page has no authentication."""
RETRY_S = 1.0
"""Reconnect delay after losing an agent: an agent restart takes about this long."""


class UIError(NetstrataError):
    """Bad `ui` arguments (the message names the flag and what was expected)."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ui", help="service map web page: workloads, verdict-coloured edges, flows")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lab", metavar="NAME", help="follow the flows of a running lab")
    src.add_argument(
        "--flows",
        metavar="FILE",
        action="append",
        type=Path,
        help="follow a JSON-lines flows file or a directory of *.jsonl (repeatable)",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks one)",
    )
    p.add_argument(
        "--capacity",
        type=int,
        default=DEFAULT_CAPACITY,
        help=f"flows kept for the page (default {DEFAULT_CAPACITY})",
    )
    p.set_defaults(func=cmd_ui)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT`.

    Raises:
        UIError: not HOST:PORT, or a port outside 0-65535.
    """
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UIError(f"--listen: expected HOST:PORT with a port 0-65535, found {text!r}")
    return host, int(port)


def lab_enricher(lab: str) -> tuple[list[Path], Enrich]:
    """The lab's agent API sockets, and an enricher naming pod IPs from the lab plan."""
    from netstrata.lab.labstate import LabState

    state = LabState.load(lab)
    pods: dict[str, Endpoint] = {}
    for pod in state.plan.pods:
        namespace, _, name = pod.workload.rpartition("/")
        if not name:
            continue
        for ip in pod.ips:
            pods[ip] = Endpoint(
                cluster_name=pod.cluster,
                namespace=namespace,
                pod_name=name,
                workloads=(Workload(name, "Pod"),),
            )

    def fill(ep: Endpoint | None, ip: str) -> Endpoint | None:
        known = pods.get(ip)
        if known is None or (ep is not None and ep.pod_name):
            return ep  # never overwrite what the agent wrote
        ep = ep or Endpoint()
        return dataclasses.replace(
            ep,
            cluster_name=ep.cluster_name or known.cluster_name,
            namespace=known.namespace,
            pod_name=known.pod_name,
            workloads=ep.workloads or known.workloads,
        )

    def enrich(flow: Flow) -> Flow:
        if flow.ip is None:
            return flow
        return dataclasses.replace(
            flow,
            source=fill(flow.source, flow.ip.source),
            destination=fill(flow.destination, flow.ip.destination),
        )

    return [state.agent_api_path(n.key) for n in state.plan.nodes], enrich


async def follow_agent(sock: Path, store: FlowStore, enrich: Enrich) -> None:
    """Everything one agent holds, then its new flows as they are recorded; reconnect (after
    `RETRY_S`) when the agent is gone or restarts, so the page outlives agent restarts."""
    from netstrata.agent.api_client import AgentRequestError, AgentUnreachable, stream_lines

    target = "/v1/flows?last=4095&follow=true"
    while True:
        try:
            async for line in stream_lines(sock, target):
                if "flow" in line:
                    store.add(enrich(from_json_dict(line)))
            target = "/v1/flows?follow=true"  # the history is already in the store
        except (
            AgentUnreachable,
            AgentRequestError,
            ConnectionError,
            asyncio.IncompleteReadError,
            ValueError,
        ) as exc:
            log.warning("agent %s: %s; retrying in %.0f s", sock.stem, exc, RETRY_S)
        await asyncio.sleep(RETRY_S)


async def serve(
    paths: list[Path],
    enrich: Enrich | None,
    source: str,
    host: str,
    port: int,
    capacity: int,
    agents: bool = False,
) -> None:
    """Follow the agents (`agents`: `paths` are API sockets) or the flow files, and serve.

    Raises:
        OSError: the address cannot be bound.
    """
    store = FlowStore(capacity)
    follower = FileFollower([] if agents else paths, store, enrich)
    follower.load_existing()
    server = await UIServer(store, source).start(host, port)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    shown = f"[{bound_host}]" if ipaddress.ip_address(bound_host).version == 6 else bound_host
    print(f"netstrata ui: http://{shown}:{bound_port}/  ({source}; Ctrl-C stops)", flush=True)
    async with server, asyncio.TaskGroup() as tg:
        if agents:
            for sock in paths:
                tg.create_task(
                    follow_agent(sock, store, enrich or (lambda f: f)),
                    name=f"ui follow agent {sock.stem}",
                )
        else:
            tg.create_task(follower.run(), name="ui follow flows")
        tg.create_task(server.serve_forever(), name="ui http")


def cmd_ui(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    if args.capacity < 1:
        raise UIError(f"--capacity: expected a positive number, found {args.capacity}")
    enrich: Enrich | None = None
    if args.lab:
        paths, enrich = lab_enricher(args.lab)
        source = f"lab {args.lab}"
    else:
        paths = list(args.flows)
        try:
            check_readable(paths)
        except OSError as exc:
            raise UIError(f"--flows: {exc}") from exc
        source = ", ".join(p.name for p in paths)
    try:
        asyncio.run(serve(paths, enrich, source, host, port, args.capacity, agents=bool(args.lab)))
    except OSError as exc:
        print(
            f"netstrata ui: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    return 0
