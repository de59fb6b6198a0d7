"""`compile_http_rules`: the proxy's one-set-match evaluation gives the rule walk's answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.api.types import HeaderMatch, HTTPRule
from netstrata.policy.l7 import HAS_RE2
from netstrata.policy.l7.http import HTTPRequest, compile_http_rules, http_allowed

PATHS = ["/a", "/a/[0-9]+", "/a/.*", "/b", "/(a|b)/x", "/c?", ".*"]
METHODS = ["GET", "POST", "GET|PUT"]

rules_st = st.lists(
    st.builds(
        HTTPRule,
        method=st.sampled_from(["", *METHODS]),
        path=st.sampled_from(["", *PATHS]),
        headers=st.sampled_from([(), ("X-A: 1",), ("X-B",)]),
    ),
    max_size=8,
)
requests_st = st.builds(
    HTTPRequest,
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=st.sampled_from(["/a", "/a/1", "/a/x", "/b", "/a/x/y", "/", "/c", "/b/x", "/z"]),
    headers=st.sampled_from([(), (("x-a", "1"),), (("X-B", ""),), (("x-a", "2"),)]),
)


@settings(max_examples=300, deadline=None)
@given(rules=rules_st, req=requests_st)
def test_compiled_set_agrees_with_the_walk(rules: list[HTTPRule], req: HTTPRequest):
    walked = http_allowed(list(rules), req)  # a list takes the rule-by-rule walk
    assert compile_http_rules(tuple(rules)).evaluate(req) == walked
    assert http_allowed(tuple(rules), req) == walked


@pytest.mark.skipif(not HAS_RE2, reason="google-re2 not installed: no set matcher to test")
def test_first_path_match_whose_headers_fail_falls_through_to_later_rules():
    rules = (
        HTTPRule(path="/p/.*", headers=("X-A: 1",)),
        HTTPRule(method="POST"),
        HTTPRule(path="/p/q"),
    )
    compiled = compile_http_rules(rules)
    assert compiled.evaluate(HTTPRequest("GET", "/p/q")) == (True, 2, ())
    assert compiled.evaluate(HTTPRequest("POST", "/p/q")) == (True, 1, ())
    assert compiled.evaluate(HTTPRequest("GET", "/p/q", headers=(("x-a", "1"),))) == (True, 0, ())
    assert compiled.evaluate(HTTPRequest("GET", "/r")) == (False, None, ())


def test_compiled_once_per_rule_tuple():
    rules = (HTTPRule(path="/x"),)
    assert compile_http_rules(rules) is compile_http_rules(rules)
    assert compile_http_rules((HTTPRule(path="/x"),)) is not compile_http_rules(rules)


def test_header_actions_keep_the_full_walk():
    rules = (
        HTTPRule(path="/a", header_matches=(HeaderMatch("X-T", "v", mismatch="ADD"),)),
        HTTPRule(path="/a", header_matches=(HeaderMatch("X-U", "w", mismatch="LOG"),)),
    )
    verdict = compile_http_rules(rules).evaluate(HTTPRequest("GET", "/a"))
    assert verdict.allowed and verdict.rule_index == 0
    assert [a.name for a in verdict.header_actions] == ["X-T", "X-U"]
