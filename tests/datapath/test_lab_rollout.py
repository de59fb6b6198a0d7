"""The roll-out workflow end to end on a kernel lab, with the real commands a user types.

Seed c of the shared scenarios (prometheus scraping `prometheus.io/scrape` pods; L3/L4 only):
its workloads become the lab's topology, its hand-written policy is thrown away, and the loop
of docs/rollout.md writes one from traffic instead:

1. `netstrata lab up TOPOLOGY --manifests POLICIES --policy-audit-mode` with a cluster-wide
   default-deny (CCNP, ingress and egress) in POLICIES;
2. the seed's legitimate probes (expect `allowed`) as real curl requests from the pods
   (`netstrata lab exec POD -- curl`): all answered, although the policy denies them;
3. `netstrata observe -o jsonpb --all > flows.jsonl`;
4. `netstrata policy suggest --flows flows.jsonl -o suggested/`, and `netstrata policy replay`
   of the recording against default-deny + suggestion: 0 newly dropped;
5. the suggestion copied into POLICIES, `netstrata lab config PolicyAuditMode=Disabled`;
6. every legitimate probe still answered with real traffic; every illegitimate probe of the
   seed (expect `dropped`) gets no answer and the kernel reports it DROPPED.

Every step is a subprocess of the `netstrata` command; the test only reads their output.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import acceptance_dir  # noqa: E402

SEED = "seed-c-prometheus-scrape-ccnp"
DEFAULT_DENY = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumClusterwideNetworkPolicy",
    "metadata": {"name": "default-deny"},
    "spec": {"endpointSelector": {}, "ingress": [{}], "egress": [{}]},
}


def netstrata(*args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "netstrata.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"netstrata {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def seed() -> dict[str, Any]:
    cases = yaml.safe_load((acceptance_dir() / "scenarios" / "cases.yaml").read_text())
    return next(c for c in cases if c["name"] == SEED)


def workload_docs(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed's workloads as the lab's topology manifests (Namespaces and Workloads)."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in sorted({w["namespace"] for w in case["workloads"]})
    ]
    for w in case["workloads"]:
        spec: dict[str, Any] = {"node": w["node"], "serviceAccount": w["service_account"]}
        if w["ports"]:
            spec["ports"] = [
                {"port": p["port"], "protocol": p["protocol"], "name": p["name"]}
                for p in w["ports"]
            ]
        meta = {"name": w["name"], "namespace": w["namespace"], "labels": w["labels"]}
        docs.append(
            {
                "apiVersion": "netstrata.io/v1alpha1",
                "kind": "Workload",
                "metadata": meta,
                "spec": spec,
            }
        )
    return docs


@pytest.fixture
def lab(tmp_path: Path, bpf_cache: None) -> Iterator[tuple[str, Path]]:
    """A lab of the seed's workloads, default-deny in audit mode; (lab name, work dir)."""
    case = seed()
    (tmp_path / "topology").mkdir()
    (tmp_path / "topology" / "workloads.yaml").write_text(
        yaml.safe_dump_all(workload_docs(case), sort_keys=False)
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default-deny.yaml").write_text(yaml.safe_dump(DEFAULT_DENY))
    name = f"ro{secrets.token_hex(3)}"
    try:
        netstrata(
            "lab",
            "up",
            str(tmp_path / "topology"),
            "--name",
            name,
            "--manifests",
            str(tmp_path / "policies"),
            "--policy-audit-mode",
            timeout=120,
        )
        yield name, tmp_path
    finally:
        subprocess.run(
            [sys.executable, "-m", "netstrata.cli.main", "lab", "down", "--name", name],
            capture_output=True,
            timeout=60,
        )


def curl(pods: dict[str, dict[str, Any]], probe: dict[str, Any]) -> str:
    """The HTTP status a real curl from the probe's source pod gets ('000': no answer).

    curl runs in the pod's namespace through `ip netns exec`, which is what `netstrata lab
    exec POD -- curl ...` does; it saves starting a Python process per probe."""
    src = next(w for w in seed()["workloads"] if w["name"] == probe["from"])
    dst = next(w for w in seed()["workloads"] if w["name"] == probe["to"])
    dst_ip = pods[f"{dst['namespace']}/{dst['name']}"]["ips"][0]
    url = f"http://{dst_ip}:{probe['port']}{probe['http']['path']}"
    netns = pods[f"{src['namespace']}/{src['name']}"]["netns"]
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "1",
            "-X",
            probe["http"]["method"],
            "-w",
            "%{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.stdout.strip()


def test_audit_observe_suggest_replay_enforce(lab: tuple[str, Path]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the probes are real curl requests)")
    name, work = lab
    case = seed()
    legit = [p for p in case["probes"] if p["expect"]["verdict"] == "allowed"]
    illegit = [p for p in case["probes"] if p["expect"]["verdict"] == "dropped"]
    assert legit and illegit
    status = json.loads(netstrata("lab", "status", "--name", name, "-o", "json"))
    pods = {p["workload"]: p for p in status["pods"]}

    # 2. audit mode: the default deny would drop all of it, yet every request is answered
    for probe in legit:
        assert curl(pods, probe) == "200", probe["id"]

    # 3. the recording, as Hubble JSON lines; the kernel audited what it would have dropped
    flows_file = work / "flows.jsonl"
    flows_file.write_text(netstrata("observe", "--name", name, "--all", "-o", "jsonpb"))
    flows = [json.loads(line)["flow"] for line in flows_file.read_text().splitlines()]
    verdicts = [f for f in flows if f["event_type"]["type"] == 5]
    assert verdicts and {f["verdict"] for f in verdicts} == {"AUDIT"}
    assert not [f for f in flows if f["verdict"] == "DROPPED"]

    # 4. suggest one allow-list per workload seen, then replay the recording against it
    suggested = work / "suggested"
    netstrata(
        "policy",
        "suggest",
        "--flows",
        str(flows_file),
        "--manifests",
        str(work / "topology"),
        "--manifests",
        str(work / "policies"),
        "-o",
        str(suggested),
    )
    written = sorted(p.name for p in suggested.iterdir())
    assert written == [
        "default-debug-allow.yaml",
        "monitoring-prometheus-allow.yaml",
        "shop-legacy-batch-allow.yaml",
        "shop-orders-api-allow.yaml",
        "warehouse-inventory-allow.yaml",
    ]
    replayed = json.loads(
        netstrata(
            "policy",
            "replay",
            "--flows",
            str(flows_file),
            "--manifests",
            str(work / "topology"),
            "--manifests",
            str(work / "policies"),
            "--manifests",
            str(suggested),
            "-o",
            "json",
        )
    )
    summary = replayed["summary"]
    assert summary["newly-dropped"] == 0 and summary["unmatched"] == 0
    assert summary["newly-allowed"] == len(legit)  # each connection was audited before

    # 5. apply the suggestion and switch the agents to enforcement
    for path in suggested.iterdir():
        shutil.copy(path, work / "policies" / path.name)
    assert "PolicyAuditMode  Disabled" in netstrata(
        "lab", "config", "--name", name, "PolicyAuditMode=Disabled"
    )
    agent = Path(status["directory"]) / "agents" / "default.node-1.json"
    deadline = time.monotonic() + 10
    while True:
        st = json.loads(agent.read_text())
        # the policies were copied before the switch: a sync that read the switch read them
        if st["config"]["policy_audit_mode"] is False:
            break
        assert time.monotonic() < deadline, f"the agent did not apply the switch: {st}"
        time.sleep(0.05)
    assert st["last_error"] is None
    switched = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    # 6. enforcement: the legitimate traffic still flows, the rest is dropped in the kernel
    for probe in legit:
        assert curl(pods, probe) == "200", probe["id"]
    for probe in illegit:
        assert curl(pods, probe) == "000", probe["id"]
    drops = [
        json.loads(line)["flow"]
        for line in netstrata(
            "observe", "--name", name, "--type", "drop", "--since", switched, "--all", "-o", "json"
        ).splitlines()
    ]
    for probe in illegit:
        src = next(w for w in case["workloads"] if w["name"] == probe["from"])
        dst = next(w for w in case["workloads"] if w["name"] == probe["to"])
        seen = [
            d
            for d in drops
            if d["source"]["pod_name"] == src["name"]
            and d["destination"]["pod_name"] == dst["name"]
            and d["l4"]["TCP"]["destination_port"] == probe["port"]
        ]
        assert seen and {d["drop_reason_desc"] for d in seen} == {"POLICY_DENIED"}, probe["id"]
    enforced = [
        json.loads(line)["flow"]
        for line in netstrata(
            "observe", "--name", name, "--verdict", "AUDIT", "--since", switched, "-o", "json"
        ).splitlines()
    ]
    assert not enforced, "nothing is audited any more"
