"""`netstrata lab up` with real agent processes: restart after `kill -9`, a manifest broken
mid-edit, and `lab down` leaving nothing behind.

Topology: one node, pods `client`, `other` and `server` (8080/TCP); the policy lets `client`
(and nobody else) reach the server. Expectations from DESIGN.md ("The kernel datapath":
maps pinned so enforcement survives the agent; "Conventions": a bad manifest never
half-applies) and reference §3 (replies and established flows ride conntrack).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import SERVER_CLIENT_OTHER  # noqa: E402

from netstrata.datapath.kernel import KernelDatapath  # noqa: E402
from netstrata.lab.control import lab_down, lab_processes, lab_up, start_agent  # noqa: E402
from netstrata.lab.labstate import LabState, read_json, state_dir  # noqa: E402
from netstrata.lab.netlab import leftovers  # noqa: E402
from netstrata.netns import socket_in_netns  # noqa: E402

NODE = "default/node-1"
MAPS = ("nst_policy", "nst_policy_exact", "nst_ipcache", "nst_endpoints")

WORKLOADS = SERVER_CLIENT_OTHER


def policy(*apps: str) -> str:
    peers = "".join(f"\n  - fromEndpoints: [{{matchLabels: {{app: {a}}}}}]\n"
                    f"    toPorts: [{{ports: [{{port: '8080', protocol: TCP}}]}}]" for a in apps)
    return f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: server-ingress, namespace: default}}
spec:
  endpointSelector: {{matchLabels: {{app: server}}}}
  ingress:{peers}
"""


@pytest.fixture
def lab(tag: str, tmp_path: Path, bpf_cache: None) -> Iterator[LabState]:
    topo = tmp_path / "topology"
    topo.mkdir()
    (topo / "workloads.yaml").write_text(WORKLOADS)
    (topo / "policy.yaml").write_text(policy("client"))
    name = f"t{tag}"
    try:
        yield lab_up(topo, name=name)
    finally:
        lab_down(name)


def policy_file(state: LabState) -> Path:
    files = sorted(Path(state.manifests_dir).glob("*.yaml"))
    assert len(files) == 1, files
    return files[0]


def server_ip(state: LabState) -> str:
    return next(p.ip for p in state.plan.pods if p.workload == "default/server")


def connect(state: LabState, pod: str, timeout: float = 1.0) -> socket.socket | None:
    sock = socket_in_netns(state.plan.netns_of(f"default/{pod}"))
    sock.settimeout(timeout)
    try:
        sock.connect((server_ip(state), 8080))
    except (TimeoutError, OSError):
        sock.close()
        return None
    return sock


def echo(sock: socket.socket, payload: bytes) -> bytes | None:
    try:
        sock.sendall(payload)
        return sock.recv(1024)
    except (TimeoutError, OSError):
        return None


def reaches(state: LabState, pod: str) -> bool:
    sock = connect(state, pod)
    if sock is None:
        return False
    with sock:
        return echo(sock, b"hello\n") == b"hello\n"


def raw_maps(state: LabState) -> dict[str, Any]:
    """Every entry of the policy (trie and exact hash), ipcache and endpoint maps, as bytes
    (bpftool's dump)."""
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    if not Path(bpftool).exists():
        pytest.skip("bpftool is needed to read the maps byte for byte")
    pins = Path(state.plan.node(NODE).pin_dir)
    out = {}
    for name in MAPS:
        dump = subprocess.run([bpftool, "-j", "map", "dump", "pinned", str(pins / name)],
                              check=True, capture_output=True, text=True).stdout
        out[name] = sorted(json.dumps(e, sort_keys=True) for e in json.loads(dump))
    return out


def agent_status(state: LabState) -> dict[str, Any]:
    return read_json(state.agent_status_path(NODE)) or {}


