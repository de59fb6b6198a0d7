"""Run scenarios through the reference datapath and report in the shared result shape.

The result shape is FORMAT.md's: suite, mode, cases[id, status, reason, probes[...]], summary.
Probes whose expectation this build cannot judge are `skipped` with the reason, never `passed`.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from netstrata.api import types as api
from netstrata.errors import ManifestError, PolicyConflictError
from netstrata.lab.cases import (
    Apply,
    Delete,
    Probe,
    Relabel,
    Scenario,
    as_located,
    clusters_for,
)
from netstrata.lab.simulate import MeshSettings, ObservedMesh, ProbeOutcome, ReferenceLab, Request
from netstrata.lab.topology import PlacedWorkload
from netstrata.mesh.trace import MeshTrace
from netstrata.policy.rules import Catalog
from netstrata.policy.types import Proto

KAFKA_ACTIONS = {"produce": 0, "consume": 1, "fetch": 1, "metadata": 3}
ISTIO_AUTHZ_CASES: Final = Path("..") / "istio-authz" / "cases.yaml"
"""Where a scenario file's JWT signing keys live, relative to its folder (the scenarios README:
"Trust domains, JWT keys and manifests match ../istio-authz/cases.yaml")."""


@lru_cache(maxsize=4)
def _istio_authz_fixtures(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(fixtures.jwt, defaults.jwt) of an istio-authz case file, or why they cannot be read."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (a safe loader)
    except (OSError, yaml.YAMLError) as exc:
        return f"the JWT signing keys are in {ISTIO_AUTHZ_CASES}, which cannot be read: {exc}"
    fixtures = ((data or {}).get("fixtures") or {}).get("jwt") if isinstance(data, dict) else None
    if not isinstance(fixtures, dict) or not fixtures.get("keys"):
        return f"{ISTIO_AUTHZ_CASES} has no fixtures.jwt.keys to sign tokens with"
    return dict(fixtures), dict((data.get("defaults") or {}).get("jwt") or {})


class ScenarioRunner:
    """Applies a scenario's actions in order to a ReferenceLab and judges each probe."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.lab = ReferenceLab(sc.topology)
        self.lab.secrets.update(sc.secrets)
        self.applied: dict[str, dict[str, Any]] = {}
        """Current manifests by ref (k8s steps replace by namespace/name)."""

    # ------------------------------------------------------------------ manifests

    def _mesh_settings(self) -> MeshSettings:
        """The mesh as the scenario's `mesh` block sets it up (meshConfig; its PeerAuthentication
        shorthand becomes a mesh-wide policy in the root namespace, as `mesh check` reads it)."""
        from netstrata.mesh.casefile import DEFAULT_NOW, mesh_of

        config = mesh_of({}, self.sc.mesh or {})
        return MeshSettings(config, {}, now=DEFAULT_NOW)

    def _mesh_objects(self, istio: tuple[object, ...]) -> tuple[object, ...]:
        from netstrata.api.istio import (
            AuthorizationPolicy,
            PeerAuthentication,
            RequestAuthentication,
        )
        from netstrata.mesh.casefile import mesh_peer_authentication

        objects = [o for o in istio
                   if isinstance(o, AuthorizationPolicy | RequestAuthentication | PeerAuthentication)]
        assert self.lab.mesh is not None
        pa = mesh_peer_authentication(self.sc.mesh or {}, self.lab.mesh.config.root_namespace)
        if pa is not None:
            objects.insert(0, pa)
        return tuple(objects)

    def _apply_all(self) -> None:
        from netstrata.api import parse_documents

        if self.lab.mesh is None:
            self.lab.mesh = self._mesh_settings()
        by_cluster: dict[str, list[dict[str, Any]]] = {c: [] for c in self.sc.topology.clusters}
        for ref, m in self.applied.items():
            del ref
            for c in clusters_for(self.sc, m):
                if c in by_cluster:
                    by_cluster[c].append(m)
        for cluster, manifests in by_cluster.items():
            ms = parse_documents(as_located(manifests, f"{self.sc.source}#{self.sc.id}"))
            catalog = Catalog(
                services=tuple(
                    replace(gs.service, cluster=cluster) for gs in self.sc.topology.services
                ) + tuple(ms.services),
                cidr_groups={g.name: g.cidrs for g in ms.cidr_groups},
                cidr_group_labels={g.name: dict(g.labels) for g in ms.cidr_groups},
            )
            self.lab.apply(cluster, tuple(ms.cilium_policies), tuple(ms.network_policies), catalog)
            self.lab.mesh.objects[cluster] = self._mesh_objects(tuple(ms.istio))

    def apply(self, action: Apply) -> None:
        from netstrata.lab.cases import manifest_ref

        for m in action.manifests:
            self.applied[manifest_ref(m)] = m
        self._apply_all()

    def delete(self, action: Delete) -> None:
        for ns, name in action.refs:
            for ref in [r for r, m in self.applied.items()
                        if (m.get("metadata") or {}).get("name") == name
                        and (m.get("metadata") or {}).get("namespace") == ns]:
                del self.applied[ref]
        self._apply_all()

    def relabel(self, action: Relabel) -> None:
        topo = self.sc.topology
        if action.pod is not None:
            p = topo.workloads[action.pod]
            w = replace(p.workload, labels=tuple(sorted(action.labels.items())))
            topo.workloads[action.pod] = replace(p, workload=w)
        else:
            for key in list(topo.namespaces):
                if key[1] == action.namespace:
                    topo.namespaces[key] = dict(action.labels)
        self.lab.rebuild_identities()
        self.lab.reresolve()

    # ------------------------------------------------------------------ probes

    def _workload(self, ref: str) -> PlacedWorkload:
        topo = self.sc.topology
        if ref in topo.workloads:
            return topo.workloads[ref]
        for p in topo.workloads.values():
            if p.workload.name == ref:
                return p
        raise KeyError(f"probe names unknown workload {ref!r}")

    def _kube_dns(self, cluster: str) -> PlacedWorkload | None:
        for p in self.sc.topology.workloads.values():
            w = p.workload
            if w.cluster == cluster and w.namespace == "kube-system" and dict(w.labels).get("k8s-app") == "kube-dns":
                return p
        return None

    def _service_target(self, to: dict[str, Any], src: PlacedWorkload, port: int) -> tuple[str, int] | None:
        topo = self.sc.topology
        for gs in topo.services:
            svc = gs.service
            if svc.name != to["service"] or svc.namespace != to.get("namespace", "default"):
                continue
            target = port
            for sp in svc.ports:
                if sp.port == port and sp.target_port is not None:
                    target = sp.target_port if isinstance(sp.target_port, int) else port
            sel = dict(svc.selector or ())
            backends = [
                p for p in topo.pods()
                if p.workload.namespace == svc.namespace and p.workload.cluster in gs.backends_in
                and sel and all(dict(p.workload.labels).get(k) == v for k, v in sel.items())
            ]
            local = [b for b in backends if b.workload.cluster == src.workload.cluster]
            chosen = (local or backends)
            if chosen:
                return chosen[0].ip, target
            return None
        return None

    def _target(self, probe: Probe, src: PlacedWorkload, port: int) -> tuple[str | None, int, str | None]:
        """(destination IP, destination port after DNAT, name to resolve via kube-dns)."""
        to = probe.to
        topo = self.sc.topology
        if isinstance(to, str):
            return self._workload(to).ip, port, None
        if "service" in to:
            t = self._service_target(to, src, port)
            name = f"{to['service']}.{to.get('namespace', 'default')}.svc.cluster.local"
            return (t[0], t[1], name) if t else (None, port, name)
        if "fqdn" in to:
            name = str(to["fqdn"]).rstrip(".").lower()
            ips = topo.dns_records.get(name, ())
            return (ips[0] if ips else None), port, name
        if "ip" in to:
            return str(to["ip"]), port, None
        if "node" in to:
            node = str(to["node"])
            for (c, n), ip in topo.node_ips.items():
                if n == node and c == src.workload.cluster:
                    return ip, port, None
            return topo.node_ip(src.workload.cluster, node), port, None
        raise KeyError(f"unsupported probe target {to!r}")

    def _request(self, probe: Probe, port: int, host: str | None) -> Request:
        raw = probe.raw
        proto = probe.protocol
        if proto == "icmp":
            icmp = raw.get("icmp") or {}
            family = icmp.get("family", "IPv4")
            t = int(icmp.get("type", 8 if family == "IPv4" else 128))
            return Request(int(Proto.ICMP if family == "IPv4" else Proto.ICMPV6), t << 8)
        if proto == "dns":
            dns = raw.get("dns") or {}
            transport = str(dns.get("transport", "UDP")).upper()
            qname = str(dns.get("query", "")).rstrip(".").lower() + "."
            return Request(int(Proto[transport]), port, "dns", qname)
        if proto in ("http", "grpc"):
            from netstrata.policy.l7 import HTTPRequest

            http = raw.get("http") or {}
            headers = dict(http.get("headers") or {})
            if proto == "grpc":
                g = raw.get("grpc") or {}
                path = g.get("path") or f"/{g.get('service')}/{g.get('method')}"
                method = "POST"
                headers.setdefault("content-type", "application/grpc")
            else:
                path = http.get("path", "/")
                method = http.get("method", "GET")
            h = http.get("host") or host
            hdrs = [(str(k), str(v)) for k, v in headers.items()]
            if http.get("jwt"):
                path = self._with_token(http["jwt"], path, hdrs)
            return Request(int(Proto.TCP), port, "http", HTTPRequest(method, path, h, tuple(hdrs)))
        if proto == "kafka":
            from netstrata.policy.l7 import KafkaRequest

            k = raw.get("kafka") or {}
            action = str(k.get("action", "produce")).lower()
            topics = (k["topic"],) if k.get("topic") else ()
            return Request(int(Proto.TCP), port, "kafka",
                           KafkaRequest(KAFKA_ACTIONS.get(action, 0), 0, k.get("client_id"), topics))
        if proto in ("udp", "sctp"):
            return Request(int(Proto[proto.upper()]), port)
        return Request(int(Proto.TCP), port)

    def jwt_fixtures(self) -> tuple[dict[str, Any], dict[str, Any]] | str:
        """(signing fixtures, token timing) for this scenario's `jwt` block, or why there are none.
        Inline `keys` (a mapping with private keys) are used as they are; otherwise the keys of
        the istio-authz case file next to the scenario file."""
        spec = self.sc.jwt or {}
        if isinstance(spec.get("keys"), dict):
            return {"issuer": spec.get("issuer"), "keys": spec["keys"]}, {}
        found = _istio_authz_fixtures((Path(self.sc.source).parent / ISTIO_AUTHZ_CASES).resolve())
        if isinstance(found, str):
            return found
        fixtures, timing = found
        if spec.get("issuer"):
            fixtures = {**fixtures, "issuer": spec["issuer"]}
        return fixtures, timing

    def cannot_judge(self, probe: Probe, out: ProbeOutcome) -> str | None:
        """Why the outcome of `probe` is not an honest judgement, or None. A probe whose token
        could not be minted (it was sent without one) is still judged when the kernel or
        Cilium's proxy decided before the mesh would have looked at the token."""
        if (probe.raw.get("http") or {}).get("jwt") and out.mesh is not None and out.mesh.decision:
            found = self.jwt_fixtures()
            if isinstance(found, str):
                return found
        return None

    def _with_token(self, spec: dict[str, Any], path: str, headers: list[tuple[str, str]]) -> str:
        """Mint the probe's token (valid ones signed with the fixture key, invalid ones per
        `invalid_reason`, exactly as `mesh check` does) and place it; returns the path, which
        changes when the token travels as a query parameter."""
        from netstrata.mesh.casefile import DEFAULT_NOW, mint_token, place_token

        found = self.jwt_fixtures()
        if isinstance(found, str):
            return path  # sent without a token; `cannot_judge` reports it if the mesh decides
        fixtures, timing = found
        token = mint_token(spec, fixtures, timing, DEFAULT_NOW)
        req: dict[str, Any] = {"path": path}
        place_token(req, headers, token, spec.get("location") or (self.sc.jwt or {}).get("location"))
        return str(req["path"])

    def _dns_lookup(self, src: PlacedWorkload, name: str) -> ProbeOutcome | None:
        """Resolve `name` through kube-dns as the pod would; learn FQDN IPs. None = no DNS pod."""
        dns = self._kube_dns(src.workload.cluster)
        if dns is None:
            return None
        qname = name.rstrip(".") + "."
        out = self.lab.walk(src, dns.ip, Request(int(Proto.UDP), 53, "dns", qname))
        if out.got in ("allowed", "audited") and out.proxied:
            self.lab.learn_fqdn(src.workload.cluster, qname, self.sc.topology.dns_records.get(name.rstrip("."), ()))
        return out

    def run_probe(self, probe: Probe) -> ProbeOutcome:
        """Judge one probe. Probes are independent: each starts with the DNS cache empty, as on
        a fresh agent, so toFQDNs admits only what this probe's own lookup taught it."""
        self.lab.forget_fqdns()
        out = self._run_probe(probe)
        return self._app_answer(probe, out)

    def _app_answer(self, probe: Probe, out: ProbeOutcome) -> ProbeOutcome:
        from netstrata.lab.apps import http_status
        from netstrata.policy.l7 import HTTPRequest

        req = out.delivered
        if out.got == "allowed" and isinstance(req, HTTPRequest) and probe.protocol == "http":
            if http_status(req.method, req.path, req.headers) >= 400:
                out.got = "app-error"
        return out

    def _run_probe(self, probe: Probe) -> ProbeOutcome:
        src = self._workload(probe.src)
        port = int(probe.port) if probe.port is not None else 0
        dst_ip, dport, name = self._target(probe, src, port)
        if probe.raw.get("resolve") == "kube-dns" and name and "fqdn" in (probe.to if isinstance(probe.to, dict) else {}):
            dns = self._dns_lookup(src, name)
            if dns is not None and dns.got not in ("allowed", "audited"):
                dns.steps.insert(0, dns.steps[0] if dns.steps else None)  # type: ignore[arg-type]
                dns.steps = [s for s in dns.steps if s is not None]
                return dns
        if dst_ip is None:
            return ProbeOutcome("app-error", None, None, detail_reason("name does not resolve"))
        host = name if name and "fqdn" in (probe.to if isinstance(probe.to, dict) else {}) else None
        req = self._request(probe, dport, host)
        if probe.protocol == "https":
            req = Request(int(Proto.TCP), dport)
        return self.lab.walk(src, dst_ip, req)


