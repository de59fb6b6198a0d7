"""The roll-out workflow with L7 rules, end to end on a kernel lab, with the `netstrata` commands.

Seed h of the shared scenarios (`api-server:80` serves `GET /public` to `app=client`; other
paths get 403, other peers are dropped): its workloads become the lab's topology, its
hand-written policy is thrown away, and docs/rollout.md's loop writes one from traffic:

1. `lab up --policy-audit-mode` with a cluster-wide default-deny plus an L7 visibility rule
   (`rules.http: [{}]` on api-server:80 from the cluster), so the node proxy sees the requests;
2. the seed's legitimate probe as real curl requests: answered, the proxy records them;
3. `observe -o jsonpb --all` -> `policy suggest` (api-server gets `GET ^/public$` from
   `app=client`) -> `policy replay` (0 newly dropped);
4. the suggestion replaces the visibility rule, `lab config PolicyAuditMode=Disabled`;
5. enforcement: `GET /public` still 200; `GET /private` and `POST /public` get the proxy's 403
   (an L7 DROPPED flow); `other`'s request gets no answer (a kernel drop, POLICY_DENIED).
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
from test_lab_rollout import DEFAULT_DENY, netstrata, workload_docs  # noqa: E402

SEED = "seed-h-api-server-get-public"
VISIBILITY = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "api-server-visibility", "namespace": "default"},
    "spec": {
        "endpointSelector": {"matchLabels": {"app": "api-server"}},
        "ingress": [
            {
                "fromEntities": ["cluster"],
                "toPorts": [
                    {"ports": [{"port": "80", "protocol": "TCP"}], "rules": {"http": [{}]}}
                ],
            }
        ],
    },
}


def seed() -> dict[str, Any]:
    cases = yaml.safe_load((acceptance_dir() / "scenarios" / "cases.yaml").read_text())
    return next(c for c in cases if c["name"] == SEED)


@pytest.fixture
def lab(tmp_path: Path, bpf_cache: None) -> Iterator[tuple[str, Path]]:
    """Seed h's workloads, default-deny + L7 visibility in audit mode; (lab name, work dir)."""
    (tmp_path / "topology").mkdir()
    (tmp_path / "topology" / "workloads.yaml").write_text(
        yaml.safe_dump_all(workload_docs(seed()), sort_keys=False)
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default-deny.yaml").write_text(yaml.safe_dump(DEFAULT_DENY))
    (tmp_path / "policies" / "visibility.yaml").write_text(yaml.safe_dump(VISIBILITY))
    name = f"r7{secrets.token_hex(3)}"
    try:
        netstrata(
            "lab", "up", str(tmp_path / "topology"), "--name", name,
            "--manifests", str(tmp_path / "policies"), "--policy-audit-mode", timeout=120,
        )  # fmt: skip
        yield name, tmp_path
    finally:
        subprocess.run(
            [sys.executable, "-m", "netstrata.cli.main", "lab", "down", "--name", name],
            capture_output=True,
            timeout=60,
        )


def curl(pods: dict[str, dict[str, Any]], src: str, method: str, path: str) -> str:
    """The status a real curl from `default/src` to api-server:80 gets ('000': no answer)."""
    url = f"http://{pods['default/api-server']['ips'][0]}:80{path}"
    proc = subprocess.run(
        ["ip", "netns", "exec", pods[f"default/{src}"]["netns"], "curl", "-s", "-o", "/dev/null",
         "-m", "1", "-X", method, "-w", "%{http_code}", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return proc.stdout.strip()


def observe(name: str, *flags: str) -> list[dict[str, Any]]:
    out = netstrata("observe", "--name", name, *flags, "-o", "json")
    return [json.loads(line)["flow"] for line in out.splitlines()]


def wait_enforcing(status: dict[str, Any]) -> None:
    agent = Path(status["directory"]) / "agents" / "default.node-1.json"
    deadline = time.monotonic() + 10
    while True:
        st = json.loads(agent.read_text())
        if st["config"]["policy_audit_mode"] is False and st["last_error"] is None:
            return
        assert time.monotonic() < deadline, f"the agent did not apply the switch: {st}"
        time.sleep(0.05)


def test_l7_audit_observe_suggest_enforce(lab: tuple[str, Path]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the probes are real curl requests)")
    name, work = lab
    status = json.loads(netstrata("lab", "status", "--name", name, "-o", "json"))
    pods = {p["workload"]: p for p in status["pods"]}

    # 2. audit mode + visibility: answered, and the proxy saw every request
    for _ in range(2):
        assert curl(pods, "client", "GET", "/public") == "200"
    seen = observe(name, "--type", "l7", "--http-path", "^/public$", "--all")
    requests = [f for f in seen if f["l7"]["type"] == "REQUEST"]
    assert len(requests) == 2 and {f["verdict"] for f in requests} == {"FORWARDED"}
    [allowed_by] = {p["name"] for f in requests for p in f["ingress_allowed_by"]}
    assert allowed_by == "api-server-visibility"
    audited = observe(name, "--verdict", "AUDIT", "--all")
    assert audited and {f["traffic_direction"] for f in audited} == {"EGRESS"}  # client's egress

    # 3. recording -> suggestion -> replay
    flows_file = work / "flows.jsonl"
    flows_file.write_text(netstrata("observe", "--name", name, "--all", "-o", "jsonpb"))
    suggested = work / "suggested"
    manifests = ["--manifests", str(work / "topology"), "--manifests", str(work / "policies")]
    netstrata("policy", "suggest", "--flows", str(flows_file), *manifests, "-o", str(suggested))
    assert sorted(p.name for p in suggested.iterdir()) == [
        "default-api-server-allow.yaml",
        "default-client-allow.yaml",
    ]
    policy = yaml.safe_load((suggested / "default-api-server-allow.yaml").read_text())
    [rule] = policy["spec"]["ingress"]
    assert rule["fromEndpoints"] == [{"matchLabels": {"app": "client"}}]
    [port] = rule["toPorts"]
    assert port["ports"] == [{"port": "80", "protocol": "TCP"}]
    assert port["rules"] == {"http": [{"method": "GET", "path": "^/public$"}]}
    replayed = json.loads(
        netstrata(
            "policy",
            "replay",
            "--flows",
            str(flows_file),
            *manifests,
            "--manifests",
            str(suggested),
            "-o",
            "json",
        )  # fmt: skip
    )
    assert replayed["summary"]["newly-dropped"] == 0 and replayed["summary"]["unmatched"] == 0

    # 4. the suggestion replaces the visibility rule; enforce
    (work / "policies" / "visibility.yaml").unlink()
    for path in suggested.iterdir():
        shutil.copy(path, work / "policies" / path.name)
    assert "PolicyAuditMode  Disabled" in netstrata(
        "lab", "config", "--name", name, "PolicyAuditMode=Disabled"
    )
    wait_enforcing(status)
    switched = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    # 5. legitimate requests pass, an illegitimate path is 403, an illegitimate peer dropped
    assert curl(pods, "client", "GET", "/public") == "200"
    assert curl(pods, "client", "GET", "/private") == "403"
    assert curl(pods, "client", "POST", "/public") == "403"
    assert curl(pods, "other", "GET", "/public") == "000"
    denied = observe(name, "--type", "l7", "--verdict", "DROPPED", "--since", switched, "--all")
    assert sorted(
        (f["l7"]["http"]["method"], f["l7"]["http"]["url"].rsplit("/", 1)[1])
        for f in denied
        if f["l7"]["type"] == "REQUEST"
    ) == [("GET", "private"), ("POST", "public")]
    drops = observe(name, "--type", "drop", "--from-pod", "default/other", "--since", switched)
    assert drops and {d["drop_reason_desc"] for d in drops} == {"POLICY_DENIED"}
    assert {d["l4"]["TCP"]["destination_port"] for d in drops} == {80}
    assert not observe(name, "--verdict", "AUDIT", "--since", switched, "--all")
