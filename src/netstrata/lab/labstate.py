"""The on-disk record of a running lab: `<run dir>/<lab>/state.json` and its neighbours.

`lab up` writes it, the agents and `lab status/exec/down` read it. It holds the lab plan
(every namespace, interface and pin directory, so `lab down` knows what to remove), where the
topology and the watched manifests are, and the ids of the processes the lab started (so
`lab down` stops exactly those, after checking each id still runs our program).

Layout of a lab's directory:

    state.json          this record
    source.yaml|source/ a copy of the topology the lab was built from (fixed at `lab up`)
    manifests/          the watched policy directory (unless `--manifests DIR` was given)
    servers.json        the workload servers' configuration; servers.log
    agent-config.json   agent-wide settings (`lab config`, `lab/agent_config.py`)
    agents/<node>.json  each agent's status (revision, last sync, last error); <node>.log
    agents/<node>.sock  each agent's local API (flows, status, metrics; docs/observe.md)
    flows/<node>.jsonl  each agent's flows (Hubble JSON lines, rotated by size)
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from netstrata.lab.netlab import LabError, LabPlan

RUN_DIR_ENV: Final = "NETSTRATA_RUN_DIR"
DEFAULT_RUN_DIR: Final = Path("/run/netstrata")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise LabError(f"lab name {name!r}: use 1-31 lowercase letters, digits and dashes")
    return name


def state_dir(name: str) -> Path:
    return run_dir() / check_name(name)


def node_file_name(node_key: str) -> str:
    """`cluster/node` as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", node_key.replace("/", "."))


@dataclass
class LabState:
    name: str
    plan: LabPlan
    source: str
    """The copy of the topology inside the lab directory."""
    case: str | None
    manifests_dir: str
    servers_pid: int | None = None
    agents: dict[str, int] = field(default_factory=dict)
    """Node key -> agent process id."""
    created: float = field(default_factory=time.time)

    @property
    def directory(self) -> Path:
        return state_dir(self.name)

    def agent_status_path(self, node_key: str) -> Path:
        return self.directory / "agents" / f"{node_file_name(node_key)}.json"

    def agent_log_path(self, node_key: str) -> Path:
        return self.directory / "agents" / f"{node_file_name(node_key)}.log"

    def agent_api_path(self, node_key: str) -> Path:
        """The agent's local API socket (docs/observe.md)."""
        return self.directory / "agents" / f"{node_file_name(node_key)}.sock"

    @property
    def agent_config_path(self) -> Path:
        """Agent-wide settings every agent of the lab watches (`lab/agent_config.py`)."""
        return self.directory / "agent-config.json"

    @property
    def mesh_ca_dir(self) -> Path:
        """The mesh's CAs, one directory per trust domain (shared by the node agents)."""
        return self.directory / "mesh-ca"

    def flows_path(self, node_key: str) -> Path:
        return self.directory / "flows" / f"{node_file_name(node_key)}.jsonl"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "plan": self.plan.to_dict(), "source": self.source,
                "case": self.case, "manifests_dir": self.manifests_dir,
                "servers_pid": self.servers_pid, "agents": dict(self.agents),
                "created": self.created}

    def save(self) -> None:
        """Write atomically (temporary file + rename): readers never see half a record."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / "state.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(self.directory / "state.json")

    @classmethod
    def load(cls, name: str) -> LabState:
        path = state_dir(name) / "state.json"
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise LabError(f"no lab {name!r} is up (no {path})") from exc
        except (OSError, ValueError) as exc:
            raise LabError(f"lab {name!r}: unreadable state {path}: {exc}") from exc
        return cls(d["name"], LabPlan.from_dict(d["plan"]), d["source"], d.get("case"),
                   d["manifests_dir"], d.get("servers_pid"), dict(d.get("agents", {})),
                   float(d.get("created", 0)))


def list_labs() -> list[str]:
    root = run_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
