"""One probe of a case as real traffic: plan it, send it, read what the kernel said.

`plan_shot()` settles everything about a probe before any packet moves: its source
namespace and address, its destination (services resolve to the backend the reference run
picks: probes target pod IPs until service load balancing exists, FORMAT.md), the client to
use, and whether this build can run it at all. A probe whose path the reference run sends
through the L7 proxy for a protocol it has no client for, whose JWT cannot be minted, or
that is IPv6 is `skipped` with the reason, never judged. Meshed paths run for real through the
nodes' mesh listeners, with the probe's JWT in the request (`kernel_mesh.py`). HTTP, gRPC, Kafka and DNS probes whose path
redirects go through the kernel's transparent redirect to each node's proxy (`agent/proxy.py`),
as any other traffic (gRPC and Kafka with real grpcio and aiokafka clients, `kernel_l7.py`); a probe to a toFQDNs name first looks it up with dig through the same redirect
(the DNS proxy programs the answer's IPs into the kernel before dig sees it), then connects
to the answered address, as a pod would.

`fire()` sends it from inside the source namespace with a real client and reports what the
client saw. `outcome()` turns that into the result the report carries: `got` from the
traffic (an audited flow is traffic that passed with an AUDIT verdict event), and for a
drop the side, reason and rule from the kernel's own drop event for that flow.

SCTP has no sockets in this kernel: its probes are crafted packets run through the live
programs of both nodes with BPF_PROG_TEST_RUN (the source's egress, then the destination's
ingress), which sends nothing but decides with the real maps.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from netstrata.agent.node import NodeAgent
from netstrata.datapath.drop_reasons import DropReason
from netstrata.datapath.loader import packets
from netstrata.datapath.maps import EventType, FlowEvent, Verdict
from netstrata.lab import clients, kernel_l7, kernel_mesh
from netstrata.lab.cases import SKIP_VERDICTS, Probe
from netstrata.lab.kernel_session import LabSession
from netstrata.lab.netlab import LabPlan, PodPlan
from netstrata.lab.reference_check import ScenarioRunner
from netstrata.lab.simulate import ProbeOutcome
from netstrata.policy.types import Direction

TCP, UDP, ICMP, SCTP = 6, 17, 1, 132
PROXY_SKIP: Final = ("needs the L7 proxy for a protocol the lab does not send through it yet "
                     "(HTTP/1.1, gRPC, Kafka and DNS probes go through the node proxy)")
PROXIED_KINDS: Final = frozenset({"http", "dns", *kernel_l7.L7_CLIENT_KINDS})
"""Probe protocols sent through the kernel's redirect to the node proxy."""
Flow = tuple[str, str, int, int]
"""(source IP, destination IP, IANA protocol, destination port; 0 for ICMP)."""


@dataclass
class Shot:
    """A probe ready to send (or the reason it cannot be)."""

    probe: Probe
    reference: ProbeOutcome | None = None
    skip: str | None = None
    src_netns: str = ""
    src_ip: str = ""
    dst_ip: str | None = None
    dport: int = 0
    kind: str = "tcp"
    lookup: tuple[str, str] | None = None
    """(kube-dns IP, name): a real DNS lookup before connecting."""
    http: dict[str, Any] = field(default_factory=dict)
    sctp: tuple[PodPlan, PodPlan] | None = None


@dataclass(frozen=True, slots=True)
class Traffic:
    got: clients.Got
    detail: str
    flow: Flow | None


def _pod(plan: LabPlan, ref: str) -> PodPlan | None:
    return next((p for p in plan.pods if p.ref == ref), None)


