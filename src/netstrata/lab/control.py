"""`netstrata lab up/down/status/exec`: a lab that keeps running after the command returns.

`lab_up()` builds the namespaces (`netlab`), starts one server process for every workload's
server (`lab/servers.py`; sockets live in each workload's namespace) and one agent process
per node (`agent/daemon.py`), and records it all in `<run dir>/<lab>/state.json`
(`labstate`). `lab_down()` stops exactly those processes (each id checked against its command
line first) and removes every namespace, link, program and pin of the lab; it also works with
no state file at all (after a crash or `kill -9` of anything), since every name derives from
the lab's name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from netstrata.agent.sources import LabDefinition, load_definition, read_policies, resolve_view
from netstrata.lab.agent_config import AgentConfig, write_agent_config
from netstrata.lab.cases import manifest_ref
from netstrata.lab.clients import enter_netns
from netstrata.lab.kernel_session import probe_targets, server_specs
from netstrata.lab.labstate import LabState, check_name, list_labs, read_json, run_dir, state_dir
from netstrata.lab.netlab import (
    LabError,
    LabPlan,
    build_lab,
    destroy_all_labs,
    destroy_lab,
    leftovers,
    plan_lab,
)
from netstrata.lab.servers import config_of

log = logging.getLogger(__name__)

AGENT_MODULE: Final = "netstrata.agent.daemon"
SERVERS_MODULE: Final = "netstrata.lab.servers"
READY_TIMEOUT_S: Final = 60.0
"""How long `lab up` waits for an agent's first sync (loading the programs dominates)."""
STOP_TIMEOUT_S: Final = 3.0


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (network namespaces, bpf(2), tc); run it with sudo")


# ---------------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_ours(pid: int, lab: str) -> bool:
    """Whether `pid` still runs one of this lab's programs (ids get reused)."""
    cmd = _cmdline(pid)
    if AGENT_MODULE in cmd:
        return "--lab" in cmd and cmd[cmd.index("--lab") + 1:][:1] == [lab]
    return SERVERS_MODULE in cmd and str(state_dir(lab) / "servers.json") in cmd


def lab_processes(lab: str) -> list[int]:
    """Every running agent or server process of `lab`, found by command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and _is_ours(int(entry.name), lab):
            pids.append(int(entry.name))
    return sorted(pids)


def stop_process(pid: int, lab: str) -> bool:
    """SIGTERM (then SIGKILL) one of the lab's processes; False if it was not running."""
    if not _is_ours(pid, lab):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text(errors="replace").rsplit(")", 1)[-1].split()
    return bool(state) and state[0] != "Z"