def detail_reason(text: str) -> str:
    return text


def _probe_record(probe: Probe, out: ProbeOutcome | None, status: str, reason: str | None) -> dict[str, Any]:
    to = probe.to if isinstance(probe.to, str) else probe.to
    return {
        "step": probe.step,
        "id": probe.id,
        "from": probe.src,
        "to": to,
        "port": probe.port,
        "protocol": probe.protocol.upper() if probe.protocol in ("tcp", "udp", "sctp") else probe.protocol,
        "l7": _l7_of(probe),
        "expect": probe.expect,
        "got": out.got if out else None,
        "layer": out.layer if out else None,
        "rule": out.rule if out else None,
        "direction": out.direction if out else None,
        "drop_reason": out.drop_reason if out else None,
        "status": status,
        "reason": reason,
    }


def _l7_of(probe: Probe) -> dict[str, Any] | None:
    for key in ("http", "grpc", "kafka", "dns", "icmp"):
        if key in probe.raw:
            return {key: probe.raw[key]}
    return None


def _judge(probe: Probe, out: ProbeOutcome) -> tuple[str, str | None]:
    if probe.expect is None:
        return "passed", None
    if out.got != probe.expect:
        return "failed", f"expected {probe.expect}, got {out.got}"
    if probe.expect == "dropped" and probe.expect_direction and out.direction != probe.expect_direction:
        return "failed", f"dropped at {out.direction}, expected at {probe.expect_direction}"
    if probe.expect == "dropped" and probe.expect_reason and out.drop_reason != probe.expect_reason:
        return "failed", f"drop reason {out.drop_reason}, expected {probe.expect_reason}"
    why = _mesh_mismatch(probe, out)
    return ("failed", why) if why else ("passed", None)


