"""Agent-wide lab settings: `lab config KEY=VALUE` parsing and the file the agents watch."""

from __future__ import annotations

from pathlib import Path

import pytest

from netstrata.lab.agent_config import (
    AgentConfig,
    apply_setting,
    read_agent_config,
    write_agent_config,
)
from netstrata.lab.netlab import LabError


@pytest.mark.parametrize(
    ("setting", "audit"),
    [
        ("PolicyAuditMode=Enabled", True),
        ("PolicyAuditMode=Disabled", False),
        ("policy-audit-mode=true", True),
        ("policy_audit_mode=off", False),
    ],
)
def test_settings_cilium_and_flag_spellings(setting: str, audit: bool) -> None:
    assert apply_setting(AgentConfig(), setting) == AgentConfig(policy_audit_mode=audit)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("PolicyAuditMode=maybe", "expected Enabled or Disabled"),
        ("PolicyAuditMode", "expected PolicyAuditMode=Enabled|Disabled"),
        ("Debug=true", "expected PolicyAuditMode=Enabled|Disabled"),
    ],
)
def test_bad_settings_name_what_is_accepted(setting: str, message: str) -> None:
    with pytest.raises(LabError, match=message):
        apply_setting(AgentConfig(), setting)


def test_file_round_trip_and_missing_file_means_topology(tmp_path: Path) -> None:
    path = tmp_path / "agent-config.json"
    assert read_agent_config(path) == AgentConfig(policy_audit_mode=None)
    for value in (True, False):
        write_agent_config(path, AgentConfig(policy_audit_mode=value))
        assert read_agent_config(path) == AgentConfig(policy_audit_mode=value)


def test_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "agent-config.json"
    path.write_text('{"policy_audit_mode": "yes"}')
    with pytest.raises(LabError, match="policy_audit_mode: expected true, false or null"):
        read_agent_config(path)
    path.write_text("{not json")
    with pytest.raises(LabError, match="unreadable agent configuration"):
        read_agent_config(path)
