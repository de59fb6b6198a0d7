"""Acceptance case files (shared/acceptance/FORMAT.md) as runnable scenarios.

Two suite shapes are read here: `k8s-netpol` (the upstream 9-pod truth tables with steps) and
`scenarios` (named workloads, manifests and probes). Each becomes a `Scenario`: a topology, the
manifests per cluster, and a list of actions (apply, relabel, probe) to run in order. The same
Scenario drives the reference run and the kernel lab, so both see identical inputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netstrata.api import types as api
from netstrata.api._yaml import Located
from netstrata.errors import ManifestError, NetstrataError
from netstrata.lab.topology import ClusterSpec, Topology, mask_ip
from netstrata.policy.resolve import PolicyConfig

SKIP_VERDICTS: dict[str, str] = {}
"""Verdicts the kernel lab cannot produce yet (with the reason), skipped by `lab check`. None
now: `denied-mesh` comes from the lab's own mesh listeners (docs/mesh.md)."""
SIDECAR_ANNOTATION = "sidecar.istio.io/inject"
"""A scenario workload's `sidecar: istio` is Istio's per-pod injection opt-in (the legacy
annotation, so the pod's labels and hence its Cilium identity stay as written)."""


@dataclass
class Probe:
    id: str
    src: str
    """Workload ref."""
    to: Any
    protocol: str
    port: int | None
    expect: str | None
    raw: dict[str, Any]
    step: int = 0
    expect_direction: str | None = None
    expect_reason: str | None = None


@dataclass
class Apply:
    manifests: list[dict[str, Any]]
    replace: bool = False
    """k8s steps: create or replace same namespace/name (policies accumulate)."""


@dataclass
class Delete:
    refs: list[tuple[str | None, str]]


@dataclass
class Relabel:
    pod: str | None
    namespace: str | None
    labels: dict[str, str]


@dataclass
class Scenario:
    id: str
    suite: str
    topology: Topology
    actions: list[Any] = field(default_factory=list)
    placement: dict[str, list[str]] = field(default_factory=dict)
    expect_apply: dict[str, Any] | None = None
    source: str = ""
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    mesh: dict[str, Any] | None = None
    """The scenario's `mesh` block (meshConfig trust domain, aliases, PeerAuthentication)."""
    jwt: dict[str, Any] | None = None
    """The scenario's `jwt` block (issuer, where the keys are, token location)."""