def _mesh_mismatch(probe: Probe, out: ProbeOutcome) -> str | None:
    """The mesh facts a scenario states: `expect.mesh.decided_by` / `peer_principal`, and the
    status of a `denied-mesh` answer (`http.status`, `grpc.code`)."""
    exp = probe.raw.get("expect") or {}
    want = exp.get("mesh") or {}
    trace: ObservedMesh | MeshTrace | None = out.observed_mesh or out.mesh
    decision = trace.decision if trace else None
    if "decided_by" in want and (decision is None or decision.decided_by != want["decided_by"]):
        return f"mesh decided by {decision.decided_by if decision else None}, expected {want['decided_by']}"
    if "peer_principal" in want and (trace is None or trace.peer_principal != want["peer_principal"]):
        return f"mesh peer principal {trace.peer_principal if trace else None}, expected {want['peer_principal']}"
    if probe.expect != "denied-mesh" or decision is None:
        return None
    http_status = (exp.get("http") or {}).get("status")
    if http_status is not None and decision.status != int(http_status):
        return f"mesh answered HTTP {decision.status}, expected {http_status}"
    grpc_code = (exp.get("grpc") or {}).get("code")
    if grpc_code is not None and decision.grpc_status != int(grpc_code):
        return f"mesh answered grpc-status {decision.grpc_status}, expected {grpc_code}"
    return None


