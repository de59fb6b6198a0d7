"""Smoke tests of `netstrata bench observe` (stages only: no root) and `bench mesh`, in their
smallest form: every stage and lane runs and the report has its shape (ratios, targets, JSON
keys). No timing is asserted; speed belongs to the benches themselves. The mesh lanes are real
TLS 1.3 over loopback, with a forked server process, as in the bench."""

from __future__ import annotations

import json

from netstrata.bench import mesh, observe
from netstrata.cli.main import main


def test_observe_stages_report_every_stage_with_its_target() -> None:
    cfg = observe.ObserveBenchConfig(stage_events=30, kernel=False)
    report = observe.run(cfg, lambda _msg: None)

    names = [s.stage for s in report.stages]
    # the eager per-event path (before lazy flows), the bulk path the agent runs, and the
    # cost a reader pays to build a stored flow
    assert any(n.startswith("whole path") for n in names)
    assert any(n.startswith("whole bulk path") for n in names)
    assert names[-1].startswith("reader: build")
    assert all(s.events >= 30 and s.rate > 0 for s in report.stages)
    assert report.rates == () and "end to end skipped" in report.notes[0]
    text = observe.render_text(report)
    assert "target >= 200k/s" in text and "Flow construction" in text
    doc = observe.render_json(report)
    assert doc["target_events_per_s"] == observe.TARGET_EVENTS_PER_S
    assert {s["stage"] for s in doc["stages"]} == set(names)
    assert observe.render_markdown(report).startswith("| measure | result |")


def test_observe_cli_json_stages_only(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["bench", "observe", "--stages-only", "--events", "9", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["stages"]) >= 6
    assert doc["keeps_up"] == {"read": None, "agent": None, "agent-eager": None}


def test_synthetic_events_decode_into_the_three_kinds() -> None:
    from netstrata.datapath.maps import decode_flow_event

    s = observe._setting()
    kinds = [decode_flow_event(r).type for r in observe.synthetic_events(s, 3)]
    assert kinds == [1, 5, 4]  # drop, policy verdict, trace


def test_mesh_bench_measures_every_lane_and_prints_ratios() -> None:
    cfg = mesh.MeshBenchConfig(
        seconds=0.05, connections=3, decisions=3, eval_seconds=0.0, client_cpu=None, server_cpu=None
    )
    report = mesh.run(cfg, lambda _msg: None)

    assert [r.lane for r in report.lanes] == list(mesh.LANES)
    assert all(r.requests > 0 and r.p99_us >= r.p50_us > 0 for r in report.lanes)
    assert report.ratio("plaintext") == 1.0 and report.ratio("mtls+authz") is not None
    assert [s.lane for s in report.setup] == ["plaintext", "mtls"]
    assert report.setup_ratio() is not None
    assert [(e.policies, e.decisions, e.outcome) for e in report.evaluator] == [
        (10, 3, "ALLOW"),
        (100, 3, "ALLOW"),
    ]
    text = mesh.render_text(report)
    assert "of plaintext" in text and "mTLS vs plaintext" in text
    doc = mesh.render_json(report)
    assert {lane["lane"] for lane in doc["lanes"]} == set(mesh.LANES)


def test_the_authz_lane_denies_what_its_policies_do_not_allow() -> None:
    from netstrata.mesh import Peer, evaluate

    policies = mesh.authorization_policies(10)
    req = mesh.request_of(b"GET /other HTTP/1.1\r\nHost: httpbin:8000\r\n\r\n", 8000)
    peer = Peer(mtls=True, principal=mesh.SOURCE.principal)
    assert not evaluate(policies, req, peer, now=0.0).allowed
    assert evaluate(policies, mesh.request_of(mesh.REQUEST, 8000), peer, now=0.0).allowed
