"""HTTP L7 rules as Envoy applies Cilium's `rules.http` (reference §1.5.1, scenarios README)."""

from __future__ import annotations

import pytest

from netstrata.api.types import HeaderMatch, HTTPRule
from netstrata.policy.l7 import HAS_RE2
from netstrata.policy.l7.http import (
    HeaderAction,
    HTTPRequest,
    apply_header_actions,
    compile_http_rule,
    http_allowed,
    http_rule_matches,
)


@pytest.fixture(params=["python", "re2"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "re2" and not HAS_RE2:
        pytest.skip("google-re2 is not installed; the python engine covers these cases")
    return str(request.param)


def matches(rule: HTTPRule, req: HTTPRequest, engine: str, secrets=None) -> bool:
    return compile_http_rule(rule, engine).matches(req, secrets)


def allowed(rules: list[HTTPRule], req: HTTPRequest, engine: str, secrets=None):
    return http_allowed([compile_http_rule(r, engine) for r in rules], req, secrets)


def get(path: str, **kw) -> HTTPRequest:
    return HTTPRequest(kw.pop("method", "GET"), path, **kw)


# ---------------------------------------------------------------- path: whole-value match


@pytest.mark.parametrize(
    "pattern,path,expected",
    [
        ("/public", "/public", True),
        ("/public", "/public?x=1", False),  # :path includes the query string
        ("/public", "/public/a", False),
        ("/public", "/x/public", False),
        ("/public$", "/public", True),  # "/public$" is the same as "/public"
        ("/public$", "/public?x=1", False),
        ("^/public$", "/public", True),
        ("/public.*", "/public?x=1", True),
        ("/public(\\?.*)?", "/public?x=1", True),
        ("/", "/", True),
        ("/", "/anything", False),
        ("/$", "/", True),
        ("/api/v[0-9]+/users", "/api/v12/users", True),
        ("/api/v[0-9]+/users", "/api/v/users", False),
        ("/a|/b", "/b", True),  # alternation is whole-value too
        ("/a|/b", "/ab", False),
        ("/[[:alpha:]]+", "/abc", True),  # POSIX class: RE2 meaning, not Python's
        ("/[[:alpha:]]+", "/a1", False),
        ("/x{,2}", "/x{,2}", True),  # `{,n}` is literal in RE2
        ("/x{,2}", "/xx", False),
    ],
)
def test_path_is_anchored_at_both_ends(engine: str, pattern: str, path: str, expected: bool):
    assert matches(HTTPRule(path=pattern), get(path), engine) is expected


def test_method_is_case_sensitive(engine: str):
    rule = HTTPRule(method="GET")
    assert matches(rule, get("/", method="GET"), engine)
    assert not matches(rule, get("/", method="get"), engine)
    assert not matches(rule, get("/", method="GETX"), engine)
    assert matches(HTTPRule(method="GET|HEAD"), get("/", method="HEAD"), engine)
    assert matches(HTTPRule(method="(?i)get"), get("/", method="GeT"), engine)


def test_host_dot_is_a_metacharacter(engine: str):
    rule = HTTPRule(host="foo.bar.com")
    assert matches(rule, get("/", host="foo.bar.com"), engine)
    assert matches(rule, get("/", host="fooXbar.com"), engine)
    assert not matches(HTTPRule(host=r"foo\.bar\.com"), get("/", host="fooXbar.com"), engine)


def test_host_is_the_authority_verbatim_port_included(engine: str):
    rule = HTTPRule(host="api.example.com")
    assert not matches(rule, get("/", host="api.example.com:8080"), engine)
    assert matches(HTTPRule(host=r"api\.example\.com(:8080)?"),
                   get("/", host="api.example.com:8080"), engine)
    assert not matches(rule, get("/", host=None), engine)  # no authority at all
    assert not matches(rule, get("/", host="API.example.com"), engine)


def test_absent_and_empty_fields_match_anything(engine: str):
    for rule in (HTTPRule(), HTTPRule(path="", method="", host="")):
        assert matches(rule, get("/x?y", method="DELETE", host=None), engine)


def test_fields_in_one_rule_are_anded(engine: str):
    rule = HTTPRule(method="GET", path="/api", host="svc")
    assert matches(rule, get("/api", host="svc"), engine)
    assert not matches(rule, get("/api", host="other"), engine)
    assert not matches(rule, get("/api", method="POST", host="svc"), engine)
    assert not matches(rule, get("/apix", host="svc"), engine)


# ---------------------------------------------------------------- headers


def test_header_string_needs_the_exact_value(engine: str):
    rule = HTTPRule(headers=("X-Very-Secret-Token: 42",))
    assert matches(rule, get("/", headers=(("X-Very-Secret-Token", "42"),)), engine)
    assert not matches(rule, get("/", headers=(("X-Very-Secret-Token", "420"),)), engine)
    assert not matches(rule, get("/", headers=(("X-Very-Secret-Token", "4"),)), engine)
    assert not matches(rule, get("/"), engine)


def test_header_names_are_case_insensitive_values_are_not(engine: str):
    rule = HTTPRule(headers=("x-token: Abc",))
    assert matches(rule, get("/", headers=(("X-TOKEN", "Abc"),)), engine)
    assert not matches(rule, get("/", headers=(("x-token", "abc"),)), engine)


def test_header_value_is_not_a_regex(engine: str):
    rule = HTTPRule(headers=("X-Id: a.c",))
    assert matches(rule, get("/", headers=(("X-Id", "a.c"),)), engine)
    assert not matches(rule, get("/", headers=(("X-Id", "abc"),)), engine)


def test_header_split_at_first_space_colon_optional(engine: str):
    with_colon = HTTPRule(headers=("X-Msg: hello world",))
    without = HTTPRule(headers=("X-Msg hello world",))
    req = get("/", headers=(("X-Msg", "hello world"),))
    assert matches(with_colon, req, engine)
    assert matches(without, req, engine)


def test_bare_header_name_is_presence(engine: str):
    rule = HTTPRule(headers=("X-Trace",))
    assert matches(rule, get("/", headers=(("x-trace", ""),)), engine)
    assert matches(rule, get("/", headers=(("X-Trace", "anything"),)), engine)
    assert not matches(rule, get("/", headers=(("X-Other", "1"),)), engine)


def test_repeated_header_is_compared_comma_joined(engine: str):
    rule = HTTPRule(headers=("X-A: 1,2",))
    assert matches(rule, get("/", headers=(("X-A", "1"), ("x-a", "2"))), engine)
    assert not matches(HTTPRule(headers=("X-A: 1",)),
                       get("/", headers=(("X-A", "1"), ("X-A", "2"))), engine)


def test_pseudo_header_names_refer_to_request_fields(engine: str):
    rule = HTTPRule(headers=(":authority: svc:80",))
    assert matches(rule, get("/", host="svc:80"), engine)
    assert not matches(rule, get("/", host="svc"), engine)


def test_all_header_conditions_must_hold(engine: str):
    rule = HTTPRule(headers=("A: 1", "B"))
    assert matches(rule, get("/", headers=(("A", "1"), ("B", "x"))), engine)
    assert not matches(rule, get("/", headers=(("A", "1"),)), engine)


# ---------------------------------------------------------------- headerMatches


def test_header_match_without_mismatch_fails_the_rule(engine: str):
    rule = HTTPRule(header_matches=(HeaderMatch("X-Key", value="v"),))
    assert matches(rule, get("/", headers=(("x-key", "v"),)), engine)
    assert not matches(rule, get("/", headers=(("x-key", "w"),)), engine)
    presence = HTTPRule(header_matches=(HeaderMatch("X-Key"),))
    assert matches(presence, get("/", headers=(("X-Key", "w"),)), engine)
    assert not matches(presence, get("/"), engine)


@pytest.mark.parametrize("action", ["LOG", "ADD", "REPLACE"])
def test_mismatch_action_keeps_the_rule_and_reports(engine: str, action: str):
    rule = HTTPRule(path="/", header_matches=(HeaderMatch("X-Key", value="v", mismatch=action),))
    verdict = allowed([rule], get("/", headers=(("X-Key", "bad"),)), engine)
    assert verdict.allowed and verdict.rule_index == 0
    assert verdict.header_actions == (HeaderAction(0, "X-Key", action, "v", "bad", False),)
    absent = allowed([rule], get("/"), engine)
    assert absent.allowed
    assert absent.header_actions == (HeaderAction(0, "X-Key", action, "v", None, False),)
    ok = allowed([rule], get("/", headers=(("X-Key", "v"),)), engine)
    assert ok == (True, 0, ())


def test_delete_acts_only_on_a_present_wrong_value(engine: str):
    rule = HTTPRule(header_matches=(HeaderMatch("X-Key", value="v", mismatch="DELETE"),))
    wrong = allowed([rule], get("/", headers=(("X-Key", "bad"),)), engine)
    assert wrong.allowed
    assert [a.action for a in wrong.header_actions] == ["DELETE"]
    assert allowed([rule], get("/"), engine) == (True, 0, ())
    presence = HTTPRule(header_matches=(HeaderMatch("X-Key", mismatch="DELETE"),))
    assert allowed([presence], get("/"), engine) == (True, 0, ())


def test_mismatch_action_does_not_rescue_other_fields(engine: str):
    rule = HTTPRule(path="/ok", header_matches=(HeaderMatch("X-Key", value="v", mismatch="LOG"),))
    assert allowed([rule], get("/no"), engine) == (False, None, ())


def test_apply_header_actions():
    headers = (("X-Key", "bad"), ("Other", "1"), ("x-key", "worse"))
    add = HeaderAction(0, "X-Key", "ADD", "v", "bad,worse", False)
    assert apply_header_actions(headers, [add])[-1] == ("X-Key", "v")
    delete = HeaderAction(0, "X-Key", "DELETE", "v", "bad,worse", False)
    assert apply_header_actions(headers, [delete]) == (("Other", "1"),)
    rep = HeaderAction(0, "X-Key", "REPLACE", "v", "bad,worse", False)
    assert apply_header_actions(headers, [rep]) == (("Other", "1"), ("X-Key", "v"))
    log = HeaderAction(0, "X-Key", "LOG", "v", "bad,worse", False)
    assert apply_header_actions(headers, [log]) == headers


def test_later_rules_see_earlier_actions(engine: str):
    """Envoy applies one rule's header actions before checking the next rule."""
    fix = HTTPRule(path="/", header_matches=(HeaderMatch("X-Key", "v", mismatch="REPLACE"),))
    needs = HTTPRule(path="/", headers=("X-Key: v",))
    verdict = allowed([fix, needs], get("/"), engine)
    assert verdict.allowed and verdict.rule_index == 0
    assert [a.action for a in verdict.header_actions] == ["REPLACE"]


# ---------------------------------------------------------------- secrets


def secrets_from(table: dict[tuple[str, str], str]):
    return lambda ns, name: table.get((ns, name))


def test_secret_supplies_the_value(engine: str):
    rule = HTTPRule(header_matches=(HeaderMatch("Auth", secret=("shop", "token")),))
    resolve = secrets_from({("shop", "token"): "s3cr3t"})
    assert matches(rule, get("/", headers=(("Auth", "s3cr3t"),)), engine, resolve)
    assert not matches(rule, get("/", headers=(("Auth", "guess"),)), engine, resolve)


def test_missing_secret_fails_closed_even_with_a_mismatch_action(engine: str):
    for mismatch in (None, "LOG", "ADD", "DELETE", "REPLACE"):
        rule = HTTPRule(header_matches=(
            HeaderMatch("Auth", secret=("shop", "gone"), mismatch=mismatch),))
        for resolve in (None, secrets_from({}), secrets_from({("shop", "gone"): ""})):
            req = get("/", headers=(("Auth", "x"),))
            assert not matches(rule, req, engine, resolve), (mismatch, resolve)
            assert allowed([rule], req, engine, resolve) == (False, None, ())


def test_value_is_the_fallback_when_the_secret_is_missing(engine: str):
    rule = HTTPRule(header_matches=(HeaderMatch("Auth", value="dflt", secret=("s", "t")),))
    assert matches(rule, get("/", headers=(("Auth", "dflt"),)), engine, secrets_from({}))
    resolve = secrets_from({("s", "t"): "real"})
    assert matches(rule, get("/", headers=(("Auth", "real"),)), engine, resolve)
    assert not matches(rule, get("/", headers=(("Auth", "dflt"),)), engine, resolve)


def test_secret_valued_action_is_marked_for_redaction(engine: str):
    rule = HTTPRule(header_matches=(
        HeaderMatch("Auth", secret=("s", "t"), mismatch="REPLACE"),))
    verdict = allowed([rule], get("/"), engine, secrets_from({("s", "t"): "real"}))
    assert verdict.header_actions == (HeaderAction(0, "Auth", "REPLACE", "real", None, True),)


# ---------------------------------------------------------------- rule lists


def test_empty_rule_matches_every_request(engine: str):
    assert allowed([HTTPRule()], get("/anything", method="PATCH"), engine) == (True, 0, ())


def test_no_rules_means_no_restriction():
    assert http_allowed([], get("/x")) == (True, None, ())


def test_list_is_ored_and_reports_the_first_match(engine: str):
    rules = [HTTPRule(method="GET", path="/$"), HTTPRule(method="GET", path="/public$"),
             HTTPRule(method="GET", path="/private$", headers=("X-Very-Secret-Token: 42",))]
    assert allowed(rules, get("/"), engine) == (True, 0, ())
    assert allowed(rules, get("/public"), engine) == (True, 1, ())
    assert allowed(rules, get("/private"), engine) == (False, None, ())
    token = get("/private", headers=(("X-Very-Secret-Token", "42"),))
    assert allowed(rules, token, engine) == (True, 2, ())
    assert allowed(rules, get("/", method="POST"), engine).allowed is False


def test_merged_l4_only_rule_allows_everything(engine: str):
    """§1.12 / §8 item 4: `[GET /, {}]` allows `POST /anything`."""
    rules = [HTTPRule(method="GET", path="/"), HTTPRule()]
    assert allowed(rules, get("/anything", method="POST"), engine) == (True, 1, ())


def test_single_rule_helper_and_cache():
    rule = HTTPRule(path="/a")
    assert http_rule_matches(rule, get("/a"))
    assert not http_rule_matches(rule, get("/a?"))
    assert compile_http_rule(rule) is compile_http_rule(rule)


# ---------------------------------------------------------------- invalid rules


@pytest.mark.parametrize(
    "field,pattern",
    [
        ("path", "*"),  # §8 item 20: a bare `*` is not a regex
        ("method", "*"),
        ("path", "/(?=x)"),
        ("path", r"/(a)\1"),
        ("path", "/a{1001}"),
        ("host", r"\pL+"),
        ("path", "/["),
        ("path", "/a(?i)b"),
    ],
)
def test_invalid_regex_is_rejected_naming_the_field(engine: str, field: str, pattern: str):
    with pytest.raises(ValueError, match=field):
        compile_http_rule(HTTPRule(**{field: pattern}), engine)


def test_unknown_mismatch_action_is_rejected():
    with pytest.raises(ValueError, match="mismatch"):
        compile_http_rule(HTTPRule(header_matches=(HeaderMatch("A", mismatch="DROP"),)))
