"""The roll-out loop in the reference datapath, on seed-e's workloads and traffic:
default-deny (cluster-wide) in audit mode + an L7 visibility rule -> seed the legitimate probes
-> flows -> `suggest` -> apply the suggestion without audit -> every seed probe gets the
verdict seed-e's hand-written policy gives it (legitimate pass, others dropped/denied)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from netstrata.api import load_manifests
from netstrata.lab.from_manifests import lab_from_manifests
from netstrata.lab.simulate import ReferenceLab, Request
from netstrata.observe.flow import Verdict, from_json_dict, to_json_dict
from netstrata.policy.l7 import HTTPRequest
from netstrata.policy.resolve import PolicyConfig
from netstrata.policy.types import Proto
from netstrata.rollout import replay, suggest_policies
from netstrata.rollout.reference_flows import flows_of_walk

SEEDS = Path(__file__).resolve().parents[3] / "src" / "netstrata" / "lab" / "demo" / "seeds.yaml"

DEFAULT_DENY = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumClusterwideNetworkPolicy",
    "metadata": {"name": "default-deny"},
    "spec": {"endpointSelector": {}, "ingress": [{}], "egress": [{}]},
}
VISIBILITY = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "backend-api-visibility", "namespace": "api"},
    "spec": {
        "endpointSelector": {"matchLabels": {"app": "backend-api"}},
        "ingress": [
            {
                "fromEntities": ["cluster"],
                "toPorts": [
                    {"ports": [{"port": "5000", "protocol": "TCP"}], "rules": {"http": [{}]}}
                ],
            }
        ],
    },
}


def seed_e() -> dict[str, Any]:
    seeds = yaml.safe_load(SEEDS.read_text(encoding="utf-8"))
    return next(s for s in seeds if s["name"] == "seed-e-backend-api-per-peer-l7")


def workload_docs(seed: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in sorted({w["namespace"] for w in seed["workloads"]})
    ]
    for w in seed["workloads"]:
        spec: dict[str, Any] = {"node": w["node"], "serviceAccount": w["service_account"]}
        if w["ports"]:
            spec["ports"] = [
                {"port": p["port"], "protocol": p["protocol"], "name": p["name"]}
                for p in w["ports"]
            ]
        docs.append(
            {
                "apiVersion": "netstrata.io/v1alpha1",
                "kind": "Workload",
                "metadata": {"name": w["name"], "namespace": w["namespace"], "labels": w["labels"]},
                "spec": spec,
            }
        )
    return docs


def write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(
        "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs), encoding="utf-8"
    )
    return path


def run_probe(lab: ReferenceLab, probe: dict[str, Any]) -> tuple[Any, Request, str, Any]:
    src = next(p for p in lab.topology.pods() if p.workload.name == probe["from"])
    dst = next(p for p in lab.topology.pods() if p.workload.name == probe["to"])
    http = probe["http"]
    req = Request(
        int(Proto.TCP), probe["port"], "http", HTTPRequest(http["method"], http["path"], None, ())
    )
    return src, req, dst.ip, lab.walk(src, dst.ip, req)


def test_audit_observe_suggest_enforce(tmp_path: Path) -> None:
    seed = seed_e()
    workloads = write(tmp_path / "workloads.yaml", workload_docs(seed))
    observe = write(tmp_path / "observe.yaml", [DEFAULT_DENY, VISIBILITY])
    legit = [p for p in seed["probes"] if p["expect"]["verdict"] == "allowed"]
    assert legit and len(legit) < len(seed["probes"])

    # 1. audit mode: the legitimate traffic flows, and is recorded as Hubble JSON lines
    audit_lab = lab_from_manifests([workloads, observe], PolicyConfig(audit_mode=True))
    lines: list[str] = []
    for i, probe in enumerate(legit):
        src, req, dst_ip, out = run_probe(audit_lab, probe)
        assert out.got in ("allowed", "audited"), probe["id"]
        for f in flows_of_walk(audit_lab, src, dst_ip, req, out, time_ns=10**18 + i * 1000):
            lines.append(yaml.safe_dump(to_json_dict(f)))
    flows = [from_json_dict(yaml.safe_load(line)) for line in lines]
    assert {f.verdict for f in flows} >= {Verdict.AUDIT, Verdict.FORWARDED}

    # 2. suggest: valid manifests, deterministic
    policies, stats = suggest_policies(flows)
    assert stats.used == len(flows) and policies == suggest_policies(reversed(flows))[0]
    suggested = write(tmp_path / "suggested.yaml", policies)
    parsed = load_manifests([suggested])
    assert sorted(p.name for p in parsed.cilium_policies) == [
        "backend-api-allow",
        "payments-allow",
        "prometheus-allow",
    ]

    # 3. replay the recording against the candidate: nothing legitimate would be dropped
    enforce_set = [workloads, write(tmp_path / "deny.yaml", [DEFAULT_DENY]), suggested]
    enforce_lab = lab_from_manifests(enforce_set)
    counts = replay(flows, enforce_lab).counts()
    assert counts["newly-dropped"] == 0 and counts["unmatched"] == 0
    assert counts["newly-allowed"] == len(legit)  # each was audited at the client's egress

    # 4. enforce: every seed probe gets the verdict of seed-e's hand-written policy
    for probe in seed["probes"]:
        _, _, _, out = run_probe(enforce_lab, probe)
        assert out.got == probe["expect"]["verdict"], (probe["id"], out.got, out.steps)


def test_per_workload_annotation_audits_only_that_endpoint(tmp_path: Path) -> None:
    seed = seed_e()
    docs = workload_docs(seed)
    for d in docs:
        if d["metadata"]["name"] == "backend-api":
            d["metadata"]["annotations"] = {"policy.netstrata.io/audit-mode": "true"}
    lab = lab_from_manifests(
        [write(tmp_path / "w.yaml", docs), write(tmp_path / "p.yaml", [DEFAULT_DENY])]
    )
    probe = next(p for p in seed["probes"] if p["id"] == "payments POST /orders")
    _, _, _, out = run_probe(lab, probe)
    # payments (not annotated) enforces its egress default-deny; backend-api would only audit
    assert out.got == "dropped" and out.direction == "egress"
    reverse = {**probe, "from": "backend-api", "to": "payments"}
    _, _, _, out = run_probe(lab, reverse)
    assert out.got == "dropped" and out.direction == "ingress"
    assert out.steps[0].audited  # backend-api's own egress denial was only audited


def test_l7_denials_are_audited_and_forwarded_in_audit_mode(tmp_path: Path) -> None:
    seed = seed_e()
    policy = write(tmp_path / "p.yaml", seed["policies"])
    workloads = write(tmp_path / "w.yaml", workload_docs(seed))
    probe = next(p for p in seed["probes"] if p["id"] == "payments GET /metrics")
    _, _, _, enforced = run_probe(lab_from_manifests([workloads, policy]), probe)
    assert enforced.got == "denied-l7"
    audit_lab = lab_from_manifests([workloads, policy], PolicyConfig(audit_mode=True))
    src, req, dst_ip, audited = run_probe(audit_lab, probe)
    assert audited.got == "audited" and audited.layer == "l7"
    (l7,) = [
        f
        for f in flows_of_walk(audit_lab, src, dst_ip, req, audited, time_ns=1)
        if f.l7 is not None
    ]
    assert l7.verdict == Verdict.AUDIT


@pytest.mark.parametrize("drop", [False, True])
def test_dropped_flows_are_left_out_unless_asked(tmp_path: Path, drop: bool) -> None:
    seed = seed_e()
    workloads = write(tmp_path / "w.yaml", workload_docs(seed))
    lab = lab_from_manifests([workloads, write(tmp_path / "p.yaml", [DEFAULT_DENY])])
    probe = next(p for p in seed["probes"] if p["id"] == "api-frontend POST /orders")
    src, req, dst_ip, out = run_probe(lab, probe)
    flows = flows_of_walk(lab, src, dst_ip, req, out, time_ns=1)
    assert [f.verdict for f in flows] == [Verdict.DROPPED]
    policies, stats = suggest_policies(flows, include_dropped=drop)
    assert (len(policies), stats.dropped_skipped) == ((1, 0) if drop else (0, 1))
