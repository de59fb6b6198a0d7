"""Flows, `netstrata observe` and metrics of a running lab, from real traffic.

One lab for the module (one node; pods `client`, `other`, `server` 8080/TCP; the policy lets
`client` and nobody else reach the server). Connections are real TCP connects from the pods'
namespaces; the kernel programs emit ring-buffer events; the agent process turns them into
flows, and the tests read them only through the agent's API and the `netstrata` command.

Expectations come from reference §4 (flow fields, the `hubble observe -o json` line shape, drop
reason 133 POLICY_DENIED for a default deny, event type 1 with the reason as sub-type) and
§4.5 (filter semantics), and from the lab plan (addresses, pod names).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import SERVER_ADMITS_CLIENT, SERVER_CLIENT_OTHER, running_lab  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from netstrata.cli.main import main  # noqa: E402
from netstrata.lab.labstate import LabState  # noqa: E402
from netstrata.netns import socket_in_netns  # noqa: E402
from netstrata.observe.store import read_flow_log  # noqa: E402

NODE = "default/node-1"
RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture(scope="module")
def lab(bpf_cache: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    files = {"workloads.yaml": SERVER_CLIENT_OTHER, "policy.yaml": SERVER_ADMITS_CLIENT}
    with running_lab(tmp_path_factory.mktemp("observe-topology"), files, "obs") as state:
        yield state


def ip_of(state: LabState, pod: str) -> str:
    return next(p.ip for p in state.plan.pods if p.workload == f"default/{pod}")


def connect_from(state: LabState, pod: str, timeout: float = 0.3) -> tuple[int, bool]:
    """(source port, connected?) of one TCP connect from `pod` to server:8080."""
    sock = socket_in_netns(state.plan.netns_of(f"default/{pod}"))
    sock.settimeout(timeout)
    sock.bind(("0.0.0.0", 0))
    port = sock.getsockname()[1]
    try:
        sock.connect((ip_of(state, "server"), 8080))
        ok = True
    except (TimeoutError, OSError):
        ok = False
    sock.close()
    return port, ok


def observe(state: LabState, *flags: str) -> str:
    """`netstrata observe` as a user runs it (in this process: the command's own entry point,
    which a subprocess would only wrap; `-f` and the error cases run it as a real process)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["observe", "--name", state.name, *flags]) == 0
    return out.getvalue()


def observe_json(state: LabState, *flags: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in observe(state, *flags, "-o", "json").splitlines()]


