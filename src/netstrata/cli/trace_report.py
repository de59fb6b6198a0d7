"""`policy trace` output: one report per request, three strata, as JSON or as text.

The report is built once from a reference walk (`ReferenceLab.walk`) and both forms are printed
from it, so `-o json` and the text always say the same thing. Layers, in the order a request
meets them:

1. `l3l4`: the kernel's policy-map lookup, egress of the source then ingress of the
   destination, each with the MapState key/entry that decided and the rule it came from;
2. `l7`: Cilium's proxy, when a redirect entry sent the connection there;
3. `mesh`: the destination's Istio proxy (enrollment, SPIFFE principal, capture annotations,
   PeerAuthentication, AuthorizationPolicy in CUSTOM/DENY/ALLOW order with AUDIT beside).

Token and cookie values are never printed.
"""

from __future__ import annotations

from typing import Any, Final

from netstrata.lab.simulate import ProbeOutcome, ReferenceLab, Request, Step
from netstrata.lab.topology import PlacedWorkload

SECRET_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_STEP_VERDICT: Final = {True: "allowed", False: "denied"}


def _request_json(req: Request) -> dict[str, Any] | None:
    from netstrata.policy.l7 import HTTPRequest, KafkaRequest

    l7 = req.l7
    if isinstance(l7, HTTPRequest):
        headers = [[k, "<redacted>" if k.lower() in SECRET_HEADERS else v] for k, v in l7.headers]
        path = l7.path.split("?", 1)[0] + ("?<query>" if "?" in l7.path else "")
        return {"http": {"method": l7.method, "path": path, "host": l7.host, "headers": headers}}
    if isinstance(l7, KafkaRequest):
        return {"kafka": {"api_key": l7.api_key, "topics": list(l7.topics)}}
    if isinstance(l7, str):
        return {"dns": {"query": l7}}
    return None


def _direction_json(
    lab: ReferenceLab, direction: str, subject: PlacedWorkload | None, steps: list[Step]
) -> dict[str, Any] | None:
    if subject is None:
        return None
    pol = lab.endpoint_policy(subject)
    base: dict[str, Any] = {"endpoint": subject.ref, "identity": lab.identity_of.get(subject.ref)}
    if pol is None:
        return {**base, "verdict": "not-an-endpoint"}
    enforced = pol.ingress_enforced if direction == "ingress" else pol.egress_enforced
    considered = sorted(
        {
            s
            for k, srcs in pol.sources.items()
            if k.direction.name.lower() == direction
            for s in srcs
        }
    )
    base.update({"enforced": enforced, "considered": considered})
    step = next((s for s in steps if s.layer == "l3l4" and s.direction == direction), None)
    if step is None:
        return {**base, "verdict": "not-reached"}
    verdict = ("audited" if step.audited else "allowed") if step.allowed else "dropped"
    if not enforced:
        verdict = "not-enforced"
    return {
        **base,
        "verdict": verdict,
        "detail": step.detail,
        "entry": step.entry,
        "rule": step.rule,
        "drop_reason": step.drop_reason,
    }


def _l3l4_json(
    lab: ReferenceLab, src: PlacedWorkload, dst: PlacedWorkload | None, out: ProbeOutcome
) -> dict[str, Any]:
    egress = _direction_json(lab, "egress", src, out.steps)
    ingress = _direction_json(lab, "ingress", dst, out.steps)
    verdict = (
        "dropped"
        if out.got == "dropped"
        else ("audited" if any(s.layer == "l3l4" and s.audited for s in out.steps) else "allowed")
    )
    return {"verdict": verdict, "egress": egress, "ingress": ingress}


def _l7_json(out: ProbeOutcome) -> dict[str, Any]:
    step = next((s for s in out.steps if s.layer == "l7"), None)
    if step is not None:
        verdict = "audited" if step.audited else _STEP_VERDICT[step.allowed]
        return {
            "verdict": verdict,
            "direction": step.direction,
            "rules": step.detail,
            "rule": step.rule,
        }
    if out.got == "dropped":
        return {"verdict": "not-reached", "reason": "dropped at L3/L4"}
    if out.proxied:
        return {
            "verdict": "allowed",
            "reason": "redirected to the proxy, no L7 rules for this request",
        }
    return {
        "verdict": "not-redirected",
        "reason": "no L7 rules on this port: the kernel forwards it",
    }


def _mesh_json(
    lab: ReferenceLab, dst: PlacedWorkload | None, req: Request, out: ProbeOutcome
) -> dict[str, Any]:
    if out.mesh is not None:
        return out.mesh.to_json()
    if out.got in ("dropped", "denied-l7"):
        return {"verdict": "not-reached", "reason": f"{out.got} before the mesh"}
    if lab.mesh is None:
        return {"verdict": "not-applicable", "reason": "no mesh settings"}
    if req.proto != 6:
        return {"verdict": "not-applicable", "reason": "the mesh captures TCP only"}
    what = dst.ref if dst is not None else "the destination"
    return {"verdict": "not-applicable", "reason": f"{what} is not a workload of the clusters"}


