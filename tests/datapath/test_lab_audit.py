"""Audit mode in the kernel with real traffic: per workload, then agent-wide.

One lab (one node; `client`, `server` and `other`, each server on 8080/TCP and 9053/UDP):
a cluster-wide ingress default-deny plus an explicit cluster-wide `ingressDeny` of 9053/UDP.
`server` carries the annotation `policy.netstrata.io/audit-mode: "true"`; `other` does not.

1. Only the annotation: TCP and UDP from `client` to `server` get through (real connects and
   real echo datagrams from the pod's namespace) and are reported AUDIT; the same to `other`
   are dropped (133 default deny, 181 explicit deny).
2. `netstrata lab config PolicyAuditMode=Enabled` (the CLI, as a user runs it): the agent
   re-applies and `other` audits as well. `PolicyAuditMode=Disabled` puts `other` back to
   enforcement (the annotated `server` keeps auditing).

The flows are read through the agent's API with `netstrata observe`. Expectations come from
reference §1.10.7 (audit mode turns any L3/L4 drop, explicit denies included, into an allow
marked audited: Hubble verdict AUDIT, no drop reason) and §4.1-4.3 (flow fields: a
policy-verdict event is type 5; `*_denied_by` names the deny rule a packet met).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import running_lab  # noqa: E402

from netstrata.cli.main import main  # noqa: E402
from netstrata.lab.labstate import LabState, read_json  # noqa: E402
from netstrata.netns import socket_in_netns  # noqa: E402

NODE = "default/node-1"
UDP_PORT = 9053


def _workload(name: str, ports: bool, annotations: str = "") -> str:
    spec = (
        "{node: node-1, ports: [{port: 8080, protocol: TCP, name: http}, "
        f"{{port: {UDP_PORT}, protocol: UDP, name: echo}}]}}"
        if ports
        else "{node: node-1}"
    )
    return (
        f"apiVersion: netstrata.io/v1alpha1\nkind: Workload\n"
        f"metadata: {{name: {name}, namespace: default, labels: {{app: {name}}}"
        f"{annotations}}}\nspec: {spec}\n"
    )


WORKLOADS = "---\n".join(
    [
        _workload("server", True, ", annotations: {policy.netstrata.io/audit-mode: 'true'}"),
        _workload("other", True),
        _workload("client", False),
    ]
)
POLICIES = f"""apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {{name: default-deny-ingress}}
spec:
  endpointSelector: {{}}
  ingress: [{{}}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {{name: deny-udp-echo}}
spec:
  endpointSelector: {{}}
  ingressDeny:
  - fromEntities: [cluster]
    toPorts: [{{ports: [{{port: '{UDP_PORT}', protocol: UDP}}]}}]
"""
RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def lab(bpf_cache: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    files = {"workloads.yaml": WORKLOADS, "policies.yaml": POLICIES}
    with running_lab(tmp_path_factory.mktemp("audit-topology"), files, "aud") as state:
        yield state


def ip_of(state: LabState, pod: str) -> str:
    return next(p.ip for p in state.plan.pods if p.workload == f"default/{pod}")


def tcp_from_client(state: LabState, to: str) -> tuple[int, bool]:
    """(source port, connected?) of a real TCP connect from client to `to`:8080."""
    sock = socket_in_netns(state.plan.netns_of("default/client"))
    sock.settimeout(0.5)
    sock.bind(("0.0.0.0", 0))
    port = sock.getsockname()[1]
    try:
        sock.connect((ip_of(state, to), 8080))
        ok = True
    except OSError:
        ok = False
    sock.close()
    return port, ok


def udp_from_client(state: LabState, to: str) -> tuple[int, bool]:
    """(source port, echoed?) of one real datagram from client to `to`:9053 (echo server)."""
    sock = socket_in_netns(state.plan.netns_of("default/client"), kind=socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    sock.bind(("0.0.0.0", 0))
    port = sock.getsockname()[1]
    payload = secrets.token_bytes(8)
    try:
        sock.sendto(payload, (ip_of(state, to), UDP_PORT))
        ok = sock.recv(64) == payload
    except OSError:
        ok = False
    sock.close()
    return port, ok


def observe_json(state: LabState, *flags: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["observe", "--name", state.name, *flags, "-o", "json"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def verdict_flow(state: LabState, port: int) -> dict[str, Any]:
    """The ingress policy-verdict flow of the connection from client's `port`."""
    deadline = time.monotonic() + 5
    while True:
        lines = observe_json(
            state,
            "--from-port",
            str(port),
            "--type",
            "policy-verdict",
            "--traffic-direction",
            "ingress",
        )
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) == 1, lines
    return lines[0]


