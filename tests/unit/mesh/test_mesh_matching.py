"""Value matching (reference §5, §6): exact/prefix/suffix/presence, no glob, templates, CIDRs."""

from __future__ import annotations

import pytest

from netstrata.mesh.matching import (
    header_matcher,
    host_matcher,
    in_ranges,
    ip_matcher,
    path_matcher,
    split_ports,
    string_matcher,
)


@pytest.mark.parametrize("pattern,text,expected", [
    ("/info", "/info", True),
    ("/info", "/info/", False),
    ("/info*", "/info", True),           # a prefix also matches the stem itself
    ("/info*", "/information", True),
    ("/api/*", "/api", False),           # ... but only the stem as written
    ("*/info", "/v2/info", True),
    ("*/info", "/v2/info/x", False),
    ("*", "/anything", True),
    ("*", "", False),                     # presence means non-empty
    ("/orders/*/status", "/orders/42/status", False),   # a middle `*` is a literal
    ("/orders/*/status", "/orders/*/status", True),
    ("*a*", "xa*", True),                 # `*a*` is the suffix `a*`
    ("*a*", "xay", False),
])
def test_string_patterns(pattern, text, expected):
    assert string_matcher(pattern).matches(text) is expected


def test_absent_attribute_never_matches_a_positive_pattern():
    for pattern in ("x", "x*", "*x", "*"):
        assert string_matcher(pattern).matches(None) is False


def test_prefixed_suffix_still_requires_the_prefix():
    m = string_matcher("*/ns/foo/sa/bar", "spiffe://")
    assert m.matches("spiffe://td/ns/foo/sa/bar")
    assert not m.matches("td/ns/foo/sa/bar")
    assert string_matcher("cluster.local/ns/foo/*", "spiffe://").matches(
        "spiffe://cluster.local/ns/foo/sa/x")


def test_matching_is_case_sensitive_except_hosts():
    assert not string_matcher("/Admin").matches("/admin")
    assert not header_matcher("GET").matches("get")
    assert host_matcher("example.com").matches("EXAMPLE.com")
    assert host_matcher("*.example.com").matches("API.Example.COM")
    assert host_matcher("example.com:*").matches("Example.com:8000")


def test_host_compares_the_raw_authority_with_its_port():
    assert not host_matcher("example.com").matches("example.com:8000")


def test_header_presence_accepts_an_empty_value():
    assert header_matcher("*").matches("")
    assert not header_matcher("*").matches(None)


@pytest.mark.parametrize("template,path,expected", [
    ("/orders/{*}/status", "/orders/42/status", True),
    ("/orders/{*}/status", "/orders//status", False),       # {*} is one non-empty segment
    ("/orders/{*}/status", "/orders/4/2/status", False),
    ("/files/{**}", "/files/a/b/c.txt", True),
    ("/files/{**}", "/files/", True),
    ("/files/{**}", "/files", False),
    ("/{*}/x/{**}", "/a/x/b/c", True),
])
def test_path_templates(template, path, expected):
    assert path_matcher(template).matches(path) is expected


def test_ip_matcher_accepts_addresses_and_cidrs_of_one_family():
    assert ip_matcher("10.0.0.0/8").matches("10.1.2.3")
    assert ip_matcher("10.1.2.3").matches("10.1.2.3")
    assert not ip_matcher("10.1.2.3").matches("10.1.2.4")
    assert ip_matcher("10.1.2.3/8").matches("10.200.0.1")   # host bits are ignored
    assert ip_matcher("2001:db8::/32").matches("2001:db8::1")
    assert not ip_matcher("0.0.0.0/0").matches("2001:db8::1")
    assert not ip_matcher("10.0.0.0/8").matches(None)


def test_annotation_lists():
    assert split_ports("8080, 9090,x") == {8080, 9090}
    assert in_ranges("10.1.2.3", "192.168.0.0/16,10.0.0.0/8")
    assert in_ranges("10.1.2.3", "*")
    assert not in_ranges("10.1.2.3", "")
