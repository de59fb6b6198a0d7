"""`netstrata policy suggest|replay` as a user runs them: files and stdin in, YAML/JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_rollout_reference import DEFAULT_DENY, VISIBILITY, run_probe, seed_e, workload_docs, write

from netstrata.lab.from_manifests import lab_from_manifests
from netstrata.observe.flow import dumps, to_json_dict
from netstrata.policy.resolve import PolicyConfig
from netstrata.rollout.reference_flows import flows_of_walk


def netstrata(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netstrata.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def record(tmp_path: Path) -> tuple[Path, Path]:
    seed = seed_e()
    workloads = write(tmp_path / "workloads.yaml", workload_docs(seed))
    lab = lab_from_manifests(
        [workloads, write(tmp_path / "o.yaml", [DEFAULT_DENY, VISIBILITY])],
        PolicyConfig(audit_mode=True),
    )
    flows = tmp_path / "flows.jsonl"
    with flows.open("w", encoding="utf-8") as fh:
        for i, probe in enumerate(p for p in seed["probes"] if p["expect"]["verdict"] == "allowed"):
            src, req, ip, out = run_probe(lab, probe)
            for f in flows_of_walk(lab, src, ip, req, out, time_ns=10**18 + i * 1000):
                fh.write(dumps(to_json_dict(f)) + "\n")
    return workloads, flows


def test_suggest_stdin_and_dir_agree_and_replay_reports_json(tmp_path: Path) -> None:
    workloads, flows = record(tmp_path)
    out = netstrata(
        "policy",
        "suggest",
        "--flows",
        "-",
        "--manifests",
        str(workloads),
        stdin=flows.read_text(encoding="utf-8"),
    )
    assert out.returncode == 0, out.stderr
    assert "path: ^/orders$" in out.stdout and "io.kubernetes.pod.namespace: payments" in out.stdout
    d = tmp_path / "suggested"
    assert netstrata("policy", "suggest", "--flows", str(flows), "-o", str(d)).returncode == 0
    files = sorted(p.name for p in d.iterdir())
    assert files == [
        "api-backend-api-allow.yaml",
        "monitoring-prometheus-allow.yaml",
        "payments-payments-allow.yaml",
    ]
    assert (
        "---\n".join(
            p.read_text(encoding="utf-8") for p in sorted(d.iterdir(), key=lambda p: p.name)
        )
        == out.stdout
    )
    deny = write(tmp_path / "deny.yaml", [DEFAULT_DENY])
    rep = netstrata(
        "policy",
        "replay",
        "--flows",
        str(flows),
        "--manifests",
        str(workloads),
        "--manifests",
        str(deny),
        "--manifests",
        str(d),
        "-o",
        "json",
    )
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)["summary"] == {
        "newly-dropped": 0,
        "newly-allowed": 2,
        "unchanged": 0,
        "unmatched": 0,
    }


def test_a_bad_flow_line_names_file_and_line_and_writes_nothing(tmp_path: Path) -> None:
    _, flows = record(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(flows.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    n = len(flows.read_text(encoding="utf-8").splitlines()) + 1
    d = tmp_path / "out"
    out = netstrata("policy", "suggest", "--flows", str(bad), "-o", str(d))
    assert out.returncode != 0 and f"bad.jsonl:{n}: expected a Hubble flow" in out.stderr
    assert not d.exists()