def trace_report(
    lab: ReferenceLab,
    src: PlacedWorkload,
    to: str,
    dst_ip: str,
    port: str,
    req: Request,
    out: ProbeOutcome,
) -> dict[str, Any]:
    """The JSON form of one trace (README, Commands: `policy trace -o json`)."""
    dst = lab.topology.owner_of_ip(dst_ip)
    return {
        "from": src.ref,
        "to": to,
        "destination_ip": dst_ip,
        "port": int(port.partition("/")[0]),
        "protocol": (port.partition("/")[2] or "TCP").upper(),
        "request": _request_json(req),
        "l3l4": _l3l4_json(lab, src, dst, out),
        "l7": _l7_json(out),
        "mesh": _mesh_json(lab, dst, req, out),
        "verdict": out.got,
        "layer": out.layer,
        "rule": out.rule,
        "direction": out.direction if out.got != "allowed" else None,
        "drop_reason": out.drop_reason,
    }


# ---------------------------------------------------------------------- text


def _text_direction(name: str, d: dict[str, Any] | None) -> list[str]:
    if d is None:
        return [f"  {name}: no endpoint (outside the clusters)"]
    if d["verdict"] == "not-an-endpoint":
        return [f"  {name} of {d['endpoint']}: not a policy endpoint"]
    state = "enforced" if d["enforced"] else "not enforced (no policy selects it in this direction)"
    lines = [f"  {name} of {d['endpoint']} (identity {d['identity']}): {state}"]
    lines += [f"    considered: {r}" for r in d["considered"]]
    if d["verdict"] == "not-reached":
        return [*lines, "    not reached"]
    if d["verdict"] == "not-enforced":
        return [*lines, f"    passes: {d['detail']}"]
    lines.append(f"    {d['verdict'].upper()}: {d['detail']}")
    if d.get("entry"):
        lines.append(f"    entry: {d['entry']}")
    lines.append(f"    rule: {d.get('rule') or 'none matched'}")
    if d.get("drop_reason"):
        lines.append(f"    drop reason: {d['drop_reason']}")
    return lines


def _text_mesh(m: dict[str, Any]) -> list[str]:
    if "destination" not in m:
        return [f"  {m['verdict']}: {m['reason']}"]
    dst = m["destination"]
    if m.get("decision") is None:
        return [
            f"  destination: {dst['mode']} ({dst['enrollment']})",
            f"  {m['verdict']}: {m['reason']}",
        ]
    lines = []
    src = m.get("source")
    if src is None:
        lines.append("  source: not a workload: plaintext")
    elif src["mode"] == "none":
        lines.append(f"  source: not meshed ({src['enrollment']}): plaintext, no principal")
    else:
        path = src["outbound_path"]
        lines.append(
            f"  source: meshed, {src['mode']} ({src['enrollment']}); SPIFFE principal "
            f"{src['principal']} (trust domain {src['trust_domain']})"
        )
        lines.append(
            "    outbound: "
            + (
                "captured: mTLS with that certificate"
                if path["meshed"]
                else f"bypassed ({path['reason']}): plaintext"
            )
        )
    inbound = dst["inbound_path"]
    lines.append(
        f"  destination: meshed, {dst['mode']} ({dst['enrollment']}); inbound: "
        + ("captured" if inbound["meshed"] else f"bypassed ({inbound['reason']})")
    )
    if not inbound["meshed"]:
        lines.append("  authorization: not on the path (the app gets the raw connection)")
        return lines
    pa = m.get("peer_authentication") or {}
    lines.append(f"  PeerAuthentication: {pa.get('mode')} ({pa.get('source')})")
    lines.append(
        "  peer seen by authorization: "
        + (f"mTLS {m['peer_principal']}" if m["peer_principal"] else "plaintext (no principal)")
    )
    d = m["decision"]
    answer = (
        f"; grpc-status {d['grpc_status']}"
        if d["grpc_status"] is not None
        else f"; HTTP {d['status']}"
        if d["status"]
        else ""
    )
    lines.append(
        f"  {m['verdict'].upper()}: {d['outcome']}, decided by {d['decided_by']}{answer}"
        + (f"; audited by {d['audited_by']}" if d["audited_by"] else "")
    )
    lines += [f"    - {e}" for e in d["explanation"]]
    return lines


def render_text(r: dict[str, Any]) -> str:
    req = r["request"] or {}
    what = ""
    if "http" in req:
        what = f" {req['http']['method']} {req['http']['path']}"
    lines = [
        f"Tracing {r['from']} -> {r['to']} {r['port']}/{r['protocol']}{what}",
        "",
        f"1. Kernel L3/L4 ({r['l3l4']['verdict']})",
    ]
    lines += _text_direction("egress", r["l3l4"]["egress"])
    lines += _text_direction("ingress", r["l3l4"]["ingress"])
    l7 = r["l7"]
    lines += ["", f"2. Cilium L7 proxy ({l7['verdict']})"]
    if "rule" in l7:
        lines.append(f"  {l7['direction']} {l7['rules']}: rule {l7['rule'] or 'none matched'}")
    else:
        lines.append(f"  {l7['reason']}")
    lines += ["", f"3. Mesh ({r['mesh']['verdict']})", *_text_mesh(r["mesh"]), ""]
    where = f" at {r['direction']}" if r["direction"] else ""
    lines.append(
        f"Verdict: {r['verdict']}{where}"
        + (f" ({r['drop_reason']})" if r["drop_reason"] else "")
        + (f"; layer {r['layer']}, rule {r['rule']}" if r["rule"] else "")
    )
    return "\n".join(lines)


__all__ = ["render_text", "trace_report"]
