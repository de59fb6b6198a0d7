"""Mesh probes of `lab check`: real tokens in, the destination proxy's own word out.

On the kernel lab a meshed probe takes the real path (docs/mesh.md, "The mesh on real
traffic"): the source's connection is captured to its node's mesh listener, carried over
mutual TLS with the source pod's SPIFFE certificate, delivered first (the destination's
kernel L3/L4 policy judges it), then parsed by the destination node proxy's HTTP layers,
where `mesh.evaluate` decides each request.

- `prepare_http`: a probe's `http.jwt` is minted exactly as the reference run mints it
  (`ScenarioRunner._with_token`: the fixture key, `mesh.casefile.mint_token` at
  `DEFAULT_NOW`) and placed in the real request; the lab's destination proxies evaluate at the
  view's mesh time, the same fixed time, so validity is judged alike.
- `observed`: the destination proxy records every decision it makes
  (`agent.mesh.MeshDecisionRecord`: deciding rule, local reply, the peer principal
  authorization saw); the one for this probe's request (source, destination, port, path)
  becomes `ProbeOutcome.observed_mesh`, which `expect.mesh` is checked against.
- `explain`: the client's verdict (`denied-mesh` for the mesh's local replies,
  `clients.is_mesh_denial`) with the mesh as the deciding layer, as the reference reports it.

A request the mesh never parsed (plain TCP, a kernel drop) has no record; its `expect.mesh`
facts then fail as unobserved rather than pass unseen.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Final

from netstrata.agent.mesh import MeshDecisionRecord
from netstrata.lab.reference_check import ScenarioRunner
from netstrata.lab.simulate import ObservedMesh, ProbeOutcome

REQUEST_ID: Final = "x-request-id"


def prepare_http(
    runner: ScenarioRunner, probe: Any, reference: ProbeOutcome | None, http: dict[str, Any]
) -> None:
    """Put the probe's JWT (if it states one) into `http`'s headers or path, as the reference
    run does for the same probe; a request the mesh will see gets its own `x-request-id`
    (Envoy's per-request id), which names it in the destination proxy's decisions, where
    several probes of a batch send the same method and path from the same source."""
    headers = list(http.get("headers") or ())
    spec = (probe.raw.get("http") or {}).get("jwt")
    if spec:
        http["path"] = runner._with_token(spec, str(http.get("path") or "/"), headers)
    meshed = (
        reference is not None
        and reference.mesh is not None
        and reference.mesh.verdict != "not-applicable"
    )
    if meshed and not any(k.lower() == REQUEST_ID for k, _ in headers):
        headers.append((REQUEST_ID, f"netstrata-probe-{uuid.uuid4().hex}"))
    http["headers"] = tuple(headers)


def observed(
    src_ip: str, dst_ip: str, port: int, http: dict[str, Any], records: Iterable[MeshDecisionRecord]
) -> ObservedMesh | None:
    """The destination proxy's decision for this probe's request (by its `x-request-id`, else
    its path; the latest, should a client retry), or None when no mesh proxy decided it."""
    found = None
    want = str(http.get("path") or "").split("?", 1)[0]
    request_id = next((v for k, v in http.get("headers") or () if k.lower() == REQUEST_ID), None)
    for r in records:
        if (r.source_ip, r.target) != (src_ip, (dst_ip, port)):
            continue
        connection_level = not r.method  # refused before any request (PeerAuthentication)
        if not connection_level and request_id is not None and r.request_id != request_id:
            continue
        if not connection_level and want and r.path.split("?", 1)[0] != want:
            continue
        found = r
    return None if found is None else ObservedMesh(found.decision, found.peer_principal)


def explain(out: ProbeOutcome, seen: ObservedMesh | None) -> ProbeOutcome:
    """The outcome with the mesh's part: a mesh denial is decided at the destination's
    proxy (ingress) by its rule; an allowed request a named rule admitted has the mesh as
    its deciding layer, and an AUDIT match makes it `audited` (as in the reference run)."""
    if seen is None:
        return replace(out, layer="mesh", direction="ingress") if out.got == "denied-mesh" else out
    decided_by = seen.decision.decided_by
    out = replace(out, observed_mesh=seen)
    if out.got == "app-error" and seen.decision.outcome == "tcp-reset":
        # closed without an answer, and the mesh says it reset it (plaintext under STRICT)
        out = replace(out, got="denied-mesh")
    if out.got == "denied-mesh":
        return replace(out, layer="mesh", rule=decided_by, direction="ingress", drop_reason=None)
    if out.got == "allowed" and seen.decision.audited:
        out = replace(out, got="audited")
    if out.got in ("allowed", "audited") and decided_by.startswith("ns["):
        out = replace(out, layer="mesh", rule=decided_by)
    return out


__all__ = ["REQUEST_ID", "explain", "observed", "prepare_http"]
