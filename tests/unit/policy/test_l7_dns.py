"""DNS L7 rules (reference §1.5.1 DNS, §6, §8 item 9; scenarios README "DNS L7")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.api.types import DNSRule
from netstrata.policy.l7.dns import (
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    dns_allowed,
    dns_rule_matches,
    reject_rcode,
)


def test_match_name_is_exact_any_case_final_dot_optional():
    rule = DNSRule(match_name="api.example.com")
    for q in ("api.example.com.", "API.Example.COM", "api.example.com"):
        assert dns_rule_matches(rule, q), q
    for q in ("www.api.example.com.", "apiXexample.com.", "example.com."):
        assert not dns_rule_matches(rule, q), q


def test_match_pattern_star_stays_in_one_label():
    rule = DNSRule(match_pattern="*.example.com")
    assert dns_rule_matches(rule, "www.example.com.")
    assert not dns_rule_matches(rule, "a.b.example.com.")
    assert not dns_rule_matches(rule, "example.com.")


@pytest.mark.parametrize("pattern", ["*", "**", "*.", " * "])
@pytest.mark.parametrize("qname", ["example.com.", ".", "x", "_srv._tcp.db.", "weird name.",
                                   ".io.", ""])
def test_match_all_pattern_allows_every_query(pattern: str, qname: str):
    """The DNS proxy turns a match-all pattern into `(?:)`: every query name passes."""
    assert dns_allowed([DNSRule(match_pattern=pattern)], qname) == (True, 0)


def test_rule_with_both_fields_matches_either():
    rule = DNSRule(match_name="a.com", match_pattern="*.b.com")
    assert dns_rule_matches(rule, "a.com.")
    assert dns_rule_matches(rule, "x.b.com.")
    assert not dns_rule_matches(rule, "x.a.com.")


def test_rules_are_ored_and_report_the_first_match():
    rules = [DNSRule(match_name="one.com"), DNSRule(match_pattern="*.two.com"),
             DNSRule(match_pattern="*")]
    assert dns_allowed(rules, "one.com.") == (True, 0)
    assert dns_allowed(rules, "a.two.com") == (True, 1)
    assert dns_allowed(rules, "other.org.") == (True, 2)
    assert dns_allowed(rules[:2], "other.org.") == (False, None)


def test_merged_opt_out_rules_allow_other_names():
    """§8 item 9: stored DNS rules become [example.com, "*"]; `other.org` is allowed."""
    rules = (DNSRule(match_pattern="example.com"), DNSRule(match_pattern="*"))
    assert dns_allowed(rules, "other.org").allowed
    assert not dns_allowed(rules[:1], "other.org").allowed


def test_no_rules_means_no_restriction():
    assert dns_allowed((), "anything.") == (True, None)


def test_reject_rcodes():
    assert reject_rcode() == RCODE_REFUSED == 5
    assert reject_rcode(name_error=True) == RCODE_NXDOMAIN == 3


def test_invalid_rule_is_rejected():
    with pytest.raises(ValueError):
        dns_rule_matches(DNSRule(match_pattern="bad/pattern"), "x.")


@given(st.text(max_size=60))
@settings(max_examples=300)
def test_random_query_names_never_crash(qname: str):
    rules = (DNSRule(match_name="cilium.io"), DNSRule(match_pattern="**.cilium.io"),
             DNSRule(match_pattern="sub*.ci*.io"))
    verdict = dns_allowed(rules, qname)
    assert verdict.allowed in (True, False)
