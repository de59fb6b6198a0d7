"""A built kernel lab inside one process: namespaces, one agent object per node, servers.

`lab check` runs hundreds of cases, most on the same few topologies, so it keeps one lab
up while consecutive cases share a topology (policies change, pods stay) and rebuilds only
when the plan changes. Its agents are `NodeAgent` objects in the checking process rather
than daemons: one agent object per node, each with its own pin directory and programs,
exactly as the daemon drives it, but synced synchronously between actions (a case applies
a policy and probes at once; a daemon would need a round trip through the manifests
directory and a poll) and with its ring buffer read right after each batch of probes, so
drops can be matched to the probes that caused them. `lab up` runs the same `NodeAgent` in
one process per node (`agent/daemon.py`).

Each node's proxy records its L7 decisions into the node's `FlowHub` (as the daemon's does),
so a probe the proxy denied without an answer (a Kafka request Cilium discards) is still
explained by the proxy's own flow. The same flows also go into the session's `L7FlowLog`,
which keeps a batch's flows whole (a bounded follower queue dropped the oldest when one client
flooded it); `drain_l7_flows()` reads what arrived since the last call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from netstrata.agent.flowhub import FlowHub
from netstrata.agent.mesh import MeshDecisionRecord
from netstrata.agent.mesh_node import MeshAuthority, NodeMesh, is_meshed_view
from netstrata.agent.node import LocalEndpoint, NodeAgent, SyncResult
from netstrata.agent.proxy import NodeProxyRunner
from netstrata.datapath.maps import FlowEvent
from netstrata.lab.cases import Probe
from netstrata.lab.l7_flow_log import L7Batch, L7FlowLog
from netstrata.lab.netlab import LabPlan, build_lab, destroy_lab, plan_lab
from netstrata.lab.reference_check import ScenarioRunner
from netstrata.lab.servers import LabServers, ServerSpec, listens_for
from netstrata.lab.simulate import ReferenceLab
from netstrata.lab.topology import Topology
from netstrata.mesh.rotation import RotationPolicy
from netstrata.netns import ifindex, run_in_netns
from netstrata.observe import Flow

log = logging.getLogger(__name__)

_NETLINK: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-netlink")
"""One thread for all blocking lab work (netlink, bpf(2)) of every lab in this process.

