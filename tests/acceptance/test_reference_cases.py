"""`netstrata policy check` (reference datapath) over the shared acceptance suites.

k8s-netpol must pass entirely; in scenarios every probe whose expectation is allowed, dropped,
denied-l7, audited or app-error must agree, and denied-mesh probes must be reported skipped (never
passed) until the mesh layer judges them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netstrata.lab.cases import load_case_file
from netstrata.lab.reference_check import check_report


def _report(path):
    suite, scenarios = load_case_file(path)
    return check_report(suite, scenarios)


def test_k8s_netpol_suite_passes(acceptance):
    report = _report(acceptance / "k8s-netpol" / "cases.yaml")
    failed = [(c["id"], c["reason"], [p for p in c["probes"] if p["status"] == "failed"][:3])
              for c in report["cases"] if c["status"] == "failed"]
    assert not failed, json.dumps(failed, indent=1, default=str)[:4000]
    assert report["summary"]["passed"] == len(report["cases"])


def test_scenarios_agree_except_mesh(acceptance):
    report = _report(acceptance / "scenarios" / "cases.yaml")
    failed = [(c["id"], p["id"], p["expect"], p["got"], p["reason"]) for c in report["cases"]
              for p in c["probes"] if p["status"] == "failed"]
    failed += [(c["id"], c["reason"]) for c in report["cases"] if c["status"] == "failed" and not c["probes"]]
    assert not failed, "\n".join(map(str, failed))[:4000]
    for c in report["cases"]:
        for p in c["probes"]:
            if p["expect"] == "denied-mesh":
                assert p["status"] == "skipped" and p["reason"]


def test_result_shape_and_exit_code(acceptance, tmp_path):
    path = acceptance / "k8s-netpol" / "cases.yaml"
    proc = subprocess.run([sys.executable, "-m", "netstrata.cli.main", "policy", "check", str(path),
                           "-o", "json", "--case", "tcp-default-deny-ingress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["suite"] == "k8s-netpol" and report["mode"] == "reference"
    case = report["cases"][0]
    assert case["id"] == "tcp-default-deny-ingress" and case["status"] == "passed"
    probe = case["probes"][0]
    for field in ("step", "from", "to", "port", "protocol", "l7", "expect", "got", "layer", "rule"):
        assert field in probe
    assert set(report["summary"]) >= {"passed", "failed", "skipped", "probes"}


@pytest.mark.parametrize("verdict", ["dropped"])
def test_a_wrong_expectation_fails_with_exit_1(acceptance, tmp_path, verdict):
    import yaml

    cases = yaml.safe_load((acceptance / "k8s-netpol" / "cases.yaml").read_text())
    case = next(c for c in cases if c["id"] == "tcp-default-deny-ingress")
    case["probes"][0]["denied"] = []  # now claims everything connects: must fail
    f = tmp_path / "cases.yaml"
    f.write_text(yaml.safe_dump([case]))
    proc = subprocess.run([sys.executable, "-m", "netstrata.cli.main", "policy", "check", str(f), "-o", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["summary"]["failed"] == 1