def plan_shot(runner: ScenarioRunner, plan: LabPlan, probe: Probe) -> Shot:
    """Judge `probe` in the reference run (it is needed for the skip decision and the
    agreement check) and settle how to send it."""
    shot = Shot(probe)
    if probe.expect in SKIP_VERDICTS:
        shot.skip = SKIP_VERDICTS[probe.expect]
        return shot
    shot.reference = runner.run_probe(probe)
    shot.skip = runner.cannot_judge(probe, shot.reference)  # a JWT it could not mint
    if shot.skip is not None:
        return shot
    src = runner._workload(probe.src)
    to = probe.to if isinstance(probe.to, dict) else {}
    dst_ip, dport, name = runner._target(probe, src, int(probe.port or 0))
    if probe.raw.get("resolve") == "kube-dns" and name and "fqdn" in to:
        dns = runner._kube_dns(src.workload.cluster)
        if dns is not None:
            # the reference's lookup learned its IPs; the real one (dig, through the
            # kernel's redirect to the DNS proxy) must learn them itself
            runner.lab.forget_fqdns()
            shot.lookup = (dns.ip, name)
    if shot.reference.proxied and probe.protocol.lower() not in PROXIED_KINDS:
        shot.skip = PROXY_SKIP
        return shot
    try:
        shot.src_netns = plan.netns_of(src.ref)
    except KeyError:
        shot.skip = f"source {src.ref} has no namespace in the lab"
        return shot
    shot.src_ip, shot.dst_ip, shot.dport = src.ip, dst_ip, dport
    if dst_ip is None and shot.lookup is None:
        shot.skip = f"{name or probe.to} does not resolve to an address in the lab"
        return shot
    _settle_kind(shot, plan, probe, name if "fqdn" in to else None)
    if shot.kind in ("http", "https"):
        kernel_mesh.prepare_http(runner, probe, shot.reference, shot.http)
    return shot


def _settle_kind(shot: Shot, plan: LabPlan, probe: Probe, fqdn: str | None) -> None:
    raw, kind = probe.raw, probe.protocol.lower()
    shot.kind = kind
    if kind == "icmp":
        icmp = raw.get("icmp") or {}
        if str(icmp.get("family", "IPv4")).lower() != "ipv4":
            shot.skip = "ICMPv6: the kernel datapath and the lab are IPv4-only"
        elif int(icmp.get("type", 8)) != 8:
            shot.skip = "only ICMP echo requests can be sent as real traffic"
    elif kind in ("http", "https"):
        http = raw.get("http") or {}
        shot.http = {"method": str(http.get("method", "GET")), "path": str(http.get("path", "/")),
                     "host": http.get("host") or fqdn,
                     "headers": tuple((str(k), str(v)) for k, v in (http.get("headers") or {}).items())}
    elif kind in kernel_l7.L7_CLIENT_KINDS:
        shot.http = kernel_l7.settle(probe)
        shot.skip = kernel_l7.is_supported(shot.http)
    elif kind == "dns":
        dns = raw.get("dns") or {}
        shot.http = {"query": str(dns.get("query", "")), "qtype": str(dns.get("qtype", "A")),
                     "transport": str(dns.get("transport", "UDP")).upper()}
        shot.dport = shot.dport or 53
    elif kind == "sctp":
        src, dst = _pod(plan, probe.src), _pod(plan, str(probe.to))
        if src is None or dst is None:
            shot.skip = "SCTP is judged by test runs on pod endpoints; this probe has no pod end"
        elif src is dst:
            shot.skip = ("SCTP loopback: the packet never crosses the veth, and this kernel "
                         "has no SCTP socket to send it")
        else:
            shot.sctp = (src, dst)


def _flow(shot: Shot, dst: str, proto: int, dport: int) -> Flow:
    return (shot.src_ip, dst, proto, dport)


async def fire(session: LabSession, shot: Shot) -> Traffic:
    """Send the probe's traffic and report what its client saw."""
    dst = shot.dst_ip
    if shot.lookup is not None:
        server, name = shot.lookup
        looked = await clients.dns_probe(shot.src_netns, server, 53, name,
                                         wait_s=clients.DNS_LOOKUP_TIMEOUT_S)
        if looked.got != "allowed":
            return Traffic(looked.got, f"DNS lookup of {name}: {looked.detail}",
                           _flow(shot, server, UDP, 53))
        if not looked.answers:
            return Traffic("app-error", f"{name} has no address", None)
        dst = looked.answers[0]
    assert dst is not None
    if shot.kind == "sctp":
        return await _sctp(session, shot, dst)
    out, flow = await _send(shot, dst)
    return Traffic(out.got, out.detail, flow)


async def _send(shot: Shot, dst: str) -> tuple[clients.Outcome, Flow]:
    ns, port, kind = shot.src_netns, shot.dport, shot.kind
    if kind == "icmp":
        return await clients.icmp_probe(ns, dst), _flow(shot, dst, ICMP, 0)
    if kind in ("http", "https"):
        h = shot.http
        out = await clients.http_probe(ns, dst, port, method=h["method"], path=h["path"],
                                       host=h["host"], headers=h["headers"], tls=kind == "https")
        return out, _flow(shot, dst, TCP, port)
    if kind in kernel_l7.L7_CLIENT_KINDS:  # grpcio / aiokafka
        return await kernel_l7.send(ns, dst, port, shot.http), _flow(shot, dst, TCP, port)
    if kind == "dns":
        d = shot.http
        out = await clients.dns_probe(ns, dst, port, d["query"], d["qtype"], d["transport"])
        return out, _flow(shot, dst, TCP if d["transport"] == "TCP" else UDP, port)
    if kind == "udp":
        return await clients.udp_probe(ns, dst, port), _flow(shot, dst, UDP, port)
    return await clients.tcp_probe(ns, dst, port), _flow(shot, dst, TCP, port)