def wait_status(state: LabState, key: str, above: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = agent_status(state)
        if status.get(key, 0) > above:
            return status
        time.sleep(0.05)
    raise AssertionError(f"agent status {key} never went above {above}: {agent_status(state)}")


def kernel_policies(state: LabState) -> dict[int, Any]:
    node = state.plan.node(NODE)
    dp = KernelDatapath(node.pin_dir, netns=node.netns)
    try:
        ids = {info.endpoint_id for info in dp.endpoints().values()}
        return {ep: dp.dump_policy(ep) for ep in sorted(ids)}
    finally:
        dp.close()


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        state = Path(f"/proc/{pid}/stat")
        if not state.exists() or state.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return
        time.sleep(0.02)


def test_the_lab_enforces_the_policy_through_its_agent(lab: LabState) -> None:
    assert reaches(lab, "client")
    assert not reaches(lab, "other")
    status = agent_status(lab)
    assert status["ready"] and status["last_error"] is None


def test_kill_9_of_the_agent_keeps_enforcing_and_restart_writes_nothing(lab: LabState) -> None:
    held = connect(lab, "client")
    assert held is not None
    with held:
        assert echo(held, b"before\n") == b"before\n"
        maps, policies = raw_maps(lab), kernel_policies(lab)
        assert any(policies.values())

        kill9(lab.agents[NODE])
        assert echo(held, b"agent gone\n") == b"agent gone\n"  # established: conntrack
        assert reaches(lab, "client")  # new allowed connections: the pinned policy
        assert not reaches(lab, "other")  # denied stays denied
        assert raw_maps(lab) == maps

        start_agent(lab, NODE)
        first = agent_status(lab)["first_sync"]
        assert first["writes"] == 0, first  # reconciled against the kernel: nothing to write
        assert kernel_policies(lab) == policies
        assert raw_maps(lab) == maps
        assert echo(held, b"after\n") == b"after\n"
    assert not reaches(lab, "other")


def test_a_manifest_broken_mid_edit_leaves_the_maps_byte_identical(lab: LabState) -> None:
    path = policy_file(lab)
    good = path.read_text()
    before = raw_maps(lab)
    rejected = agent_status(lab).get("rejected", 0)

    path.write_text(good[: len(good) // 2])  # an editor's half-written save
    status = wait_status(lab, "rejected", rejected)
    assert str(path) in status["last_error"]
    assert raw_maps(lab) == before
    assert reaches(lab, "client") and not reaches(lab, "other")

    path.write_text(good.replace("'8080'", "'99999'"))  # valid YAML, port out of range
    status = wait_status(lab, "rejected", rejected + 1)
    assert "99999" in status["last_error"] and ":" in status["last_error"]
    assert raw_maps(lab) == before

    syncs = agent_status(lab)["syncs"]
    path.write_text(policy("client", "other"))  # a real change still goes through
    wait_status(lab, "syncs", syncs)
    assert raw_maps(lab) != before
    assert reaches(lab, "other")
    assert agent_status(lab)["last_error"] is None


def test_lab_down_removes_every_namespace_link_pin_and_process(lab: LabState) -> None:
    held = leftovers(lab.name)
    assert held["netns"] and held["pins"]  # namespaces and pins exist while it is up...
    assert held["links"] == []  # ...and nothing at all in the host's own namespace
    assert lab_processes(lab.name)
    lab_down(lab.name)
    assert leftovers(lab.name) == {"netns": [], "links": [], "pins": []}
    assert lab_processes(lab.name) == []
    assert not state_dir(lab.name).exists()


def test_lab_down_after_a_crash_with_no_state_left(lab: LabState) -> None:
    """Everything killed with -9 and the state file lost: the name alone is enough."""
    for pid in lab_processes(lab.name):
        kill9(pid)
    shutil.rmtree(state_dir(lab.name))
    removed = lab_down(lab.name)
    assert any(r.startswith("netns ") for r in removed)
    assert leftovers(lab.name) == {"netns": [], "links": [], "pins": []}
