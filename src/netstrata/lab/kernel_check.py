"""`netstrata lab check`: acceptance cases on real traffic through the kernel datapath.

For each case: build (or reuse) a lab of namespaces with one agent per node and a server in
every workload, then run the case's actions in order. Policy changes (apply, delete, relabel)
go through the reference run's control plane (`ScenarioRunner`: the same manifests, placement,
identities and `ClusterPolicyEngine`) and are pushed into every node's kernel maps by its
agent, difference only. Consecutive probes form one batch: each is judged by the reference run
(for the skip decision and so the two can be compared), then all are sent as real traffic at
once through a bounded pool, and the nodes' ring buffers are read to explain each drop.

The report has the shape of `policy check` (FORMAT.md) with `"mode": "kernel"`.

Cost: the k8s-netpol suite keeps one 9-pod lab for all 36 cases (they share a topology);
dropped probes cost one client timeout each, and the pool overlaps them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any, Final

from netstrata.errors import ManifestError, PolicyConflictError
from netstrata.lab import kernel_mesh
from netstrata.lab.cases import Apply, Delete, Probe, Relabel, Scenario
from netstrata.lab.kernel_l7 import L7_CLIENT_KINDS, probe_flows, proxy_denial
from netstrata.lab.kernel_probes import Shot, Traffic, fire, outcome, plan_shot
from netstrata.lab.kernel_session import LabSession, probe_targets, server_specs, session_for
from netstrata.lab.reference_check import (
    ScenarioRunner,
    _case_record,
    _judge,
    _probe_record,
    _rejection,
)
from netstrata.observe import Flow

log = logging.getLogger(__name__)

SOCKET_POOL: Final = 96
"""Probes in flight at once. Most of a dropped probe is waiting for its timeout, so the pool
is wide; 96 covers a whole 9x9 probe set with room for the DNS lookups in front of some."""
TOOL_POOL: Final = 16
"""Client processes at once: curl, ping, and the grpcio/aiokafka probe tool (each costs a
fork and exec; the Python tool also its imports)."""
_TOOLS: Final = frozenset({"http", "https", "icmp", *L7_CLIENT_KINDS})
LANES: Final = 3
"""Labs running cases side by side (see KernelCheck)."""


@dataclass
class _Lane:
    """One lab at a time, kept while consecutive cases share its topology."""

    lab_name: str
    session: LabSession | None = None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


class KernelCheck:
    """Runs scenarios on one machine's kernel, in a few labs side by side.

    Most of a case's wall time is waiting (dropped probes wait out their timeout; building a
    lab waits on netlink), so `lanes` labs run cases concurrently; each lane keeps its lab
    while its consecutive cases share a topology. Cases are independent (each starts from
    flushed conntrack and its own control plane), and the report keeps the input order.
    """

    def __init__(self, lab_name: str | None = None, *, pool: int = SOCKET_POOL,
                 lanes: int = LANES) -> None:
        self.lab_name = lab_name or f"check-{os.getpid()}"
        self.lanes = max(1, lanes)
        self._sockets = asyncio.Semaphore(pool)
        self._tools = asyncio.Semaphore(TOOL_POOL)

    async def run(self, suite: str, scenarios: list[Scenario]) -> dict[str, Any]:
        pending = list(enumerate(scenarios))
        cases: list[dict[str, Any]] = [{} for _ in scenarios]

        async def lane_loop(lane: _Lane) -> None:
            try:
                while pending:
                    index, sc = pending.pop(0)
                    cases[index] = await self.run_case(sc, lane)
            finally:
                await lane.close()

        lanes = min(self.lanes, len(scenarios)) or 1
        async with asyncio.TaskGroup() as tg:
            for n in range(lanes):
                name = self.lab_name if lanes == 1 else f"{self.lab_name}-{n}"
                tg.create_task(lane_loop(_Lane(name)), name=f"lab check lane {name}")
        summary = {"passed": 0, "failed": 0, "skipped": 0,
                   "probes": sum(len(c["probes"]) for c in cases)}
        for c in cases:
            summary[c["status"]] += 1
        return {"suite": suite, "mode": "kernel", "cases": cases, "summary": summary}

    async def run_case(self, sc: Scenario, lane: _Lane) -> dict[str, Any]:
        runner = ScenarioRunner(sc)
        probes = [a for a in sc.actions if isinstance(a, Probe)]
        wanted, targets = probe_targets(runner, probes)
        lane.session = await session_for(lane.session, lane.lab_name, sc.topology, targets)
        session = lane.session
        await session.serve(server_specs(session.plan, sc.topology, wanted),
                            sc.topology.dns_records)
        await session.reset()
        records: list[dict[str, Any]] = []
        batch: list[Probe] = []
        for action in [*sc.actions, None]:
            if isinstance(action, Probe):
                batch.append(action)
                continue
            if batch:
                records += await self._batch(session, runner, batch)
                batch = []
            if action is None:
                break
            try:
                self._control(runner, action)
            except (ManifestError, PolicyConflictError) as exc:
                return _rejection(sc, exc)
            runner.lab.forget_fqdns()
            await session.sync(runner.lab)
        if sc.expect_apply and sc.expect_apply.get("result") == "rejected":
            return {"id": sc.id, "status": "failed", "reason": "expected the policies to be rejected",
                    "probes": records}
        return _case_record(sc, records)

    @staticmethod
    def _control(runner: ScenarioRunner, action: object) -> None:
        if isinstance(action, Apply):
            runner.apply(action)
        elif isinstance(action, Delete):
            runner.delete(action)
        elif isinstance(action, Relabel):
            runner.relabel(action)

    async def _batch(self, session: LabSession, runner: ScenarioRunner,
                     probes: list[Probe]) -> list[dict[str, Any]]:
        shots = [plan_shot(runner, session.plan, p) for p in probes]
        session.drain_events()
        session.drain_l7_batch()
        session.drain_mesh_decisions()
        traffic = await asyncio.gather(*(self._fire(session, s) for s in shots))
        await asyncio.sleep(0)  # events are written before the packet moves on; read them all
        events = session.drain_events()
        l7_batch = session.drain_l7_batch()
        l7_flows = list(l7_batch.flows)
        decisions = session.drain_mesh_decisions()
        records = []
        for shot, sent in zip(shots, traffic, strict=True):
            if sent is None:
                records.append(_probe_record(shot.probe, None, "skipped", shot.skip))
                continue
            sent = _with_proxy_word(shot, sent, l7_flows, l7_batch.lost)
            out = outcome(sent, events, session.agents)
            if sent.flow is not None:
                seen = kernel_mesh.observed(sent.flow[0], sent.flow[1], sent.flow[3],
                                            shot.http, decisions)
                out = kernel_mesh.explain(out, seen)
            status, reason = _judge(shot.probe, out)
            if status == "failed":
                reason = f"{reason} ({sent.detail}){_proxy_flows(shot, sent, l7_flows)}"
            records.append(_probe_record(shot.probe, out, status, reason))
        return records

    async def _fire(self, session: LabSession, shot: Shot) -> Traffic | None:
        if shot.skip is not None:
            return None
        gate = self._tools if shot.kind in _TOOLS else self._sockets
        async with gate:
            return await fire(session, shot)


def _with_proxy_word(shot: Shot, sent: Traffic, flows: list[Flow], lost: int = 0) -> Traffic:
    """A gRPC or Kafka client that got no answer: the proxy's own flow says whether it denied
    the request without answering (`kernel_l7.proxy_denial`) or the kernel dropped it. When
    the batch lost flows, no denial flow proves nothing, and the detail says so."""
    if sent.got != "dropped" or shot.kind not in L7_CLIENT_KINDS or sent.flow is None:
        return sent
    _, dst, _, port = sent.flow
    why = proxy_denial(shot.src_ip, dst, port, shot.http, flows)
    if why is None and lost:
        return Traffic(sent.got, f"{sent.detail}; the proxies' flow log lost {lost} flows of "
                       "this batch, so a discard cannot be told from a drop", sent.flow)
    return sent if why is None else Traffic("denied-l7", why, sent.flow)


def _proxy_flows(shot: Shot, sent: Traffic, flows: list[Flow]) -> str:
    """A failed gRPC or Kafka probe's proxy flows, for its report reason (`probe_flows`)."""
    if shot.kind not in L7_CLIENT_KINDS or sent.flow is None:
        return ""
    _, dst, _, port = sent.flow
    seen = probe_flows(shot.src_ip, dst, port, flows)
    return f"; proxy flows: {' | '.join(seen) if seen else 'none'}"


def kernel_check_report(suite: str, scenarios: list[Scenario], *, lab_name: str | None = None,
                        lanes: int = LANES) -> dict[str, Any]:
    """Run `scenarios` on the kernel (needs root) and return the FORMAT.md report."""
    return asyncio.run(KernelCheck(lab_name, lanes=lanes).run(suite, scenarios))


__all__ = ["KernelCheck", "kernel_check_report"]
