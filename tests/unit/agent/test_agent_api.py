"""The agent's local API over a real unix socket: flows with server-side filters, follow,
status, metrics; the proxy-side entry point `FlowHub.record`; export rotation.

No kernel here: flows are built with the observe builders (what the kernel and proxy emitters
produce) and recorded through the hub, exactly as the daemon does. The kernel-fed version of
these checks runs against a real lab in tests/datapath/test_lab_observe.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netstrata.agent import api_client
from netstrata.agent.api import AgentAPI, observe_argv
from netstrata.agent.flowhub import ExportConfig, FlowHub
from netstrata.datapath.drop_reasons import DropReason
from netstrata.observe import Verdict, flow_from_l7_http, flow_from_l34, from_json_dict
from netstrata.observe.builders import Packet
from netstrata.observe.flow import Endpoint, TCPFlags
from netstrata.observe.store import read_flow_log, rotated_paths
from netstrata.policy.types import Direction, Proto

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "observe"))
from observe_fixtures import API, CLIENT, HTTP_CONN, NODE, SYN, T0  # noqa: E402


def drop(t: int, dport: int = 8080) -> object:
    pkt = Packet(SYN.src_ip, SYN.dst_ip, Proto.TCP, 40000 + t, dport, TCPFlags(SYN=True),
                 source=CLIENT, destination=API)
    return flow_from_l34(pkt, event="drop", direction=Direction.INGRESS, time_ns=T0 + t,
                         node_name=NODE, drop_reason=DropReason.POLICY_DENIED)


def allowed(t: int) -> object:
    return flow_from_l34(SYN, event="policy-verdict", direction=Direction.INGRESS,
                         time_ns=T0 + t, node_name=NODE, match_type=2)


@pytest.fixture
def sock_dir() -> AsyncIterator[Path]:
    # unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer
    d = Path(tempfile.mkdtemp(prefix="nst-api-"))
    yield d  # type: ignore[misc]
    shutil.rmtree(d, ignore_errors=True)


async def serving(hub: FlowHub, path: Path) -> AgentAPI:
    api = AgentAPI(hub, lambda: {"node": NODE, "ready": True})
    await api.start_unix(path)
    return api


def test_query_parameters_become_observe_flags() -> None:
    assert observe_argv("from-pod=shop/client&verdict=DROPPED&not=&port=80") == [
        "--from-pod=shop/client", "--verdict=DROPPED", "--not", "--port=80"]


def test_flows_are_filtered_in_the_agent(sock_dir: Path) -> None:
    async def main() -> None:
        hub = FlowHub(NODE)
        for i in range(5):
            hub.record(drop(i))  # type: ignore[arg-type]
            hub.record(allowed(100 + i))  # type: ignore[arg-type]
        api = await serving(hub, sock_dir / "a.sock")
        try:
            body = await api_client.get(sock_dir / "a.sock", "/v1/flows?verdict=DROPPED&last=3")
            flows = [from_json_dict(json.loads(line)) for line in body.splitlines()]
            assert [f.time_ns for f in flows] == [T0 + 2, T0 + 3, T0 + 4]
            assert all(f.drop_reason_desc == "POLICY_DENIED" for f in flows)
            body = await api_client.get(sock_dir / "a.sock", "/v1/flows?type=policy-verdict")
            assert len(body.splitlines()) == 5
            with pytest.raises(api_client.AgentRequestError, match="verdict"):
                await api_client.get(sock_dir / "a.sock", "/v1/flows?verdict=MAYBE")
            with pytest.raises(api_client.AgentRequestError, match="no such path"):
                await api_client.get(sock_dir / "a.sock", "/v2/nothing")
            status = await api_client.get_json(sock_dir / "a.sock", "/v1/status")
            assert status["node"] == NODE
        finally:
            await api.close()

    asyncio.run(main())


def test_follow_streams_flows_recorded_later(sock_dir: Path) -> None:
    async def main() -> None:
        hub = FlowHub(NODE)
        hub.record(drop(0))  # type: ignore[arg-type]  (history: not sent with follow alone)
        api = await serving(hub, sock_dir / "f.sock")
        got: list[dict[str, object]] = []

        async def follow() -> None:
            async for obj in api_client.stream_lines(sock_dir / "f.sock",
                                                     "/v1/flows?follow=true&verdict=DROPPED"):
                got.append(obj)
                if len(got) == 2:
                    return

        task = asyncio.get_running_loop().create_task(follow())  # noqa: TID251 (test)
        while hub.store.statistics().followers == 0:  # noqa: ASYNC110 (polls the store)
            await asyncio.sleep(0.01)
        hub.record(allowed(1))  # type: ignore[arg-type]  filtered out by the agent
        hub.record(drop(2))  # type: ignore[arg-type]
        # A proxy L7 verdict goes through the same entry point.
        hub.record(flow_from_l7_http(HTTP_CONN, method="GET", url="http://api/x", time_ns=T0 + 3,
                                     node_name="", verdict=Verdict.DROPPED))
        await asyncio.wait_for(task, 5)
        flows = [from_json_dict(o) for o in got]
        assert [f.time_ns for f in flows] == [T0 + 2, T0 + 3]
        assert flows[1].l7 is not None and flows[1].node_name == NODE  # filled by the hub
        await api.close()

    asyncio.run(main())


def test_metrics_endpoint_counts_recorded_flows(sock_dir: Path) -> None:
    async def main() -> None:
        hub = FlowHub(NODE)
        api = await serving(hub, sock_dir / "m.sock")
        try:
            for i in range(3):
                hub.record(drop(i))  # type: ignore[arg-type]
            text = (await api_client.get(sock_dir / "m.sock", "/metrics")).decode()
        finally:
            await api.close()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        key = ("hubble_drop_total", (("direction", "ingress"), ("protocol", "TCP"),
                                     ("reason", "POLICY_DENIED")))
        assert samples[key] == 3

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reads_the_socket(sock_dir: Path) -> None:
    """A real HTTP client (curl --unix-socket) against the agent's server."""

    async def main() -> str:
        hub = FlowHub(NODE)
        hub.record(drop(0))  # type: ignore[arg-type]
        api = await serving(hub, sock_dir / "c.sock")
        try:
            proc = await asyncio.create_subprocess_exec(
                "curl", "-sS", "--fail", "--unix-socket", str(sock_dir / "c.sock"),
                "http://agent/v1/flows?verdict=DROPPED", stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
            assert proc.returncode == 0
            return out.decode()
        finally:
            await api.close()

    line = json.loads(asyncio.run(main()))
    assert line["flow"]["verdict"] == "DROPPED" and line["node_name"] == NODE


def test_export_rotates_by_size_and_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    hub = FlowHub(NODE, export=ExportConfig(path, max_bytes=4000, backups=2))
    for i in range(60):
        hub.record(drop(i))  # type: ignore[arg-type]
    hub.close()
    files = [p for p in rotated_paths(path, 5) if p.exists()]
    assert files == [path.with_name("flows.jsonl.2"), path.with_name("flows.jsonl.1"), path]
    assert all(p.stat().st_size <= 4000 for p in files)
    kept = read_flow_log(path, backups=2)
    times = [f.time_ns - T0 for f in kept]
    assert times == sorted(times) and times[-1] == 59 and times[0] > 0  # oldest rotated away
    assert not path.with_name("flows.jsonl.3").exists()


def test_enricher_fills_only_missing_fields() -> None:
    hub = FlowHub(NODE)
    bare = flow_from_l34(Packet("10.0.0.1", "10.0.0.2", Proto.TCP, 1, 2,
                                source=Endpoint(identity=2), destination=API),
                         event="drop", direction=Direction.INGRESS, time_ns=T0, node_name=NODE,
                         drop_reason=DropReason.POLICY_DENIED)
    stored = hub.record(bare)
    assert stored.source is not None and stored.source.labels == ("reserved:world",)
    assert stored.destination == API


def test_all_with_follow_replays_history_first() -> None:
    """`hubble observe --all -f`: everything kept, then new flows; `-f` alone starts at now."""
    from netstrata.agent.api import parse_flows_query, select_history

    hub = FlowHub(node_name=NODE)
    for t in range(3):
        hub.record(drop(t))  # type: ignore[arg-type]
    assert len(select_history(hub, parse_flows_query("all=true&follow=true", T0))) == 3
    assert select_history(hub, parse_flows_query("follow=true", T0)) == []