def _rejection(sc: Scenario, exc: Exception) -> dict[str, Any]:
    if sc.expect_apply and sc.expect_apply.get("result") == "rejected":
        want = str(sc.expect_apply.get("error", ""))
        ok = want.lower() in str(exc).lower()
        return {"id": sc.id, "status": "passed" if ok else "failed",
                "reason": None if ok else f"rejected with a different error: {exc}", "probes": []}
    return {"id": sc.id, "status": "failed", "reason": f"policies did not apply: {exc}", "probes": []}


def run_scenario(sc: Scenario) -> dict[str, Any]:
    """Run every action of a scenario in order; judge each probe."""
    runner = ScenarioRunner(sc)
    probes: list[dict[str, Any]] = []
    for action in sc.actions:
        try:
            if isinstance(action, Apply):
                runner.apply(action)
            elif isinstance(action, Delete):
                runner.delete(action)
            elif isinstance(action, Relabel):
                runner.relabel(action)
        except (ManifestError, PolicyConflictError) as exc:
            return _rejection(sc, exc)
        if not isinstance(action, Probe):
            continue
        out = runner.run_probe(action)
        why_not = runner.cannot_judge(action, out)
        if why_not is not None:
            probes.append(_probe_record(action, None, "skipped", why_not))
            continue
        status, reason = _judge(action, out)
        probes.append(_probe_record(action, out, status, reason))
    if sc.expect_apply and sc.expect_apply.get("result") == "rejected":
        return {"id": sc.id, "status": "failed", "reason": "expected the policies to be rejected",
                "probes": probes}
    return _case_record(sc, probes)


def _case_record(sc: Scenario, probes: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = {p["status"] for p in probes}
    if "failed" in statuses:
        n = sum(1 for p in probes if p["status"] == "failed")
        status, reason = "failed", f"{n} probe(s) disagree with the expectation"
    elif "passed" in statuses or not probes:
        status, reason = "passed", None
    else:
        status, reason = "skipped", probes[0]["reason"]
    return {"id": sc.id, "status": status, "reason": reason, "probes": probes}


def check_report(suite: str, scenarios: list[Scenario], mode: str = "reference") -> dict[str, Any]:
    cases = [run_scenario(sc) for sc in scenarios]
    summary = {"passed": 0, "failed": 0, "skipped": 0,
               "probes": sum(len(c["probes"]) for c in cases)}
    for c in cases:
        summary[c["status"]] += 1
    return {"suite": suite, "mode": mode, "cases": cases, "summary": summary}


__all__ = ["ScenarioRunner", "check_report", "run_scenario", "api"]