def _secrets(resources: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Secrets the agent can read: a Secret's single data value (or its `value` key)."""
    import base64

    out = {}
    for r in resources:
        if r.get("kind") != "Secret":
            continue
        md = r.get("metadata") or {}
        data = {k: base64.b64decode(v).decode() for k, v in (r.get("data") or {}).items()}
        data.update(r.get("stringData") or {})
        value = data.get("value") if "value" in data else (next(iter(data.values())) if len(data) == 1 else None)
        if value is not None:
            out[(md.get("namespace", "default"), md["name"])] = value
    return out


class CaseFileError(NetstrataError):
    pass


def load_case_file(path: str | Path) -> tuple[str, list[Scenario]]:
    """Read a case file; the suite is recognised from its shape."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CaseFileError(f"{p}: cannot read case file: {exc}") from exc
    if isinstance(data, dict) and str(data.get("schema", "")).startswith("netstrata/istio-authz"):
        raise CaseFileError(f"{p}: an istio-authz case file: run it with `netstrata mesh check`")
    if not isinstance(data, list):
        raise CaseFileError(f"{p}: expected a list of cases")
    if data and "upstream_pods" in data[0] or (data and "servers" in data[0]):
        return "k8s-netpol", [_k8s_case(c, str(p)) for c in data]
    return "scenarios", [_scenario(c, str(p)) for c in data]


# ---------------------------------------------------------------------- k8s-netpol


def _k8s_topology(servers: dict[str, Any]) -> Topology:
    topo = Topology()
    topo.clusters["default"] = ClusterSpec("default", 1, ("node-1",), PolicyConfig(cluster="default"))
    ports = []
    for port in servers.get("ports", [80]):
        for proto in servers.get("protocols", ["TCP"]):
            ports.append(api.ContainerPort(int(port), proto, f"serve-{port}-{proto.lower()}"))
    for ns in ("x", "y", "z"):
        topo.namespaces[("default", ns)] = {"kubernetes.io/metadata.name": ns}
        for pod in ("a", "b", "c"):
            w = api.Workload(name=pod, namespace=ns, cluster="default", node="node-1",
                             labels=(("pod", pod),), ports=tuple(ports))
            topo.add_workload(f"{ns}/{pod}", w)
    return topo


_IPBLOCK = re.compile(r"\{(\w+/\w+)\}/(\d+)")


def _substitute_ipblocks(obj: Any, topo: Topology) -> Any:
    if isinstance(obj, dict):
        return {k: _substitute_ipblocks(v, topo) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute_ipblocks(v, topo) for v in obj]
    if isinstance(obj, str):
        m = _IPBLOCK.fullmatch(obj)
        if m:
            return mask_ip(topo.workloads[m.group(1)].ip, int(m.group(2)))
    return obj


def _k8s_probes(sets: list[dict[str, Any]], step: int, topo: Topology) -> list[Probe]:
    pods = [f"{ns}/{p}" for ns in ("x", "y", "z") for p in ("a", "b", "c")]
    out = []
    for ps in sets:
        denied = {tuple(s.split(" -> ")) for s in ps.get("denied", [])}
        for src in pods:
            for dst in pods:
                expect = None if src == dst else ("dropped" if (src, dst) in denied else "allowed")
                out.append(Probe(f"{src} -> {dst}", src, dst, ps.get("protocol", "TCP").lower(),
                                 int(ps["port"]), expect, {}, step))
    return out


def _k8s_case(c: dict[str, Any], source: str) -> Scenario:
    topo = _k8s_topology(c.get("servers", {}))
    sc = Scenario(str(c["id"]), "k8s-netpol", topo, source=source)
    sc.actions.append(Apply(_substitute_ipblocks(c.get("policies", []), topo), replace=True))
    sc.actions.extend(_k8s_probes(c.get("probes", []), 0, topo))
    step = 0
    for st in c.get("steps", []) or []:
        if "apply_policies" in st:
            sc.actions.append(Apply(_substitute_ipblocks(st["apply_policies"], topo), replace=True))
        elif "delete_policies" in st:
            sc.actions.append(Delete([(d.get("namespace"), d["name"]) for d in st["delete_policies"]]))
        elif "update_pod_labels" in st:
            u = st["update_pod_labels"]
            sc.actions.append(Relabel(u["pod"], None, dict(u["result"])))
        elif "update_namespace_labels" in st:
            u = st["update_namespace_labels"]
            sc.actions.append(Relabel(None, u["namespace"], dict(u["result"])))
        elif "expect" in st:
            step += 1
            sc.actions.extend(_k8s_probes(st["expect"], step, topo))
    return sc


# ---------------------------------------------------------------------- scenarios


def _audit_setting(cfg: dict[str, Any] | None) -> bool:
    if not cfg or "policy_audit_mode" not in cfg:
        return False
    v = cfg["policy_audit_mode"]
    if isinstance(v, bool):
        return v
    return str(v).lower().startswith(("enabled", "true", "yes"))


def _workload(w: dict[str, Any], default_cluster: str) -> tuple[str, api.Workload]:
    ports = []
    for p in w.get("ports", []) or []:
        if isinstance(p, int):
            ports.append(api.ContainerPort(p, "TCP"))
        else:
            ports.append(api.ContainerPort(int(p["port"]), str(p.get("protocol", "TCP")).upper(),
                                           p.get("name"), p.get("app_protocol")))
    kind = w.get("kind", "pod")
    wl = api.Workload(
        name=w["name"],
        namespace=w.get("namespace", "default") or "default",
        cluster=w.get("cluster", default_cluster) or default_cluster,
        node=w.get("node"),
        labels=tuple((str(k), str(v)) for k, v in (w.get("labels") or {}).items()),
        service_account=w.get("service_account", "default") or "default",
        ports=tuple(ports),
        kind=kind,
        ips=tuple(w.get("ips", []) or []),
        fqdn=w.get("fqdn"),
        annotations=_annotations(w),
    )
    return str(w.get("id", w["name"])), wl


def _annotations(w: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    ann = {str(k): str(v) for k, v in (w.get("annotations") or {}).items()}
    if str(w.get("sidecar", "")).lower() == "istio":
        ann.setdefault(SIDECAR_ANNOTATION, "true")
    return tuple(ann.items())


def _scenario(c: dict[str, Any], source: str) -> Scenario:
    topo = Topology()
    audit = _audit_setting(c.get("agent_config"))
    clusters = c.get("clusters") or []
    names = [cl["name"] for cl in clusters]
    for w in c.get("workloads", []):
        cl = w.get("cluster")
        if cl and cl not in names:
            names.append(cl)
    if not names:
        names = ["default"]
    ids = {cl["name"]: int(cl["id"]) for cl in clusters}
    nodes = [n["name"] for n in c.get("nodes", []) or []]
    for i, name in enumerate(names, start=1):
        cid = ids.get(name, i)
        cfg = PolicyConfig(cluster=name, audit_mode=audit)
        topo.clusters[name] = ClusterSpec(name, cid, tuple(nodes) or ("node-1",), cfg)
    for w in c.get("workloads", []):
        ref, wl = _workload(w, names[0])
        topo.add_workload(ref, wl)
    for s in c.get("services", []) or []:
        svc = api.Service(
            name=s["name"], namespace=s.get("namespace", "default"),
            selector=tuple((k, str(v)) for k, v in (s.get("selector") or {}).items()) if s.get("selector") is not None else None,
            ports=tuple(api.ServicePort(int(p["port"]), p.get("targetPort", p.get("target_port")),
                                        str(p.get("protocol", "TCP")).upper(), p.get("name"))
                        for p in s.get("ports", [])),
            labels=tuple((k, str(v)) for k, v in (s.get("labels") or {}).items()),
            annotations=tuple((k, str(v)) for k, v in (s.get("annotations") or {}).items()),
        )
        cls = tuple(s.get("clusters") or [names[0]])
        topo.add_service(svc, cls, tuple(s.get("backends_in") or cls))
    topo.dns_records = {k.rstrip(".").lower(): tuple(v) for k, v in (c.get("dns_records") or {}).items()}
    for w in topo.workloads.values():
        if w.workload.kind == "external" and w.workload.fqdn:
            topo.dns_records.setdefault(w.workload.fqdn.rstrip(".").lower(), w.ips)
    sc = Scenario(str(c["name"]), "scenarios", topo, source=source)
    sc.expect_apply = c.get("expect_apply")
    sc.secrets = _secrets(c.get("resources") or [])
    sc.placement = _placement(c.get("placement") or {})
    sc.mesh = c.get("mesh")
    sc.jwt = c.get("jwt")
    sc.actions.append(Apply(list(c.get("policies") or [])))
    for p in c.get("probes", []) or []:
        exp = p.get("expect") or {}
        sc.actions.append(Probe(str(p["id"]), str(p["from"]), p["to"], str(p.get("protocol", "tcp")),
                                p.get("port"), exp.get("verdict"), p, 0, exp.get("direction"),
                                exp.get("drop_reason")))
    return sc


def _placement(raw: dict[str, Any]) -> dict[str, list[str]]:
    return {str(k): list(v) for k, v in raw.items()}


def manifest_ref(m: dict[str, Any]) -> str:
    md = m.get("metadata") or {}
    ns = md.get("namespace")
    return f"{m.get('kind')}/{ns}/{md.get('name')}" if ns else f"{m.get('kind')}/{md.get('name')}"


def clusters_for(sc: Scenario, manifest: dict[str, Any]) -> list[str]:
    ref = manifest_ref(manifest)
    if ref in sc.placement:
        return sc.placement[ref]
    if "all policies" in sc.placement:
        return sc.placement["all policies"]
    return list(sc.topology.clusters)


def as_located(manifests: list[dict[str, Any]], source: str) -> list[Located]:
    return [Located(m, source) for m in manifests]


def iter_probes(sc: Scenario) -> Iterator[Probe]:
    return (a for a in sc.actions if isinstance(a, Probe))


__all__ = [
    "SKIP_VERDICTS",
    "Apply",
    "CaseFileError",
    "Delete",
    "ManifestError",
    "Probe",
    "Relabel",
    "Scenario",
    "as_located",
    "clusters_for",
    "iter_probes",
    "load_case_file",
]