def set_agent_audit(state: LabState, value: str) -> None:
    """`netstrata lab config PolicyAuditMode=...` as a user runs it; wait for the agent."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "netstrata.cli.main",
            "lab",
            "config",
            "--name",
            state.name,
            f"PolicyAuditMode={value}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"PolicyAuditMode  {value}" in proc.stdout
    want = value == "Enabled"
    deadline = time.monotonic() + 10
    while (read_json(state.agent_status_path(NODE)) or {}).get("config", {}).get(
        "policy_audit_mode"
    ) is not want:
        assert time.monotonic() < deadline, "the agent did not apply the new setting"
        time.sleep(0.05)


def check_audited(
    state: LabState, line: dict[str, Any], proto: str, sport: int, to: str, denied_by: str | None
) -> None:
    """An audited ingress verdict, field by field against reference §4.1-4.3."""
    assert set(line) == {"flow", "node_name", "time"}
    f = line["flow"]
    assert line["node_name"] == f["node_name"] == NODE and line["time"] == f["time"]
    assert RFC3339_NANOS.match(f["time"]) and UUID.match(f["uuid"])
    assert f["verdict"] == "AUDIT"
    # audit mode turns the drop into an allow: there is no drop reason on the record
    assert "drop_reason" not in f and "drop_reason_desc" not in f
    assert f["Type"] == "L3_L4"
    assert f["event_type"] == {"type": 5}  # policy verdict
    assert f["traffic_direction"] == "INGRESS" and f["is_reply"] is False
    assert f["IP"] == {
        "source": ip_of(state, "client"),
        "destination": ip_of(state, to),
        "ipVersion": "IPv4",
    }
    dport = 8080 if proto == "TCP" else UDP_PORT
    l4 = f["l4"][proto]
    assert (l4["source_port"], l4["destination_port"]) == (sport, dport)
    if proto == "TCP":
        assert l4["flags"] == {"SYN": True} and f["Summary"] == "TCP Flags: SYN"
    else:
        assert set(f["l4"]) == {"UDP"} and "flags" not in l4
    src, dst = f["source"], f["destination"]
    assert (src["pod_name"], dst["pod_name"]) == ("client", to)
    assert src["namespace"] == dst["namespace"] == "default"
    assert src["cluster_name"] == dst["cluster_name"] == "default"
    assert "k8s:app=client" in src["labels"] and f"k8s:app={to}" in dst["labels"]
    assert src["workloads"] == [{"name": "client", "kind": "Pod"}]
    assert dst["workloads"] == [{"name": to, "kind": "Pod"}]
    assert src["identity"] >= 256 and dst["identity"] >= 256
    assert dst["ID"] > 0  # the endpoint whose (audited) ingress policy decided
    # No allow matched, so no *_allowed_by. A default deny matched nothing (no match type,
    # no rule); an explicit deny is the entry that matched: its match type (L3-L4 here:
    # fromEntities plus a port) and its rule under ingress_denied_by.
    assert not {"ingress_allowed_by", "egress_allowed_by", "egress_denied_by"} & set(f)
    if denied_by is None:
        assert "policy_match_type" not in f and "ingress_denied_by" not in f
    else:
        assert f["policy_match_type"] == 2
        [rule] = f["ingress_denied_by"]
        assert (rule["name"], rule["kind"]) == (denied_by, "CiliumClusterwideNetworkPolicy")
        assert "namespace" not in rule  # cluster-wide
        assert f"k8s:io.cilium.k8s.policy.name={denied_by}" in rule["labels"]


def check_dropped(state: LabState, line: dict[str, Any], reason: tuple[int, str]) -> None:
    f = line["flow"]
    assert f["verdict"] == "DROPPED" and f["destination"]["pod_name"] == "other"
    drops = observe_json(
        state, "--from-port", str(f["l4"][next(iter(f["l4"]))]["source_port"]), "--type", "drop"
    )
    assert [(d["flow"]["drop_reason"], d["flow"]["drop_reason_desc"]) for d in drops] == [reason]


def test_annotation_audits_only_that_workload(lab: LabState) -> None:
    port, ok = tcp_from_client(lab, "server")
    assert ok, "the annotated server must forward a would-be-dropped TCP connect"
    check_audited(lab, verdict_flow(lab, port), "TCP", port, "server", None)
    port, ok = udp_from_client(lab, "server")
    assert ok, "the annotated server must forward a would-be-denied UDP datagram"
    check_audited(lab, verdict_flow(lab, port), "UDP", port, "server", "deny-udp-echo")

    port, ok = tcp_from_client(lab, "other")
    assert not ok, "other has no annotation: its default deny must drop"
    check_dropped(lab, verdict_flow(lab, port), (133, "POLICY_DENIED"))
    port, ok = udp_from_client(lab, "other")
    assert not ok
    check_dropped(lab, verdict_flow(lab, port), (181, "POLICY_DENY"))


def test_agent_wide_audit_mode_switched_at_run_time(lab: LabState) -> None:
    set_agent_audit(lab, "Enabled")
    try:
        port, ok = tcp_from_client(lab, "other")
        assert ok, "agent-wide audit mode must forward other's would-be drops"
        check_audited(lab, verdict_flow(lab, port), "TCP", port, "other", None)
        port, ok = udp_from_client(lab, "other")
        assert ok
        check_audited(lab, verdict_flow(lab, port), "UDP", port, "other", "deny-udp-echo")
    finally:
        set_agent_audit(lab, "Disabled")
    # back to enforcement: other drops again, the annotated server still audits
    port, ok = tcp_from_client(lab, "other")
    assert not ok
    check_dropped(lab, verdict_flow(lab, port), (133, "POLICY_DENIED"))
    port, ok = tcp_from_client(lab, "server")
    assert ok and verdict_flow(lab, port)["flow"]["verdict"] == "AUDIT"


def test_audited_flows_are_counted_in_metrics(lab: LabState) -> None:
    """The AUDIT verdicts reach Prometheus (parsed by prometheus_client's own parser)."""
    import asyncio

    from prometheus_client.parser import text_string_to_metric_families

    from netstrata.agent.api_client import get

    def audited() -> float:
        text = asyncio.run(get(lab.agent_api_path(NODE), "/metrics")).decode()
        return sum(
            s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == "hubble_flows_processed_total" and s.labels.get("verdict") == "AUDIT"
        )

    before = audited()
    for _ in range(3):
        assert tcp_from_client(lab, "server")[1]
    deadline = time.monotonic() + 5
    while audited() - before < 3:
        assert time.monotonic() < deadline, "AUDIT flows were not counted"
        time.sleep(0.1)


def test_bad_setting_is_a_clear_error_and_changes_nothing(lab: LabState, tmp_path: Path) -> None:
    before = lab.agent_config_path.read_bytes() if lab.agent_config_path.exists() else None
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "netstrata.cli.main",
            "lab",
            "config",
            "--name",
            lab.name,
            "PolicyAuditMode=maybe",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "expected Enabled or Disabled" in proc.stderr and "'maybe'" in proc.stderr
    after = lab.agent_config_path.read_bytes() if lab.agent_config_path.exists() else None
    assert after == before
