"""`netstrata ui --lab NAME` against a running kernel lab, in real headless Chromium.

Real traffic: `client` may reach `server:8080` and `other` may not (the policy admits only
`app: client`), so the kernel forwards one connection and drops the other. The page must show
a forwarded edge client -> server and a dropped edge other -> server, and filtering the flow
table by verdict must change its rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import edges, headless_chromium, rows, set_filter, ui_process, wait_for
from labkit import SERVER_ADMITS_CLIENT, SERVER_CLIENT_OTHER, kernel_lab_missing, running_lab

LAB_MISSING = kernel_lab_missing()
pytestmark = pytest.mark.skipif(bool(LAB_MISSING), reason=LAB_MISSING or "")

WORKLOADS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n---" + SERVER_CLIENT_OTHER


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("NETSTRATA_CACHE_DIR", str(tmp_path / "bpfcache"))
    topo = tmp_path / "topology"
    topo.mkdir()
    files = {"workloads.yaml": WORKLOADS, "policy.yaml": SERVER_ADMITS_CLIENT}
    with running_lab(topo, files, "ui") as state:
        yield state


def _connects(state: object, pod: str) -> bool:
    from netstrata.netns import socket_in_netns

    plan = state.plan  # type: ignore[attr-defined]
    server = next(p.ip for p in plan.pods if p.workload == "default/server")
    sock = socket_in_netns(plan.netns_of(f"default/{pod}"))
    sock.settimeout(1.0)
    try:
        sock.connect((server, 8080))
        sock.sendall(b"hello\n")
        return sock.recv(64) == b"hello\n"
    except (TimeoutError, OSError):
        return False
    finally:
        sock.close()


def _edge(drawn: list[dict[str, str]], src: str, dst: str, verdict: str) -> bool:
    return any(
        e["source"].endswith(f"/default/{src}")
        and e["destination"].endswith(f"/default/{dst}")
        and e["verdict"] == verdict
        for e in drawn
    )


def test_lab_map_shows_allowed_and_dropped_edges_and_filters(lab: object) -> None:
    assert _connects(lab, "client")
    assert not _connects(lab, "other")
    name = lab.name  # type: ignore[attr-defined]
    with ui_process("--lab", name) as url, headless_chromium() as driver:
        driver.get(url + "/")
        wait_for(
            lambda: (
                _edge(edges(driver), "client", "server", "forwarded")
                and _edge(edges(driver), "other", "server", "dropped")
            ),
            timeout=10,
            what="a forwarded client->server and a dropped other->server edge",
        )
        everything = rows(driver)
        assert {r["cls"] for r in everything} >= {"forwarded", "dropped"}
        set_filter(driver, "verdict", "DROPPED")
        dropped = wait_for(lambda: (r := rows(driver)) != everything and r, what="filtered rows")
        # DENIED is how the table words a policy-verdict drop (Hubble's getVerdict)
        assert {r["cls"] for r in dropped} == {"dropped"}
        assert {r["verdict"] for r in dropped} <= {"DROPPED", "DENIED"}
        assert all(r["source"].startswith("default/other") for r in dropped)
        assert not _edge(edges(driver), "client", "server", "forwarded")
        if shot := os.environ.get("NETSTRATA_UI_SCREENSHOT"):
            set_filter(driver, "verdict", "any")
            driver.save_screenshot(shot)