def wait_flows(state: LabState, *flags: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = observe_json(state, *flags)
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def api_get(state: LabState, target: str) -> bytes:
    import asyncio

    from netstrata.agent.api_client import get

    return asyncio.run(get(state.agent_api_path(NODE), target))


def scrape(state: LabState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = api_get(state, "/metrics").decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_dropped_flow_has_hubbles_fields(lab: LabState) -> None:
    before = time.time_ns()
    port, ok = connect_from(lab, "other")
    assert not ok
    lines = wait_flows(lab, "--type", "drop", "--from-port", str(port))
    assert lines, "no drop flow arrived"
    line = lines[0]
    assert set(line) == {"flow", "node_name", "time"}
    f = line["flow"]
    assert line["node_name"] == f["node_name"] == NODE
    assert line["time"] == f["time"] and RFC3339_NANOS.match(f["time"])
    t = datetime.strptime(f["time"][:26] + "Z", "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before / 1e9 - 1 <= t.timestamp() <= time.time() + 1
    assert f["verdict"] == "DROPPED"
    assert f["drop_reason"] == 133 and f["drop_reason_desc"] == "POLICY_DENIED"
    assert f["event_type"] == {"type": 1, "sub_type": 133}
    assert f["Type"] == "L3_L4"
    assert f["traffic_direction"] == "INGRESS"
    assert f["IP"] == {"source": ip_of(lab, "other"), "destination": ip_of(lab, "server"),
                       "ipVersion": "IPv4"}
    tcp = f["l4"]["TCP"]
    assert tcp["source_port"] == port and tcp["destination_port"] == 8080
    assert tcp["flags"] == {"SYN": True}
    assert f["Summary"] == "TCP Flags: SYN"
    src, dst = f["source"], f["destination"]
    assert src["namespace"] == dst["namespace"] == "default"
    assert src["pod_name"] == "other" and dst["pod_name"] == "server"
    assert src["cluster_name"] == dst["cluster_name"] == "default"
    assert "k8s:app=other" in src["labels"] and "k8s:app=server" in dst["labels"]
    assert "k8s:io.kubernetes.pod.namespace=default" in src["labels"]
    assert src["identity"] >= 256 and dst["identity"] >= 256
    assert src["identity"] != dst["identity"]
    assert dst["ID"] > 0  # the local endpoint the drop happened at
    assert src["workloads"] == [{"name": "other", "kind": "Pod"}]
    assert "ingress_denied_by" not in f  # a default deny names no rule
    uuid = f["uuid"]
    # The same flow reached the agent's JSON-lines export.
    exported = read_flow_log(lab.flows_path(NODE), backups=2)
    assert uuid in {x.uuid for x in exported}


def test_allowed_flow_names_the_policy(lab: LabState) -> None:
    port, ok = connect_from(lab, "client")
    assert ok
    lines = wait_flows(lab, "--type", "policy-verdict", "--from-port", str(port))
    f = lines[0]["flow"]
    assert f["verdict"] == "FORWARDED" and f["policy_match_type"] == 2  # L3-L4
    [policy] = f["ingress_allowed_by"]
    assert (policy["name"], policy["namespace"], policy["kind"]) == (
        "server-ingress", "default", "CiliumNetworkPolicy")


def test_observe_filters_on_real_flows(lab: LabState) -> None:
    dropped_port, _ = connect_from(lab, "other")
    allowed_port, _ = connect_from(lab, "client")
    assert wait_flows(lab, "--from-port", str(allowed_port), "--type", "policy-verdict")
    assert wait_flows(lab, "--from-port", str(dropped_port), "--type", "drop")

    every = observe_json(lab, "--all")
    assert {x["flow"]["verdict"] for x in every} >= {"DROPPED", "FORWARDED"}
    cases: dict[tuple[str, ...], Any] = {
        ("--verdict", "DROPPED"): lambda f: f["verdict"] == "DROPPED",
        ("--from-pod", "default/client"): lambda f: f["source"].get("pod_name") == "client",
        ("--to-pod", "default/server"): lambda f: f["destination"].get("pod_name") == "server",
        ("--from-label", "k8s:app=other"): lambda f: "k8s:app=other" in f["source"]["labels"],
        ("--to-label", "app=server"): lambda f: "k8s:app=server" in f["destination"]["labels"],
        ("--type", "policy-verdict"): lambda f: f["event_type"]["type"] == 5,
        ("--type", "trace"): lambda f: f["event_type"]["type"] == 4,
        ("--protocol", "tcp"): lambda f: "TCP" in f["l4"],
        ("--port", "8080"): lambda f: 8080 in (f["l4"]["TCP"]["source_port"],
                                               f["l4"]["TCP"]["destination_port"]),
        ("-n", "default"): lambda f: "default" in (f["source"].get("namespace"),
                                                   f["destination"].get("namespace")),
    }
    for flags, predicate in cases.items():
        hits = observe_json(lab, *flags, "--all")
        expected = [x for x in every if predicate(x["flow"])]
        assert hits, flags
        assert [h["flow"]["uuid"] for h in hits] == [x["flow"]["uuid"] for x in expected], flags

    ident = next(x["flow"]["source"]["identity"] for x in every
                 if x["flow"]["source"].get("pod_name") == "other")
    by_id = observe_json(lab, "--from-identity", str(ident), "--all")
    assert by_id and all(x["flow"]["source"]["identity"] == ident for x in by_id)
    assert len(observe_json(lab, "--last", "2")) == 2
    # --since: a window that starts after everything so far holds nothing old.
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.01)
    late_port, _ = connect_from(lab, "other")
    late = wait_flows(lab, "--since", since, "--all")
    assert late and {x["flow"]["l4"]["TCP"]["source_port"] for x in late} == {late_port}
    # Text outputs: compact names the pods, table has Hubble's header.
    compact = observe(lab, "--from-port", str(dropped_port), "--type", "drop")
    assert f"default/other:{dropped_port}" in compact and "Policy denied DROPPED" in compact
    table = observe(lab, "--verdict", "DROPPED", "-o", "table").splitlines()
    assert table[0].split() == ["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT",
                                "SUMMARY"]


def test_follow_streams_a_new_flow(lab: LabState) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "netstrata.cli.main", "observe", "--name",
                             lab.name, "-f", "--from-pod", "default/other", "--type", "drop",
                             "-o", "json"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while json.loads(api_get(lab, "/v1/status"))["store"]["followers"] == 0:
            assert time.monotonic() < deadline, "observe -f never connected"
            time.sleep(0.05)
        port, _ = connect_from(lab, "other")
        assert proc.stdout is not None
        line = _readline(proc, timeout=10)
        f = json.loads(line)["flow"]
        assert f["verdict"] == "DROPPED" and f["l4"]["TCP"]["source_port"] == port
    finally:
        proc.terminate()
        proc.wait(5)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError(f"no flow streamed within {timeout} s")
    return proc.stdout.readline()


def test_metrics_move_with_traffic(lab: LabState) -> None:
    drops = ("hubble_drop_total", (("direction", "ingress"), ("protocol", "TCP"),
                                   ("reason", "POLICY_DENIED")))
    allowed = ("hubble_policy_verdicts_total", (("action", "forwarded"),
                                                ("direction", "ingress"), ("match", "l3-l4")))
    before = scrape(lab)
    for _ in range(3):
        connect_from(lab, "other")
        connect_from(lab, "client")
    deadline = time.monotonic() + 5
    while True:
        after = scrape(lab)
        moved = (after.get(drops, 0) - before.get(drops, 0) >= 3
                 and after.get(allowed, 0) - before.get(allowed, 0) >= 3)
        if moved or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after[drops] - before.get(drops, 0) >= 3
    assert after[allowed] - before.get(allowed, 0) >= 3
    assert after[("cilium_endpoint", ())] == 3
    assert after[("cilium_identity", (("type", "cluster_local"),))] == 3
    assert 0 < after[("cilium_bpf_map_pressure", (("map_name", "nst_policy"),))] < 1
    assert after[("cilium_policy_change_total", (("outcome", "success"),))] >= 1

    # The same exposition on TCP :9962 inside the node's namespace (the Cilium port).
    sock = socket_in_netns(lab.plan.node(NODE).netns)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", 9962))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"hubble_flows_processed", "hubble_drop", "cilium_bpf_map_pressure"} <= names


def test_observe_reads_an_exported_file(lab: LabState, tmp_path: Path) -> None:
    port, _ = connect_from(lab, "other")
    assert wait_flows(lab, "--from-port", str(port), "--type", "drop")
    deadline = time.monotonic() + 5
    path = lab.flows_path(NODE)
    while port not in {f.l4.source_port for f in read_flow_log(path, 2)  # type: ignore[union-attr]
                       if f.l4 is not None}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    copy = tmp_path / "flows.jsonl"
    copy.write_bytes(path.read_bytes())
    out = observe(lab, "--flows", str(copy), "--from-port", str(port), "--type", "drop",
                  "-o", "json")
    [line] = [json.loads(x) for x in out.splitlines()]
    assert line["flow"]["l4"]["TCP"]["source_port"] == port


def test_unknown_node_and_bad_filter_are_clear_errors(lab: LabState) -> None:
    for flags, message in ((("--node", "nope"), "no node 'nope'"),
                           (("--verdict", "MAYBE"), "--verdict")):
        proc = subprocess.run([sys.executable, "-m", "netstrata.cli.main", "observe", "--name",
                               lab.name, *flags], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and message in proc.stderr