async def _sctp(session: LabSession, shot: Shot, dst: str) -> Traffic:
    assert shot.sctp is not None
    src_pod, dst_pod = shot.sctp
    frame = packets.frame(shot.src_ip, dst, SCTP, sport=random.randint(32768, 60999),
                          dport=shot.dport)
    flow = _flow(shot, dst, SCTP, shot.dport)
    if await session.test_run(src_pod.node, "from_pod", frame, src_pod.host_if) != 0:
        return Traffic("dropped", "SCTP INIT dropped leaving the source (test run)", flow)
    if await session.test_run(dst_pod.node, "to_pod", frame, dst_pod.host_if) != 0:
        return Traffic("dropped", "SCTP INIT dropped entering the destination (test run)", flow)
    return Traffic("allowed", "SCTP INIT passed both programs (test run)", flow)


# ---------------------------------------------------------------------------------- outcome


def _matches(event: FlowEvent, flow: Flow) -> bool:
    src, dst, proto, dport = flow
    if (str(event.saddr_be), str(event.daddr_be), event.proto) != (src, dst, proto):
        return False
    return event.icmp_type == 8 if proto == ICMP else event.dport_be == dport


def _l7_denial(verdicts: list[tuple[FlowEvent, str]], agents: Mapping[str, NodeAgent]
               ) -> ProbeOutcome:
    """The proxy answered 403. The last redirect of the flow is the proxy that denied: an
    egress proxy that denies opens no upstream, so an ingress redirect after it means the
    egress side let the request through. Its verdict event names the side and the rule."""
    redirects = [(e, n) for e, n in verdicts if e.verdict == Verdict.REDIRECTED]
    if not redirects:
        return ProbeOutcome("denied-l7", "l7")
    e, node = redirects[-1]
    side = "egress" if e.direction == Direction.EGRESS else "ingress"
    return ProbeOutcome("denied-l7", "l7", agents[node].rule_of(e.endpoint_id, e.cookie), side)


def outcome(traffic: Traffic, events: Mapping[str, list[FlowEvent]],
            agents: Mapping[str, NodeAgent]) -> ProbeOutcome:
    """The reported outcome: the client's verdict, explained by the kernel's events."""
    mine = sorted(((e, node) for node, evs in events.items() for e in evs
                   if traffic.flow is not None and _matches(e, traffic.flow)),
                  key=lambda pair: pair[0].timestamp_ns)
    got: str = traffic.got
    if got == "dropped":
        drop = next(((e, n) for e, n in mine if e.type == EventType.DROP), None)
        if drop is None:
            return ProbeOutcome(got, "l3l4")
        e, node = drop
        direction = "egress" if e.direction == Direction.EGRESS else "ingress"
        reason = DropReason(e.drop_reason).name if e.drop_reason in DropReason._value2member_map_ \
            else str(e.drop_reason)
        return ProbeOutcome(got, "l3l4", agents[node].rule_of(e.endpoint_id, e.cookie),
                            direction, reason)
    verdicts = [(e, n) for e, n in mine if e.type == EventType.POLICY_VERDICT]
    if got == "denied-l7":
        return _l7_denial(verdicts, agents)
    if got == "allowed" and any(e.verdict == Verdict.AUDIT for e, _ in verdicts):
        got = "audited"
    rule = None
    for wanted in (Direction.INGRESS, Direction.EGRESS):
        for e, node in verdicts:
            if e.direction == wanted and rule is None:
                rule = agents[node].rule_of(e.endpoint_id, e.cookie)
    # a connection the kernel redirected was let through by the proxy's L7 rules (a denial
    # would have been answered), so the proxy is the deciding layer, as in the reference run
    redirected = any(e.verdict == Verdict.REDIRECTED for e, _ in verdicts)
    return ProbeOutcome(got, "l7" if redirected else "l3l4", rule)