pyroute2 opens a socket inside a namespace by forking a helper that passes the fd back, and
that is not safe from several threads at once (fds got crossed: a map fd closed under its
owner, a listening port seemingly taken). Serialising costs little: the waits that matter
(probe timeouts) are on the event loop, not here.
"""


_MAPS: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-maps")
"""The thread that writes learned FQDN IPs into the kernel (`LabSession.program_learned`):
bpf(2) map writes only, no netlink, so it may run beside `_NETLINK`. A DNS answer is held
until its IPs are written; queued behind the netlink thread, it waited for other lanes' labs
to be built and torn down (up to 2 s on an idle machine, past dig's patience under load)."""


async def _blocking(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_NETLINK, functools.partial(fn, *args))

T = TypeVar("T")
Ports = Mapping[str, Iterable[tuple[int, str]]]
"""IP -> (port, protocol) pairs some probe aims at."""


def probe_targets(runner: ScenarioRunner, probes: Iterable[Probe]
                  ) -> tuple[dict[str, set[tuple[int, str]]], set[str]]:
    """Where the case's probes aim: IP -> (port, protocol) to listen on; every target IP."""
    wanted: dict[str, set[tuple[int, str]]] = {}
    targets: set[str] = set()
    for probe in probes:
        try:
            src = runner._workload(probe.src)
            dst, dport, name = runner._target(probe, src, int(probe.port or 0))
        except KeyError:
            continue
        if probe.raw.get("resolve") == "kube-dns":
            dns = runner._kube_dns(src.workload.cluster)
            if dns is not None:
                wanted.setdefault(dns.ip, set()).add((53, "UDP"))
        for ip in runner.sc.topology.dns_records.get((name or "").rstrip("."), ()):
            targets.add(ip)
            wanted.setdefault(ip, set()).add((dport, _transport(probe)))
        if dst is None:
            continue
        targets.add(dst)
        if probe.protocol != "icmp":
            wanted.setdefault(dst, set()).add((dport or 53, _transport(probe)))
    return wanted, targets


def _transport(probe: Probe) -> str:
    if probe.protocol == "udp":
        return "UDP"
    if probe.protocol == "dns":
        return str((probe.raw.get("dns") or {}).get("transport", "UDP")).upper()
    return "SCTP" if probe.protocol == "sctp" else "TCP"


def server_specs(plan: LabPlan, topology: Topology, wanted: Ports) -> list[ServerSpec]:
    """A server per pod, per node (for its host-network workloads) and per outside host,
    listening on the ports its workload lists plus every port a probe aims at it."""
    by_ip: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for ip, ports in wanted.items():
        by_ip[ip].update(ports)
    for p in topology.workloads.values():
        for ip in p.ips:
            by_ip[ip].update((cp.port, cp.protocol) for cp in p.workload.ports)
    specs = []
    for pod in plan.pods:
        specs.append(ServerSpec(pod.ref, pod.netns,
                                listens_for(pp for ip in pod.ips for pp in by_ip.get(ip, ()))))
    for node in plan.nodes:
        specs.append(ServerSpec(node.key, node.netns, listens_for(by_ip.get(node.ip, ()))))
    for host in plan.hosts:
        specs.append(ServerSpec(host.ref, host.netns,
                                listens_for(pp for ip in host.ips for pp in by_ip.get(ip, ()))))
    return [s for s in specs if s.listens]


@dataclass
class LabSession:
    """One lab built from namespaces, with its agents and servers."""

    plan: LabPlan
    agents: dict[str, NodeAgent] = field(default_factory=dict)
    proxies: dict[str, NodeProxyRunner] = field(default_factory=dict)
    """Each node's L7 proxy, in this process on this loop, its sockets in the node's netns."""
    servers: LabServers | None = None
    hubs: dict[str, FlowHub] = field(default_factory=dict)
    """Each node's flow store, fed by its proxy's L7 decisions."""
    l7_log: L7FlowLog = field(default_factory=L7FlowLog)
    """Every node proxy's L7 flows since the last drain, kept whole for judging a batch."""
    meshes: dict[str, NodeMesh] = field(default_factory=dict)
    """Each node's mesh listeners (agent/mesh_node.py), started with the first meshed view;
    from then on the agents write the mesh-capture maps."""
    _mesh_state: tempfile.TemporaryDirectory[str] | None = None
    mesh_rotation: RotationPolicy | None = None
    """Workload certificate TTL and rotation of the lab's mesh (Istio's defaults if None)."""
    _ifindex: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def open(cls, plan: LabPlan) -> LabSession:
        """Build the namespaces and load every node's programs (blocking work in threads)."""
        await _blocking(destroy_lab, plan.name)  # leftovers of a crashed run
        await _blocking(build_lab, plan)
        session = cls(plan)
        learning = asyncio.Lock()  # the nodes' DNS learners share the view, so one lock
        try:
            for node in plan.nodes:
                eps = [LocalEndpoint(p.ref, p.ips, p.host_if)
                       for p in plan.pods if p.node == node.key]
                agent = NodeAgent(node.cluster, node.name, node.netns, node.pin_dir, eps,
                                  plan.node_ips())
                await _blocking(agent.open)
                session.agents[node.key] = agent
                # an answer's FQDN IPs are written into every node's maps before it is
                # released (the view is the cluster's, as the reference run's); each case
                # starts from an empty DNS cache
                hub = session.hubs[node.key] = FlowHub(f"{node.cluster}/{node.name}")
                proxy = session.proxies[node.key] = NodeProxyRunner(
                    agent, netns=node.netns, program=session.program_learned,
                    carry_learned=False,
                    on_flow=functools.partial(session._record_l7, hub),
                    learning_lock=learning)
                await proxy.start()
        except BaseException:
            await session.close()
            raise
        return session

    async def serve(self, specs: list[ServerSpec], dns_records: Mapping[str, tuple[str, ...]]) -> None:
        """Make the workload servers listen where this case needs them (kept from earlier
        cases on the same lab) and answer DNS from this case's records."""
        if self.servers is None:
            self.servers = LabServers()
        self.servers.dns_records = dict(dns_records)
        await self.servers.start(specs)

    async def sync(self, view: ReferenceLab) -> list[SyncResult]:
        """Push the resolved state into every node's kernel maps, and the same policies into
        every node's proxy."""
        if not self.meshes and is_meshed_view(view):
            await self._start_mesh(view)
        return await self._push(view, lambda agent: _blocking(agent.sync, view))

    async def program_learned(self, view: ReferenceLab) -> list[SyncResult]:
        """`sync` for FQDN IPs a DNS proxy learned (or that expired): the same view into every
        node's maps, written from `_MAPS` (no netlink), so the answer the proxy holds meanwhile
        never waits for another lab's netlink work."""
        loop = asyncio.get_running_loop()
        return await self._push(view, lambda agent: loop.run_in_executor(
            _MAPS, functools.partial(agent.sync, view, maps_only=True)))

    async def _push(self, view: ReferenceLab,
                    write: Callable[[NodeAgent], Awaitable[SyncResult]]) -> list[SyncResult]:
        """`view` to the mesh listeners, then every node's maps (`write`, one agent at a time),
        then the proxies: the order both `sync` and `program_learned` need."""
        for mesh in self.meshes.values():
            mesh.update(view)
        results = [await write(agent) for agent in self.agents.values()]
        for proxy in self.proxies.values():
            proxy.update(view)
        return results

    async def _start_mesh(self, view: ReferenceLab) -> None:
        """The mesh listeners of every node (CAs in a state directory of this lab), then
        the capture maps: nothing is captured before a listener takes it."""
        self._mesh_state = tempfile.TemporaryDirectory(prefix=f"{self.plan.name}-mesh-")
        authority = MeshAuthority(Path(self._mesh_state.name), rotation=self.mesh_rotation)
        node_ips = self.plan.node_ips()
        for node in self.plan.nodes:
            mesh = NodeMesh(self.proxies[node.key], authority, node.ip, node_ips,
                            factory=self.proxies[node.key]._factory)
            await mesh.start(view)
            self.meshes[node.key] = mesh
            self.agents[node.key].mesh_capture = True

    def drain_events(self) -> dict[str, list[FlowEvent]]:
        return {key: agent.drain_events() for key, agent in self.agents.items()}

    def _record_l7(self, hub: FlowHub, flow: Flow) -> None:
        self.l7_log.record(hub.record(flow))

    def drain_l7_flows(self) -> list[Flow]:
        """The proxies' L7 flows recorded since the last call, every node's (lost ones aside:
        `drain_l7_batch` counts them)."""
        return list(self.drain_l7_batch().flows)

    def drain_l7_batch(self) -> L7Batch:
        """The proxies' L7 flows recorded since the last call, with the count of any lost."""
        return self.l7_log.drain()

    def drain_mesh_decisions(self) -> list[MeshDecisionRecord]:
        """The destination proxies' mesh authorization decisions since the last call."""
        return [d for mesh in self.meshes.values() for d in mesh.drain_decisions()]

    async def reset(self) -> None:
        """A clean slate for the next case: no conntrack entries, no pending events."""
        for agent in self.agents.values():
            await _blocking(agent.flush_conntrack)
        self.drain_events()
        self.drain_l7_flows()
        self.drain_mesh_decisions()

    async def test_run(self, node_key: str, program: str, frame: bytes, host_if: str) -> int:
        """The tc verdict of `program` on the node for one crafted frame, as if it arrived
        on `host_if` (BPF_PROG_TEST_RUN with the live maps; nothing is sent)."""
        node = self.plan.node(node_key)
        agent = self.agents[node_key]
        index = self._ifindex.get(host_if)
        if index is None:
            index = self._ifindex[host_if] = await _blocking(ifindex, host_if, node.netns)
        run = functools.partial(agent.datapath.test_run, program, frame, ifindex=index)  # type: ignore[arg-type]
        return await _blocking(run_in_netns, node.netns, run)

    async def close(self) -> None:
        """Stop the servers, unload every node and remove the whole lab."""
        for mesh in self.meshes.values():
            await mesh.aclose()
        self.meshes.clear()
        if self._mesh_state is not None:
            self._mesh_state.cleanup()
        for proxy in self.proxies.values():
            await proxy.aclose()
        self.proxies.clear()
        for hub in self.hubs.values():
            hub.close()
        self.hubs.clear()
        if self.servers is not None:
            await self.servers.stop()
            self.servers = None
        for agent in self.agents.values():
            try:
                await _blocking(agent.teardown)
            except Exception:  # the namespaces and pins go below regardless
                log.warning("tearing down agent %s/%s failed", agent.cluster, agent.node,
                            exc_info=True)
        self.agents.clear()
        await _blocking(destroy_lab, self.plan.name)


async def session_for(current: LabSession | None, name: str, topology: Topology,
                      extra_ips: Iterable[str]) -> LabSession:
    """`current` when its plan is what `topology` needs, else a freshly built lab."""
    plan = plan_lab(name, topology, extra_ips)
    if current is not None and current.plan == plan:
        return current
    if current is not None:
        await current.close()
    return await LabSession.open(plan)
