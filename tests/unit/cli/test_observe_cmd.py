"""`netstrata observe` without a lab: flag splitting, the agent query it sends, `--flows FILE`."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from netstrata.cli.main import main
from netstrata.cli.observe_cmd import _params, split_own
from netstrata.datapath.drop_reasons import DropReason
from netstrata.observe import FlowLogWriter, flow_from_l34
from netstrata.policy.types import Direction

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "observe"))
from observe_fixtures import NODE, SYN, T0  # noqa: E402


def test_own_flags_are_split_from_hubbles() -> None:
    own, rest = split_own(["--name", "lab1", "--verdict", "DROPPED", "--node=n1", "-f"])
    assert own == {"name": "lab1", "node": "n1"}
    assert rest == ["--verdict", "DROPPED", "-f"]


def test_query_keeps_filters_and_selection_and_leaves_printing_out() -> None:
    argv = ["-n", "shop", "--verdict=DROPPED", "-f", "-o", "json", "--not", "--pod", "shop/x",
            "--last", "5", "--print-node-name", "-t", "drop"]
    assert _params(argv) == [("namespace", "shop"), ("verdict", "DROPPED"), ("follow", ""),
                             ("not", ""), ("pod", "shop/x"), ("last", "5"), ("type", "drop")]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["observe", *argv])
    return code, out.getvalue()


def test_flows_file_is_filtered_and_printed(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    with FlowLogWriter(path) as w:
        for i, (event, reason) in enumerate([("drop", DropReason.POLICY_DENIED),
                                             ("policy-verdict", None), ("drop", DropReason.POLICY_DENY)]):
            w.write(flow_from_l34(SYN, event=event, direction=Direction.INGRESS,  # type: ignore[arg-type]
                                  time_ns=T0 + i, node_name=NODE, drop_reason=reason))
    code, out = run("--flows", str(path), "--type", "drop", "-o", "json")
    assert code == 0
    lines = [json.loads(x)["flow"] for x in out.splitlines()]
    assert [f["drop_reason_desc"] for f in lines] == ["POLICY_DENIED", "POLICY_DENY"]
    code, out = run("--flows", str(path), "--last", "1")
    assert code == 0
    [line] = out.splitlines()
    assert line.endswith("Policy denied by denylist DROPPED (TCP Flags: SYN)")  # the newest


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    assert run("--flows", str(tmp_path / "missing.jsonl"))[0] == 2
    assert run("--flows", str(tmp_path / "x"), "-f")[0] == 2
    assert run("--verdict", "MAYBE")[0] == 2
