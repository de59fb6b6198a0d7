"""`netstrata lab up/status/exec/check/down` and `netstrata demo --mode kernel`, as a user
runs them: separate processes, real curl, real namespaces."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CASES = """
- name: e2e-two-pods
  origin: test
  source: seed
  workloads:
  - {name: web, namespace: shop, labels: {app: web}, ports: [{port: 80, protocol: TCP}]}
  - {name: shopper, namespace: shop, labels: {app: shopper}}
  - {name: intruder, namespace: shop, labels: {app: intruder}}
  policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: web-from-shopper, namespace: shop}
    spec:
      podSelector: {matchLabels: {app: web}}
      ingress: [{from: [{podSelector: {matchLabels: {app: shopper}}}]}]
  probes:
  - {id: shopper-web, from: shopper, to: web, protocol: http, port: 80, expect: {verdict: allowed}}
  - {id: intruder-web, from: intruder, to: web, protocol: http, port: 80,
     expect: {verdict: dropped, direction: ingress, drop_reason: POLICY_DENIED}}
  - {id: web-shopper-ping, from: web, to: shopper, protocol: icmp, expect: {verdict: allowed}}
"""


def netstrata(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "netstrata.cli.main", *args],
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(CASES)
    return path


@pytest.fixture
def lab(cases: Path) -> Iterator[str]:
    name = f"e{secrets.token_hex(3)}"
    try:
        netstrata("lab", "up", str(cases), "--name", name)
        yield name
    finally:
        netstrata("lab", "down", "--name", name, check=False)


def test_up_status_exec_down(lab: str) -> None:
    status = json.loads(netstrata("lab", "status", "--name", lab, "-o", "json").stdout)
    assert all(n["agent_running"] for n in status["nodes"]) and status["servers_running"]
    web = next(p for p in status["pods"] if p["workload"] == "shop/web")["ips"][0]
    ok = netstrata("lab", "exec", "--name", lab, "shop/shopper", "--",
                   "curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}",
                   f"http://{web}/")
    assert ok.stdout == "200"
    denied = netstrata("lab", "exec", "--name", lab, "shop/intruder", "--",
                       "curl", "-s", "-m", "1", f"http://{web}/", check=False)
    assert denied.returncode == 28  # curl: timed out (a silent kernel drop)
    down = netstrata("lab", "down", "--name", lab)
    assert "netns" in down.stdout
    gone = netstrata("lab", "status", "--name", lab, check=False)
    assert gone.returncode == 2 and "no lab" in gone.stderr


def test_lab_check_prints_the_policy_check_shape(cases: Path) -> None:
    report = json.loads(netstrata("lab", "check", str(cases), "-o", "json").stdout)
    assert report["mode"] == "kernel" and report["suite"] == "scenarios"
    assert report["summary"] == {"passed": 1, "failed": 0, "skipped": 0, "probes": 3}
    probes = {p["id"]: p for p in report["cases"][0]["probes"]}
    assert probes["intruder-web"]["got"] == "dropped"
    assert probes["intruder-web"]["direction"] == "ingress"
    assert probes["shopper-web"]["rule"]


def test_demo_in_kernel_mode_runs_a_seed_on_real_traffic() -> None:
    out = netstrata("demo", "--mode", "kernel", "--scenario", "seed-h-api-server-get-public")
    assert "through the kernel datapath" in out.stdout
    assert "dropped" in out.stdout and "MISMATCH" not in out.stdout


def test_demo_by_default_sends_the_seeds_l7_scenarios_through_the_kernel_lab() -> None:
    # every probe judged strictly, seed-f's CreateTopics too (a request the proxy discards,
    # told from a kernel drop by the proxy's DROPPED flow, which the lab keeps for the whole
    # batch: lab/l7_flow_log.py); a mismatch prints the client's and the proxy's account
    out = netstrata("demo", "--scenario", "seed-h-api-server-get-public",
                    "--scenario", "seed-f-kafka-orders", check=False)
    assert "through the kernel datapath and the node L7 proxy" in out.stdout
    assert out.returncode == 0 and "MISMATCH" not in out.stdout, out.stdout + out.stderr
    skipped = [line for line in out.stdout.splitlines() if line.rstrip().endswith(" -")]
    assert not skipped, skipped  # every probe was sent (a skipped one is marked '-')
    rows = [line.split() for line in out.stdout.splitlines()]
    verdicts = {(r[0], " ".join(r[3:6])): r[6] for r in rows if len(r) > 6 and r[3] == "kafka"}
    assert verdicts[("order-processor", "kafka produce new-orders")] == "allowed"
    assert verdicts[("order-processor", "kafka consume new-orders")] == "denied-l7"
    assert verdicts[("order-processor", "kafka createtopics new-topic")] == "denied-l7"
    http = {(r[0], r[3], r[4], r[2]): r[5] for r in rows if len(r) > 5 and r[3] in ("GET", "POST")}
    assert http[("client", "GET", "/public", "80/http")] == "allowed"
    assert http[("client", "GET", "/private", "80/http")] == "denied-l7"


def test_demo_without_root_says_so_and_shows_the_reference_run() -> None:
    # a real unprivileged user (nobody), not a patched euid
    proc = subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
         sys.executable, "-m", "netstrata.cli.main", "demo", "--scenario",
         "seed-h-api-server-get-public"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no kernel lab here (it needs root" in proc.stdout
    assert "through the reference datapath" in proc.stdout
    assert "denied-l7" in proc.stdout and "MISMATCH" not in proc.stdout
