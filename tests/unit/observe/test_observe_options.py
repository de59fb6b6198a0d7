"""The whole `hubble observe` command line: selection defaults and refusals, output flags."""

from __future__ import annotations

import pytest
from observe_fixtures import T0

from netstrata.observe.filters import FlowFilter
from netstrata.observe.flow import Verdict
from netstrata.observe.options import DEFAULT_LAST, parse_observe_args


def test_plain_run_shows_last_20_compact() -> None:
    args = parse_observe_args([])
    assert (args.last, args.first, args.follow) == (DEFAULT_LAST, 0, False)
    assert args.allow == () and args.deny == ()
    assert args.render.output == "compact" and args.render.ip_translation


def test_follow_all_and_time_window_lift_the_default() -> None:
    assert parse_observe_args(["-f"]).last == 0
    assert parse_observe_args(["--follow"]).follow
    assert parse_observe_args(["--all"]).last == 0
    assert parse_observe_args(["--since", "1m"], now_ns=T0).last == 0
    assert parse_observe_args(["--last", "5"]).last == 5
    assert parse_observe_args(["--first", "3"]).first == 3


def test_until_is_ignored_when_following() -> None:
    args = parse_observe_args(["-f", "--until", "2026-05-01T10:00:00Z"])
    assert args.allow == ()


def test_filters_and_output_mix() -> None:
    args = parse_observe_args(["--from-pod", "shop/client", "-o", "json", "--not",
                               "--verdict", "FORWARDED", "--print-node-name", "--numeric",
                               "--time-format", "RFC3339"])
    assert args.allow == (FlowFilter(source_pod=("shop/client",)),)
    assert args.deny == (FlowFilter(verdict=(Verdict.FORWARDED,)),)
    r = args.render
    assert (r.output, r.print_node_name, r.ip_translation, r.time_format) == (
        "json", True, False, "RFC3339")
    assert parse_observe_args(["-ojsonpb"]).render.output == "jsonpb"
    assert parse_observe_args(["--output=tab"]).render.output == "table"
    assert not parse_observe_args(["--ip-translation=false"]).render.ip_translation


@pytest.mark.parametrize(("argv", "message"), [
    (["--first", "1", "--last", "1"], "--first and --last"),
    (["--first", "1", "--all"], "--first and --all"),
    (["--first", "1", "-f"], "--first and --follow"),
    (["--last", "1", "--all"], "--last and --all"),
    (["-o", "table", "-f"], "not compatible with follow"),
    (["-o", "yaml"], "invalid output format"),
    (["--last", "many"], "expected a number"),
    (["--follow=maybe"], "expected true or false"),
    (["--bogus"], "unknown flag"),
])
def test_refused_combinations(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_observe_args(argv)
