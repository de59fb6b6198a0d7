"""A running lab's agent-wide settings: `<lab dir>/agent-config.json`.

The counterpart of Cilium's agent options that can change at run time
(`cilium config PolicyAuditMode=Enabled`): `netstrata lab config` writes the file, `lab up
--policy-audit-mode` seeds it, and every agent of the lab re-reads it on change (it watches it
beside its manifests directory) and re-applies its policy, so turning audit mode off switches
every endpoint to enforcement without restarting anything.

A setting missing from the file means "what the topology says" (a case file's
`agent_config`), so an untouched lab behaves as it was defined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from netstrata.lab.netlab import LabError

CONFIG_FILE: Final = "agent-config.json"

_KEYS: Final = {
    "policyauditmode": "policy_audit_mode",
    "policy-audit-mode": "policy_audit_mode",
    "policy_audit_mode": "policy_audit_mode",
}
"""Accepted spellings: Cilium's `cilium config` key and its `--policy-audit-mode` flag."""
_TRUE: Final = frozenset({"enabled", "true", "yes", "on", "1"})
_FALSE: Final = frozenset({"disabled", "false", "no", "off", "0"})


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Agent-wide settings of one lab; None means "as the topology defines it"."""

    policy_audit_mode: bool | None = None
    """Report would-be policy drops as AUDIT and forward them, on every endpoint."""


def read_agent_config(path: Path) -> AgentConfig:
    """The settings in `path` (no file: all defaults). Raises LabError on a broken file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return AgentConfig()
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: unreadable agent configuration: {exc}") from exc
    audit = data.get("policy_audit_mode") if isinstance(data, dict) else "not an object"
    if audit is not None and not isinstance(audit, bool):
        raise LabError(f"{path}: policy_audit_mode: expected true, false or null, found {audit!r}")
    return AgentConfig(policy_audit_mode=audit)


def write_agent_config(path: Path, config: AgentConfig) -> None:
    """Write atomically, so an agent polling the file never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"policy_audit_mode": config.policy_audit_mode}) + "\n")
    tmp.replace(path)


def apply_setting(config: AgentConfig, setting: str) -> AgentConfig:
    """`config` with one `KEY=VALUE` applied (`PolicyAuditMode=Enabled`, `policy-audit-mode=false`).

    Raises:
        LabError: unknown key or value, naming what is accepted.
    """
    key, sep, value = setting.partition("=")
    field = _KEYS.get(key.strip().lower())
    if not sep or field is None:
        raise LabError(
            f"{setting!r}: expected PolicyAuditMode=Enabled|Disabled "
            "(or policy-audit-mode=true|false)"
        )
    v = value.strip().lower()
    if v not in _TRUE | _FALSE:
        raise LabError(
            f"{setting!r}: {key}: expected Enabled or Disabled (true/false), found {value!r}"
        )
    return AgentConfig(policy_audit_mode=v in _TRUE)