def _spawn(argv: list[str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, close_fds=True)
    return proc.pid


def start_agent(state: LabState, node_key: str, *, wait: bool = True) -> int:
    """Start the agent of one node (also: restart it after a crash); returns its pid."""
    status = state.agent_status_path(node_key)
    status.unlink(missing_ok=True)
    pid = _spawn([sys.executable, "-m", AGENT_MODULE, "--lab", state.name, "--node", node_key],
                 state.agent_log_path(node_key))
    state.agents[node_key] = pid
    state.save()
    if wait:
        wait_agent(state, node_key, pid)
    return pid


def wait_agent(state: LabState, node_key: str, pid: int) -> dict[str, Any]:
    """The agent's status once its first sync is done. Raises LabError if it died or hung."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    path = state.agent_status_path(node_key)
    while time.monotonic() < deadline:
        status = read_json(path)
        if status and status.get("pid") == pid and status.get("ready"):
            return status
        if not _alive(pid):
            raise LabError(f"the agent of {node_key} exited; see {state.agent_log_path(node_key)}")
        time.sleep(0.05)
    raise LabError(f"the agent of {node_key} did not finish its first sync in "
                   f"{READY_TIMEOUT_S:.0f} s; see {state.agent_log_path(node_key)}")


def _start_servers(state: LabState, definition: LabDefinition, manifests: list[dict[str, Any]]) -> int:
    runner = resolve_view(definition, manifests)
    wanted, _ = probe_targets(runner, definition.probes)
    specs = server_specs(state.plan, definition.scenario.topology, wanted)
    ready = state.directory / "servers.ready"
    ready.unlink(missing_ok=True)
    config = state.directory / "servers.json"
    config.write_text(json.dumps(config_of(specs, definition.scenario.topology.dns_records,
                                           str(ready)), indent=1))
    pid = _spawn([sys.executable, "-m", SERVERS_MODULE, str(config)],
                 state.directory / "servers.log")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if not _alive(pid) or time.monotonic() > deadline:
            raise LabError(f"the workload servers did not start; see {state.directory / 'servers.log'}")
        time.sleep(0.05)
    return pid


# ------------------------------------------------------------------------------------- up


def _copy_source(source: Path, directory: Path) -> Path:
    if source.is_dir():
        target = directory / "source"
        shutil.copytree(source, target)
    else:
        target = directory / f"source{source.suffix or '.yaml'}"
        shutil.copyfile(source, target)
    return target


def _write_manifests(directory: Path, manifests: Sequence[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(manifests, start=1):
        name = manifest_ref(m).replace("/", "-").lower()
        (directory / f"{i:02d}-{name}.yaml").write_text(yaml.safe_dump(m, sort_keys=False))


def lab_up(source: str | Path, *, name: str = "default", case: str | None = None,
           manifests: str | Path | None = None,
           policy_audit_mode: bool | None = None) -> LabState:
    """Build and start a lab; see the module docstring.

    `policy_audit_mode` seeds the agent-wide setting (`lab/agent_config.py`); None leaves
    it to the topology (a case file's `agent_config`).

    Raises:
        LabError: not root, already up, or something failed (everything made is removed);
        ManifestError / PolicyConflictError: the first policies do not apply (nothing built).
    """
    require_root("netstrata lab up")
    check_name(name)
    if (state_dir(name) / "state.json").exists():
        raise LabError(f"lab {name!r} is already up; `netstrata lab down --name {name}` first")
    src = Path(source).resolve()
    definition = load_definition(src, case)
    watched = Path(manifests).resolve() if manifests else None
    first = read_policies(watched) if watched else list(definition.manifests)
    runner = resolve_view(definition, first)  # refuse bad policies before building anything
    _, targets = probe_targets(runner, definition.probes)
    plan = plan_lab(name, definition.scenario.topology, targets)
    if any(leftovers(name).values()):
        log.warning("lab %s: removing what an earlier run left behind", name)
        _teardown(name)
    directory = state_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        copied = _copy_source(src, directory)
        if watched is None:
            watched = directory / "manifests"
            _write_manifests(watched, first)
        state = LabState(name, plan, str(copied), case, str(watched))
        state.save()
        if policy_audit_mode is not None:
            write_agent_config(state.agent_config_path,
                               AgentConfig(policy_audit_mode=policy_audit_mode))
        build_lab(plan)
        state.servers_pid = _start_servers(state, definition, first)
        state.save()
        for node in plan.nodes:
            start_agent(state, node.key, wait=False)
        for node in plan.nodes:
            wait_agent(state, node.key, state.agents[node.key])
    except BaseException:
        lab_down(name)
        raise
    return state


# ----------------------------------------------------------------------------------- down


def _teardown(name: str) -> list[str]:
    removed = [f"process {pid}" for pid in lab_processes(name) if stop_process(pid, name)]
    return removed + destroy_lab(name)


def lab_down(name: str) -> list[str]:
    """Stop the lab's processes and remove everything it made; safe on a crashed lab."""
    check_name(name)
    removed: list[str] = []
    with contextlib.suppress(LabError):
        state = LabState.load(name)
        for pid in [*state.agents.values(), *([state.servers_pid] if state.servers_pid else [])]:
            if stop_process(pid, name):
                removed.append(f"process {pid}")
    removed += _teardown(name)
    directory = state_dir(name)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"state {directory}")
    return removed


def lab_down_all() -> list[str]:
    """`lab down --all`: every lab with a state file, then anything any lab left behind."""
    removed: list[str] = []
    for name in list_labs():
        removed += lab_down(name)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if AGENT_MODULE in cmd and "--lab" in cmd:
                lab = cmd[cmd.index("--lab") + 1]
                if stop_process(int(entry.name), lab):
                    removed.append(f"process {entry.name}")
    return removed + destroy_all_labs()


# --------------------------------------------------------------------------- status, exec


def lab_status(name: str) -> dict[str, Any]:
    state = LabState.load(name)
    nodes = []
    for node in state.plan.nodes:
        pid = state.agents.get(node.key)
        status = read_json(state.agent_status_path(node.key)) or {}
        nodes.append({"node": node.key, "ip": node.ip, "netns": node.netns,
                      "agent_pid": pid, "agent_running": bool(pid and _is_ours(pid, name)),
                      "revision": (status.get("last_sync") or {}).get("revision"),
                      "syncs": status.get("syncs"), "last_error": status.get("last_error"),
                      "flows": status.get("flows_seen")})
    return {"name": name, "directory": str(state.directory), "manifests": state.manifests_dir,
            "source": state.source, "case": state.case,
            "servers_running": bool(state.servers_pid and _is_ours(state.servers_pid, name)),
            "nodes": nodes,
            "pods": [{"ref": p.ref, "workload": p.workload, "ips": list(p.ips), "node": p.node,
                      "netns": p.netns} for p in state.plan.pods],
            "host_network": dict(state.plan.host_network),
            "hosts": [{"ref": h.ref, "kind": h.kind, "ips": list(h.ips), "netns": h.netns}
                      for h in state.plan.hosts]}


def resolve_target(plan: LabPlan, target: str) -> str:
    """The namespace `lab exec` enters: `NS/POD`, a workload id, `node:NAME`, a host."""
    if target.startswith("node:"):
        wanted = target[5:]
        for n in plan.nodes:
            if wanted in (n.key, n.name):
                return n.netns
        raise LabError(f"no node {wanted!r} (nodes: {', '.join(n.key for n in plan.nodes)})")
    for p in plan.pods:
        if target in (p.workload, p.ref):
            return p.netns
    try:
        return plan.netns_of(target)
    except KeyError:
        pass
    known = [p.workload for p in plan.pods] + list(plan.host_network) + [h.ref for h in plan.hosts]
    raise LabError(f"no workload {target!r} in lab {plan.name!r} (known: {', '.join(known)})")


def default_lab(name: str | None) -> str:
    """`name`, or the only lab that is up."""
    if name:
        return name
    labs = list_labs()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabError(f"no lab is up (nothing under {run_dir()})")
    raise LabError(f"several labs are up ({', '.join(labs)}); pick one with --name")


def lab_exec(name: str, target: str, argv: Sequence[str]) -> int:
    """Run `argv` inside the workload's namespace with our stdin/stdout; its exit status."""
    require_root("netstrata lab exec")
    if not argv:
        raise LabError("nothing to run: `netstrata lab exec NS/POD -- CMD ...`")
    netns = resolve_target(LabState.load(name).plan, target)
    try:
        return subprocess.call(list(argv), preexec_fn=enter_netns(netns))
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]}: command not found") from exc
