"""Lab-level differential test: real traffic through the kernel lab against the reference run.

Hypothesis draws the labels of four pods (two namespaces, two nodes, so probes cross the
underlay as well as stay on one node), a small set of policies (CiliumNetworkPolicy with
endpoint, entity and CIDR peers, allow and deny rules on both sides, ports, port ranges and
protocols; Kubernetes NetworkPolicy with pod, namespace and ipBlock peers, ports and ranges)
and a few probes (TCP, UDP and ICMP between pods, and to and from a host outside the cluster).
Every example is written as a case file and run twice from the same input: through
`lab check`'s kernel path (namespaces, one agent per node syncing its kernel maps, servers,
real clients) and through the reference datapath (`policy check`). Each probe must get the
same verdict, and for a drop the same side and reason.

One lab is kept up for every example (the topology, and so the namespaces, never change;
labels, identities and policies do), so an example costs a map sync and at most one client
timeout. The lab is removed when the module ends. `HYPOTHESIS_PROFILE=deep` runs many more
examples than CI's bounded few.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import verdict  # noqa: E402

from netstrata.lab.cases import load_case_file  # noqa: E402
from netstrata.lab.kernel_check import KernelCheck, _Lane  # noqa: E402
from netstrata.lab.reference_check import check_report  # noqa: E402

EXAMPLES = {"deep": 300}.get(os.environ.get("HYPOTHESIS_PROFILE", ""), 25)

PODS = {
    "p1": ("alpha", "node-1"),
    "p2": ("alpha", "node-2"),
    "p3": ("beta", "node-1"),
    "p4": ("beta", "node-2"),
}
EXT, EXT_IP = "ext", "203.0.113.40"
TCP_PORTS, UDP_PORTS = (80, 8080, 9000), (53, 9000)
LABELS = (("app", "web"), ("app", "db"), ("tier", "front"), ("tier", "back"))
NS_KEY = "k8s:io.kubernetes.pod.namespace"
CIDRS = ("203.0.113.0/24", f"{EXT_IP}/32", "10.0.0.0/8", "10.1.1.0/24", "10.1.2.0/24", "0.0.0.0/0")
RANGES = ((80, 8080), (8000, 9000), (53, 80), (9000, 9000))


# ------------------------------------------------------------------------------ strategies

label_sets = st.lists(st.sampled_from(LABELS), max_size=2).map(dict)
"""A label set over a small vocabulary (so selectors and pods often meet)."""


@st.composite
def cnp_ports(draw: st.DrawFn) -> list[dict[str, Any]]:
    ports = []
    for _ in range(draw(st.integers(1, 2))):
        proto = draw(st.sampled_from(["TCP", "UDP", "ANY"]))
        if draw(st.booleans()):
            lo, hi = draw(st.sampled_from(RANGES))
            ports.append({"port": str(lo), "endPort": hi, "protocol": proto})
        else:
            ports.append(
                {"port": str(draw(st.sampled_from(TCP_PORTS + UDP_PORTS))), "protocol": proto}
            )
    return [{"ports": ports}]


@st.composite
def cnp_rule(draw: st.DrawFn, side: str) -> dict[str, Any]:
    peer_to = "to" if side == "egress" else "from"
    rule: dict[str, Any] = {}
    kind = draw(st.sampled_from(["endpoints", "endpoints", "entities", "cidr", "cidrset", "none"]))
    if kind == "endpoints":
        sel = dict(draw(label_sets))
        if draw(st.booleans()):
            sel[NS_KEY] = draw(st.sampled_from(["alpha", "beta"]))
        rule[f"{peer_to}Endpoints"] = [{"matchLabels": sel}]
    elif kind == "entities":
        rule[f"{peer_to}Entities"] = [draw(st.sampled_from(["world", "cluster", "all"]))]
    elif kind == "cidr":
        rule[f"{peer_to}CIDR"] = [draw(st.sampled_from(CIDRS))]
    elif kind == "cidrset":
        cidr = draw(st.sampled_from(["203.0.113.0/24", "10.0.0.0/8", "0.0.0.0/0"]))
        holes = [
            h
            for h in (f"{EXT_IP}/32", "10.1.1.0/24", "10.1.2.10/32")
            if ipaddress.ip_network(h).subnet_of(ipaddress.ip_network(cidr))
        ]
        rule[f"{peer_to}CIDRSet"] = [
            {"cidr": cidr, "except": draw(st.lists(st.sampled_from(holes), max_size=1))}
        ]
    if kind == "none" or draw(st.booleans()):
        rule["toPorts"] = draw(cnp_ports())
    return rule


@st.composite
def cnp(draw: st.DrawFn, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpointSelector": {"matchLabels": dict(draw(label_sets))}}
    sections = draw(
        st.lists(
            st.sampled_from(["ingress", "egress", "ingressDeny", "egressDeny"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    for section in sections:
        side = "egress" if section.startswith("egress") else "ingress"
        spec[section] = draw(st.lists(cnp_rule(side), min_size=1, max_size=2))
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": name, "namespace": draw(st.sampled_from(["alpha", "beta"]))},
        "spec": spec,
    }


@st.composite
def k8s_peer(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["pod", "namespace", "both", "ipblock"]))
    peer: dict[str, Any] = {}
    if kind in ("pod", "both"):
        peer["podSelector"] = {"matchLabels": dict(draw(label_sets))}
    if kind in ("namespace", "both"):
        ns = draw(st.sampled_from(["alpha", "beta", None]))
        peer["namespaceSelector"] = (
            {"matchLabels": {"kubernetes.io/metadata.name": ns}} if ns else {}
        )
    if kind == "ipblock":
        cidr = draw(st.sampled_from(CIDRS))
        block: dict[str, Any] = {"cidr": cidr}
        if cidr == "10.0.0.0/8" and draw(st.booleans()):
            block["except"] = [draw(st.sampled_from(["10.1.1.0/24", "10.1.2.11/32"]))]
        peer["ipBlock"] = block
    return peer


@st.composite
def k8s_ports(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        port: dict[str, Any] = {"protocol": draw(st.sampled_from(["TCP", "UDP"]))}
        shape = draw(st.sampled_from(["port", "port", "range", "none"]))
        if shape == "port":
            port["port"] = draw(st.sampled_from(TCP_PORTS + UDP_PORTS))
        elif shape == "range":
            port["port"], port["endPort"] = draw(st.sampled_from(RANGES))
        out.append(port)
    return out


@st.composite
def netpol(draw: st.DrawFn, name: str) -> dict[str, Any]:
    types = draw(
        st.lists(st.sampled_from(["Ingress", "Egress"]), min_size=1, max_size=2, unique=True)
    )
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": dict(draw(label_sets))},
        "policyTypes": types,
    }
    for t in types:
        side, peers = ("ingress", "from") if t == "Ingress" else ("egress", "to")
        rules = []
        for _ in range(draw(st.integers(0, 2))):
            rule: dict[str, Any] = {}
            if draw(st.booleans()):
                rule[peers] = draw(st.lists(k8s_peer(), min_size=1, max_size=2))
            if draw(st.booleans()):
                rule["ports"] = draw(k8s_ports())
            rules.append(rule)
        spec[side] = rules
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": draw(st.sampled_from(["alpha", "beta"]))},
        "spec": spec,
    }


@st.composite
def probes(draw: st.DrawFn) -> list[dict[str, Any]]:
    ends = [*PODS, EXT]
    out = []
    for i in range(draw(st.integers(3, 10))):
        src = draw(st.sampled_from(ends))
        dst = draw(st.sampled_from([e for e in ends if e != src]))
        proto = draw(st.sampled_from(["tcp", "tcp", "udp", "icmp"]))
        probe: dict[str, Any] = {
            "id": f"{i}: {src} -> {dst} {proto}",
            "from": src,
            "to": dst,
            "protocol": proto,
        }
        if proto == "icmp":
            probe["icmp"] = {"family": "IPv4", "type": 8}
        else:
            probe["port"] = draw(st.sampled_from(TCP_PORTS if proto == "tcp" else UDP_PORTS))
        out.append(probe)
    return out


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    ports = [{"port": p, "protocol": "TCP"} for p in TCP_PORTS]
    ports += [{"port": p, "protocol": "UDP"} for p in UDP_PORTS]
    workloads: list[dict[str, Any]] = [
        {
            "name": pod,
            "namespace": ns,
            "cluster": "default",
            "node": node,
            "labels": dict(draw(label_sets)),
            "ports": ports,
        }
        for pod, (ns, node) in PODS.items()
    ]
    workloads.append({"name": EXT, "kind": "external", "ips": [EXT_IP], "ports": ports})
    policies = []
    for i in range(draw(st.integers(1, 3))):
        policies.append(draw(cnp(f"cnp-{i}") if draw(st.booleans()) else netpol(f"np-{i}")))
    return {
        "name": "hypothesis",
        "nodes": [{"name": "node-1"}, {"name": "node-2"}],
        "workloads": workloads,
        "policies": policies,
        "probes": draw(probes()),
    }


# ------------------------------------------------------------------------------ the lab


class _KeptLab:
    """One kernel lab, one event loop (its servers live there), reused by every example."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.loop = asyncio.Runner()
        self.check = KernelCheck(f"hypdiff-{secrets.token_hex(3)}", lanes=1)
        self.lane = _Lane(self.check.lab_name)

    def run(self, case: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(reference case record, kernel case record) for one case, from one file."""
        path = self.workdir / "case.yaml"
        path.write_text(yaml.safe_dump([case], sort_keys=False), encoding="utf-8")
        suite, (reference_sc,) = load_case_file(path)
        reference = check_report(suite, [reference_sc])["cases"][0]
        _, (kernel_sc,) = load_case_file(path)
        kernel = self.loop.run(self.check.run_case(kernel_sc, self.lane))
        return reference, kernel

    def close(self) -> None:
        try:
            self.loop.run(self.lane.close())
        finally:
            self.loop.close()


@pytest.fixture(scope="module")
def lab(bpf_cache: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_KeptLab]:
    kept = _KeptLab(tmp_path_factory.mktemp("labdiff"))
    try:
        yield kept
    finally:
        kept.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_kernel_lab_and_reference_agree_on_every_probe(lab: _KeptLab, case: dict[str, Any]) -> None:
    reference, kernel = lab.run(case)
    assert reference["status"] == kernel["status"] == "passed", (
        reference["reason"],
        kernel["reason"],
    )
    assert len(reference["probes"]) == len(kernel["probes"]) == len(case["probes"])
    for rp, kp in zip(reference["probes"], kernel["probes"], strict=True):
        assert kp["status"] != "skipped", (kp["id"], kp["reason"])
        assert verdict(kp) == verdict(rp), (kp["id"], rp, kp, yaml.safe_dump(case["policies"]))
        event(f"{kp['protocol']} {kp['got']}")
