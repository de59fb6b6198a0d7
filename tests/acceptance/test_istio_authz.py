"""Every case of the shared istio-authz suite through the mesh evaluator, and `netstrata mesh
check` over the same file.

Each case asserts outcome and decided_by, plus audited / audited_by / dry_run /
ext_authz_called / upstream headers / wire status where the case states them (`judge`). The file
is a sample of a larger suite, so nothing here knows a case id.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netstrata.mesh.casefile import judge, load_cases, run_case


@pytest.fixture(scope="module")
def cases(acceptance):
    return load_cases(acceptance / "istio-authz" / "cases.yaml")


def test_every_manifest_of_the_suite_is_valid(cases):
    rejected = [(c.id, r) for c in cases for r in c.rejected]
    assert not rejected


def test_every_case_meets_its_expectation(cases):
    failures = []
    for case in cases:
        got = run_case(case)
        why = judge(case, got)
        if why is not None:
            failures.append(f"{case.id} ({case.title}): {why}\n    " + "\n    ".join(
                got.explanation))
        else:
            assert got.outcome == case.expect["outcome"]
            assert got.decided_by == case.expect["decided_by"]
    assert not failures, "\n".join(failures)


def test_cli_json_report_has_the_shared_result_shape(acceptance, cases):
    proc = subprocess.run(
        [sys.executable, "-m", "netstrata.cli.main", "mesh", "check",
         str(acceptance / "istio-authz" / "cases.yaml"), "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    report = json.loads(proc.stdout)
    assert (report["suite"], report["mode"]) == ("istio-authz", "reference")
    assert report["summary"] == {"passed": len(cases), "failed": 0, "skipped": 0,
                                 "probes": len(cases)}
    by_id = {c.id: c for c in cases}
    for record in report["cases"]:
        (probe,) = record["probes"]
        assert set(probe) >= {"step", "from", "to", "port", "protocol", "l7", "expect", "got",
                              "layer", "rule"}
        assert probe["layer"] == "mesh" and probe["step"] == 0
        assert probe["got"] == by_id[record["id"]].expect["outcome"]
        assert probe["rule"] == by_id[record["id"]].expect["decided_by"]
