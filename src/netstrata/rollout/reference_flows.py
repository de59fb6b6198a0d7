"""Hubble flows for a connection walked through the reference datapath (`ReferenceLab.walk`).

The reference datapath decides but does not report; this module reports its decisions the
way the agents do for real traffic: one `policy-verdict` L3/L4 flow per enforcing direction
(FORWARDED, REDIRECTED when the port goes to the proxy, AUDIT, DROPPED with the reason) and
one L7 REQUEST record per proxy decision. Endpoints carry the identity, namespace, pod name and
identity labels an agent would put there. `time_ns` and the uuid come in; nothing reads a clock.
"""

from __future__ import annotations

from netstrata.datapath.drop_reasons import DropReason
from netstrata.lab.simulate import ProbeOutcome, ReferenceLab, Request, Step
from netstrata.lab.topology import PlacedWorkload
from netstrata.observe.builders import Packet, flow_from_l7_http, flow_from_l34
from netstrata.observe.flow import Endpoint, Flow, L7FlowType, TCPFlags, Verdict, Workload
from netstrata.policy.l7 import HTTPRequest
from netstrata.policy.types import Direction

_SYN = TCPFlags(SYN=True)
_CLIENT_PORT = 40000


def endpoint_of(lab: ReferenceLab, ip: str) -> Endpoint | None:
    """A flow endpoint for `ip`: the pod owning it, else the identity the ipcache gives it."""
    owner = lab.topology.owner_of_ip(ip)
    if owner is not None and owner.workload.kind == "pod":
        w = owner.workload
        ident = lab.identity_of[owner.ref]
        ep_id = next((i for i, p in enumerate(lab.topology.pods(), start=1) if p is owner), 0)
        return Endpoint(
            id=ep_id,
            identity=ident,
            cluster_name=w.cluster,
            namespace=w.namespace,
            labels=tuple(sorted(str(x) for x in lab.identities[ident])),
            pod_name=w.name,
            workloads=(Workload(w.name, "Deployment"),),
        )
    return None


def _world_endpoint(lab: ReferenceLab, cluster: str, node: str | None, ip: str) -> Endpoint:
    ident = lab.ipcache(cluster, node, ip)
    labels = lab.identities.get(ident)
    if labels is None:
        labels = lab.engine(cluster).cache.identities.get(ident)
    return Endpoint(identity=ident, labels=tuple(sorted(str(x) for x in labels or ())))


def flows_of_walk(
    lab: ReferenceLab,
    src: PlacedWorkload,
    dst_ip: str,
    req: Request,
    outcome: ProbeOutcome,
    *,
    time_ns: int,
    names: tuple[str, ...] = (),
) -> list[Flow]:
    """The flows the agents would report for one walked connection (see module docstring)."""
    cluster, node = src.workload.cluster, src.workload.node
    source = endpoint_of(lab, src.ip) or _world_endpoint(lab, cluster, node, src.ip)
    destination = endpoint_of(lab, dst_ip) or _world_endpoint(lab, cluster, node, dst_ip)
    packet = Packet(
        src.ip,
        dst_ip,
        req.proto,
        _CLIENT_PORT,
        req.port,
        tcp_flags=_SYN,
        source=source,
        destination=destination,
        destination_names=names,
    )
    owner = lab.topology.owner_of_ip(dst_ip)
    dst_node = (
        f"{owner.workload.cluster}/{owner.workload.node}"
        if owner is not None and owner.workload.node
        else ""
    )
    out: list[Flow] = []
    steps = outcome.steps
    for i, step in enumerate(steps):
        direction = Direction.EGRESS if step.direction == "egress" else Direction.INGRESS
        node_name = f"{cluster}/{node}" if direction == Direction.EGRESS else dst_node
        t = time_ns + i
        if step.layer == "l3l4" and "not enforced" not in step.detail:
            redirected = any(s.layer == "l7" and s.direction == step.direction for s in steps)
            out.append(_l34_flow(packet, step, direction, redirected, t, node_name))
        elif step.layer == "l7" and isinstance(req.l7, HTTPRequest):
            verdict = (
                Verdict.AUDIT
                if step.audited
                else (Verdict.FORWARDED if step.allowed else Verdict.DROPPED)
            )
            out.append(
                flow_from_l7_http(
                    packet,
                    method=req.l7.method,
                    url=f"http://{req.l7.host or dst_ip}{req.l7.path}",
                    l7_type=L7FlowType.REQUEST,
                    verdict=verdict,
                    direction=direction,
                    time_ns=t,
                    node_name=node_name,
                    uuid=f"ref-{time_ns}-{i}",
                )
            )
    return out


def _l34_flow(
    packet: Packet, step: Step, direction: Direction, redirected: bool, t: int, node_name: str
) -> Flow:
    reason = None
    if not step.allowed:
        try:
            reason = int(DropReason[step.drop_reason or "POLICY_DENIED"])
        except KeyError:
            reason = int(DropReason.POLICY_DENIED)
    return flow_from_l34(
        packet,
        event="policy-verdict",
        direction=direction,
        time_ns=t,
        node_name=node_name,
        drop_reason=reason,
        audited=step.audited,
        proxy_port=1 if redirected and step.allowed and not step.audited else 0,
        uuid=f"ref-{t}",
    )


__all__ = ["endpoint_of", "flows_of_walk"]
