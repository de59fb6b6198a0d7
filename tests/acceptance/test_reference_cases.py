"""`netstrata policy check` (reference datapath) over the shared acceptance suites.

k8s-netpol must pass entirely; in scenarios every probe must agree with its expectation, the
denied-mesh ones included: the reference run judges them through the pure mesh evaluator (meshed
workloads by enrollment, the source's SPIFFE principal, tokens minted from the istio-authz
fixtures). A probe it cannot judge honestly is skipped with its reason, never passed.
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


def test_scenarios_agree_mesh_included(acceptance):
    report = _report(acceptance / "scenarios" / "cases.yaml")
    failed = [(c["id"], p["id"], p["expect"], p["got"], p["reason"]) for c in report["cases"]
              for p in c["probes"] if p["status"] == "failed"]
    failed += [(c["id"], c["reason"]) for c in report["cases"] if c["status"] == "failed" and not c["probes"]]
    assert not failed, "\n".join(map(str, failed))[:4000]
    mesh = [p for c in report["cases"] for p in c["probes"] if p["expect"] == "denied-mesh"]
    assert mesh, "the suite has denied-mesh probes"
    for p in mesh:
        assert p["status"] == "passed" and p["layer"] == "mesh" and p["rule"], p
    assert report["summary"]["skipped"] == 0


def _seed(acceptance, name):
    import yaml

    cases = yaml.safe_load((acceptance / "scenarios" / "cases.yaml").read_text())
    return next(c for c in cases if c["name"] == name)


def _write_scenario(tmp_path, case):
    import yaml

    f = tmp_path / "scenarios" / "cases.yaml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump([case]))
    return f


def test_a_wrong_mesh_expectation_fails(acceptance, tmp_path):
    case = _seed(acceptance, "seed-a-fraud-detection-grpc-multicluster")
    allowed = case["probes"][0]
    assert allowed["expect"]["mesh"]["peer_principal"] == "cluster-eu/ns/billing/sa/transactions-sa"
    allowed["expect"]["mesh"]["peer_principal"] = "cluster-eu/ns/billing/sa/ledger-sa"
    case["probes"][1]["expect"]["grpc"]["code"] = 16  # the denial is PERMISSION_DENIED (7)
    report = _report(_write_scenario(tmp_path, case))
    probes = report["cases"][0]["probes"]
    assert probes[0]["status"] == "failed" and "peer principal" in probes[0]["reason"]
    assert probes[1]["status"] == "failed" and "grpc-status 7" in probes[1]["reason"]


def test_jwt_probes_without_signing_keys_are_skipped_not_passed(acceptance, tmp_path):
    # No ../istio-authz/cases.yaml beside this copy: tokens cannot be minted honestly.
    report = _report(_write_scenario(tmp_path, _seed(acceptance, "seed-b-finance-jwt-scope")))
    by_id = {p["id"]: p for p in report["cases"][0]["probes"]}
    with_token = by_id["checkout POST scope=reports"]
    assert with_token["status"] == "skipped" and "istio-authz" in with_token["reason"]
    no_token = by_id["checkout POST without a token"]
    assert no_token["status"] == "passed" and no_token["got"] == "denied-mesh"
    assert by_id["reporting (analytics) POST scope=transactions"]["got"] == "dropped"


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
