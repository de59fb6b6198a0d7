"""The service-map server and its feeds, over a real loopback socket (no browser here; the page
itself is driven in real Chromium by tests/ui/)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from observe_fixtures import NODE, SYN, T0

from netstrata.observe.builders import flow_from_l34
from netstrata.observe.flow import Flow, dumps, to_json_dict
from netstrata.observe.store import FlowStore
from netstrata.observe.ui.feeds import FileFollower
from netstrata.observe.ui.query import parse_query, select
from netstrata.observe.ui.server import UIServer
from netstrata.policy.types import Direction


def _flow(t: int, dropped: bool = False) -> Flow:
    return flow_from_l34(
        SYN,
        event="drop" if dropped else "policy-verdict",
        direction=Direction.INGRESS,
        time_ns=t,
        node_name=NODE,
        drop_reason=133 if dropped else None,
    )


def test_query_parameters_are_observe_flags_in_order() -> None:
    q = parse_query("from-pod=shop/client&not=&verdict=FORWARDED&port=&q=--to-port+8080&last=5")
    assert q.argv == ("--from-pod=shop/client", "--not", "--verdict=FORWARDED", "--to-port", "8080")
    assert q.last == 5
    flows = [_flow(T0), _flow(T0 + 1, dropped=True)]
    assert [f.verdict.name for f in select(flows, q, T0)] == ["DROPPED"]


@pytest.mark.parametrize(
    "query,message",
    [
        ("bogus=1", "unknown filter 'bogus'"),
        ("last=0", "last: expected"),
        ("verdict=MAYBE", "invalid --verdict value: MAYBE"),
        ("from-pod=a&namespace=b", "cannot be combined"),
    ],
)
def test_bad_queries_say_what_is_wrong(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select([], parse_query(query), T0)


async def _get(port: int, target: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_server_answers_page_map_flows_and_errors() -> None:
    asyncio.run(_page_map_flows_and_errors())


async def _page_map_flows_and_errors() -> None:
    store = FlowStore()
    store.extend([_flow(T0), _flow(T0 + 1, dropped=True)])
    server = await UIServer(store, "test").start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        status, body = await _get(port, "/")
        assert status == 200 and b"<svg" in body and b"/static/app.js" in body
        status, body = await _get(port, "/api/map")
        assert sorted(e["verdict"] for e in json.loads(body)["edges"]) == ["dropped", "forwarded"]
        status, body = await _get(port, "/api/flows?verdict=DROPPED")
        rows = json.loads(body)["rows"]
        assert [(r["verdict"], r["drop_reason"]) for r in rows] == [("DROPPED", "POLICY_DENIED")]
        status, body = await _get(port, "/api/flows?verdict=nope")
        assert status == 400 and b"invalid --verdict value" in body
        assert (await _get(port, "/static/../../etc/passwd"))[0] == 404


def test_stream_sends_a_snapshot_then_new_matching_flows() -> None:
    asyncio.run(_stream_snapshot_then_new())


async def _stream_snapshot_then_new() -> None:
    store = FlowStore()
    store.add(_flow(T0))
    server = await UIServer(store).start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/stream?verdict=DROPPED HTTP/1.1\r\n\r\n")
        await writer.drain()

        async def next_update() -> dict[str, object]:
            while True:
                line = await reader.readline()
                if line.startswith(b"data: "):
                    return json.loads(line[6:])  # type: ignore[no-any-return]

        async with asyncio.timeout(5):
            first = await next_update()
            assert first["matched"] == 0 and first["total"] == 1
            store.add(_flow(T0 + 1, dropped=True))
            second = await next_update()
        assert second["matched"] == 1
        assert [e["verdict"] for e in second["map"]["edges"]] == ["dropped"]  # type: ignore[index]
        writer.close()
        store.close()  # ends the stream handler, so the server closes without waiting on it


def _append(path: Path, *flows: Flow) -> None:
    with path.open("a") as fh:
        fh.writelines(dumps(to_json_dict(f)) + "\n" for f in flows)


def test_file_follower_reads_appends_torn_lines_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "node.jsonl"
    _append(path, _flow(T0))
    store = FlowStore()
    follower = FileFollower([tmp_path], store)
    assert follower.load_existing() == 1
    line = dumps(to_json_dict(_flow(T0 + 1))) + "\n"
    with path.open("a") as fh:
        fh.write(line[:20])  # a writer caught mid-line
    assert follower.poll() == 0
    with path.open("a") as fh:
        fh.write(line[20:] + "not json\n")
    assert follower.poll() == 1 and follower.skipped == 1
    path.rename(tmp_path / "node.jsonl.1")  # rotation: a new file under the old name
    _append(path, _flow(T0 + 2, dropped=True))
    assert follower.poll() == 1
    assert [f.time_ns for f in store] == [T0, T0 + 1, T0 + 2]
