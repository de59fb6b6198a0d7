"""The per-node agent process of a lab: `python -m netstrata.agent.daemon --lab L --node C/N`.

One process per node, as in Cilium, so killing one node's agent (even `kill -9`) is what it
would be there: the tc programs stay attached and the pinned maps keep enforcing the last
applied policy; a restarted agent re-opens the pins, recomputes, and writes only what differs
(nothing, when nothing changed), never flushing a map.

What it does, each part a named task under one TaskGroup:

* watch: wake on inotify (`agent/watch.py`) when a file of the manifests directory or the
  lab's agent-wide settings (`agent-config.json`, `netstrata lab config`: audit mode) was
  closed after writing or renamed into place, and reload at once; where inotify is missing,
  poll (mtime/size of every file) and reload once a change has been stable for one poll
  interval (an editor's truncate-then-write is not read half way). A reload reads and
  checks every file, resolves through the reference code path (`agent/sources.py`) and
  pushes the difference into the kernel (`agent/node.py`). A manifest that does not parse,
  validate or resolve (`ManifestError`, `PolicyConflictError`) is logged with file and line
  and changes nothing: the kernel keeps the previous policy byte for byte.
* events: drain the ring buffer in bulk when its fd is readable; the raw records go to
  `FlowHub.record_kernel` (`agent/flowhub.py`: the bounded ring, batched metrics, the rotated
  `flows/<node>.jsonl` export; Hubble flows are built and enriched when read), and the kernel's
  count of records it could not write becomes `hubble_lost_events_total`. The node proxy
  records its L7 flows through `AgentDaemon.flows.record(flow)`.
* api: the local API (`agent/api.py`, docs/observe.md) on `agents/<node>.sock` and on
  :9962 in the node's namespace: flows (filtered, follow), status, Prometheus metrics.
* maps: every few seconds, the pinned maps' fill (`cilium_bpf_map_pressure`).
* status: `agents/<node>.json` tells `lab status` (and tests) the revision, the last sync's
  writes, the last error and the number of flows.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from netstrata.agent.api import METRICS_PORT, AgentAPI
from netstrata.agent.flowhub import ExportConfig, FlowHub
from netstrata.agent.flows import monotonic_offset_ns
from netstrata.agent.mesh_node import MeshAuthority, NodeMesh, is_meshed_view
from netstrata.agent.node import LocalEndpoint, NodeAgent, SyncResult
from netstrata.agent.proxy import NodeProxyRunner
from netstrata.agent.sources import LabDefinition, load_definition, read_policies, resolve_view
from netstrata.agent.state_metrics import record_sync, sample_maps
from netstrata.agent.watch import open_watcher
from netstrata.errors import ManifestError, PolicyConflictError
from netstrata.lab.agent_config import AgentConfig, read_agent_config
from netstrata.lab.clients import move_to_netns
from netstrata.lab.labstate import LabState, write_json
from netstrata.lab.netlab import LabError
from netstrata.lab.simulate import ReferenceLab

log = logging.getLogger(__name__)

POLL_S: Final = 0.1
"""Manifest poll interval; a change is read once it has looked the same for one interval."""
STATUS_EVERY_S: Final = 1.0
MAPS_EVERY_S: Final = 5.0


def snapshot(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of every manifest file: a change in any means re-read."""
    out = []
    if directory.is_file():
        files = [directory]
    else:
        files = sorted(p for p in directory.rglob("*")
                       if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
    for p in files:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


class AgentDaemon:
    """One node's agent of a running lab."""

    def __init__(self, state: LabState, node_key: str) -> None:
        self.state = state
        self.node = state.plan.node(node_key)
        self.manifests = Path(state.manifests_dir)
        self.config_path = state.agent_config_path
        endpoints = [LocalEndpoint(p.ref, p.ips, p.host_if)
                     for p in state.plan.pods if p.node == node_key]
        # The process lives in its node's namespace (see main), as a Cilium agent lives in
        # its node's: netlink needs no per-call namespace switch.
        self.agent = NodeAgent(self.node.cluster, self.node.name, None,
                               self.node.pin_dir, endpoints, state.plan.node_ips())
        self.flows = FlowHub(self.node.key,
                             export=ExportConfig(state.flows_path(node_key), max_bytes=4 << 20,
                                                 backups=2))
        self.store = self.flows.store
        # the node's L7 proxy: the kernel redirects to its listeners (agent/proxy.py)
        self.proxy = NodeProxyRunner(self.agent, on_flow=self.flows.record)
        self.flows.enricher.names_of = self.proxy.cache.names_of  # toFQDNs names on flows
        self.api = AgentAPI(self.flows, self.status)
        self.mesh: NodeMesh | None = None
        """The node's mesh listeners, started with the first view that has a meshed workload."""
        self.definition: LabDefinition | None = None
        self.last_sync: SyncResult | None = None
        self.first_sync: SyncResult | None = None
        self.last_error: str | None = None
        self.config = AgentConfig()
        """The agent-wide settings of the last applied sync."""
        self.syncs = 0
        self.rejected = 0
        self._applied: tuple[tuple[str, int, int], ...] | None = None
        self._offset = monotonic_offset_ns()

    # ----------------------------------------------------------------------- reconcile

    async def reload(self) -> bool:
        """Read, check, resolve, push. False (kernel untouched) when the input is rejected."""
        assert self.definition is not None
        seen = self.inputs()
        try:
            config = read_agent_config(self.config_path)
            manifests = await asyncio.to_thread(read_policies, self.manifests)
            runner = await asyncio.to_thread(resolve_view, self.definition, manifests,
                                             audit_mode=config.policy_audit_mode)
        except (ManifestError, PolicyConflictError, LabError) as exc:
            self.rejected += 1
            self.flows.metrics.policy_import_error()
            self.last_error = str(exc)
            self._applied = seen  # don't retry until the files change again
            log.error("manifests rejected; the kernel keeps the previous policy:\n%s", exc)
            return False
        if self.mesh is None and is_meshed_view(runner.lab):
            await self._start_mesh(runner.lab)
        if self.mesh is not None:
            self.mesh.update(runner.lab)
        result = await asyncio.to_thread(self.agent.sync, runner.lab)
        self.proxy.update(runner.lab)
        self.config = config
        record_sync(self.flows, self.agent, runner.lab, len(manifests), result.revision, seen)
        self._applied = seen
        self.last_error = None
        self.last_sync = result
        self.first_sync = self.first_sync or result
        self.syncs += 1
        self.write_status()
        return True

    async def _start_mesh(self, view: ReferenceLab) -> None:
        """The node's mesh listeners (agent/mesh_node.py; CAs in the lab's directory, shared
        with the other nodes' agents), then the capture maps: nothing is captured before a
        listener takes it. Authorization runs on the clock (tokens of real clients)."""
        mesh = NodeMesh(self.proxy, MeshAuthority(self.state.mesh_ca_dir), self.node.ip,
                        self.state.plan.node_ips(), authorization_clock=time.time)
        try:
            await mesh.start(view)
        except (OSError, ValueError) as exc:
            await mesh.aclose()
            log.error("mesh listeners did not start; meshed workloads stay uncaptured: %s", exc)
            return
        self.mesh = mesh
        self.agent.mesh_capture = True

    def inputs(self) -> tuple[tuple[str, int, int], ...]:
        """What a reload reads: the manifests and the agent-wide settings file."""
        return snapshot(self.manifests) + snapshot(self.config_path)

    async def watch(self) -> None:
        """Reload on inotify's word that a manifest was closed or renamed into place (at
        once); and, as the fallback where inotify is missing or missed something, on a poll
        seeing a change that stayed the same for one interval (never read half written)."""
        watcher = open_watcher([self.manifests, self.config_path])
        previous = self.inputs()
        try:
            while True:
                if watcher is None:
                    await asyncio.sleep(POLL_S)
                    finished = False
                else:
                    finished = await watcher.wait_changed(POLL_S)
                current = self.inputs()
                # an empty file may be the truncate of a truncate-then-write in two opens:
                # leave it to the stability rule rather than apply "no policy" for a moment
                whole = finished and all(size for _, _, size in current)
                if current != self._applied and (whole or current == previous):
                    await self.reload()
                previous = current
        finally:
            if watcher is not None:
                watcher.close()

    # -------------------------------------------------------------------------- events

    def _on_events(self) -> None:
        # bulk read from the ring's mapping; flows are built when read (agent/flowhub.py)
        self.flows.record_kernel(self.agent.datapath.read_raw_events(), self._offset)
        self.flows.lost_in_kernel(self.agent.datapath.events_lost())

    async def sample_maps(self) -> None:
        while True:
            await asyncio.to_thread(sample_maps, self.flows.metrics, Path(self.node.pin_dir))
            await asyncio.sleep(MAPS_EVERY_S)

    async def report(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            self.write_status()

    def status(self) -> dict[str, Any]:
        def sync(r: SyncResult | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"revision": r.revision, "endpoints": r.endpoints, "writes": r.writes,
                    "policy": asdict(r.policy), "ipcache": asdict(r.ipcache),
                    "identities_changed": r.identities_changed}

        stats = self.store.statistics()
        return {"pid": os.getpid(), "node": self.node.key, "ready": self.syncs > 0,
                "syncs": self.syncs, "rejected": self.rejected, "last_error": self.last_error,
                "config": asdict(self.config),
                "first_sync": sync(self.first_sync), "last_sync": sync(self.last_sync),
                "flows": stats.size, "flows_seen": stats.seen, "updated": time.time(),
                "revision": self.last_sync.revision if self.last_sync else None,
                "store": asdict(stats), "export": self.flows.export_status(),
                "listen": self.api.listen_status()}

    def write_status(self) -> None:
        write_json(self.state.agent_status_path(self.node.key), self.status())

    # ------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self.definition = await asyncio.to_thread(load_definition, self.state.source,
                                                  self.state.case)
        await asyncio.to_thread(self.agent.open)
        await self.proxy.start()
        await self.api.start_unix(self.state.agent_api_path(self.node.key))
        await self.api.start_tcp("0.0.0.0", METRICS_PORT)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.agent.datapath.events_fileno(), self._on_events)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            if not await self.reload():
                self.write_status()
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.watch(), name=f"agent {self.node.key} watch"),
                         tg.create_task(self.report(), name=f"agent {self.node.key} status"),
                         tg.create_task(self.sample_maps(), name=f"agent {self.node.key} maps")]
                await stop.wait()
                for t in tasks:
                    t.cancel()
        finally:
            loop.remove_reader(self.agent.datapath.events_fileno())
            self._on_events()
            self.write_status()
            await self.api.close()
            if self.mesh is not None:
                await self.mesh.aclose()
            await self.proxy.aclose()
            self.flows.close()
            self.agent.close()  # programs and pins stay: `lab down` removes them
            log.info("agent %s stopped", self.node.key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netstrata.agent.daemon")
    parser.add_argument("--lab", required=True)
    parser.add_argument("--node", required=True, help="cluster/node key from the lab plan")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = LabState.load(args.lab)
    # Enter the node's namespace before any thread exists, so every thread is in it. This is
    # not only tidy: opening a netlink socket in *another* namespace makes pyroute2 fork a
    # helper and SIGTERM it, and a forked child shares the event loop's signal wakeup fd, so
    # its SIGTERM would read as ours and stop the agent.
    move_to_netns(state.plan.node(args.node).netns)
    asyncio.run(AgentDaemon(state, args.node).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
