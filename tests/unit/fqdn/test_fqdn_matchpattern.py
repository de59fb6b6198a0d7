"""matchName / matchPattern semantics (reference §6, §8 items 18 and 19)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.api.types import FQDNSelector
from netstrata.fqdn import (
    compile_pattern,
    compile_selector,
    labels_for_name,
    name_matches,
    pattern_to_regex,
    sanitize_name,
    sanitize_pattern,
    selector_label,
    selector_string,
)
from netstrata.labels import Label, LabelSet


def pat(p: str) -> FQDNSelector:
    return FQDNSelector(match_pattern=p)


def name(n: str) -> FQDNSelector:
    return FQDNSelector(match_name=n)


# ---------------------------------------------------------------- §6 pattern table

TABLE = [
    (name("cilium.io"), ["cilium.io.", "Cilium.IO", "cilium.io"], ["sub.cilium.io."]),
    (pat("cilium.io"), ["cilium.io."], ["sub.cilium.io.", "xcilium.io."]),
    (pat("*.cilium.io"), ["sub.cilium.io."], ["cilium.io.", "a.b.cilium.io."]),
    (pat("*cilium.io"), ["cilium.io.", "subcilium.io.", "sub-cilium.io."], ["www.cilium.io."]),
    (pat("sub*.cilium.io"), ["sub.cilium.io.", "subdomain.cilium.io."], ["www.cilium.io."]),
    (pat("*.ci*.io"), ["a.cilium.io.", "a.ci.io."], ["cilium.io."]),
    (pat("**.cilium.io"), ["app.cilium.io.", "a.b.cilium.io."], ["cilium.io."]),
    (pat("*"), [".", "io.", "_srv._tcp.x.", "a.b.c.d."], ["", ".io.", "a..b."]),
    (pat("**"), [".", "io.", "_srv._tcp.x."], ["", ".io."]),
    (pat("*."), [".", "io.", "_srv._tcp.x."], ["", ".io."]),
]


@pytest.mark.parametrize("selector,accept,reject", TABLE, ids=lambda x: str(x))
def test_reference_pattern_table(selector: FQDNSelector, accept: list[str],
                                 reject: list[str]):
    for n in accept:
        assert name_matches(selector, n), n
    for n in reject:
        assert not name_matches(selector, n), n


def test_star_never_crosses_a_dot():
    m = compile_pattern("a*b.com")
    assert m.matches("ab.com") and m.matches("a-x_9b.com")
    assert not m.matches("a.b.com") and not m.matches("ax.yb.com")


def test_subdomain_wildcard_with_more_stars_and_inner_double_star():
    assert compile_pattern("***.cilium.io").matches("a.b.cilium.io")
    inner = compile_pattern("a.**.io")  # not leading: one label, like `*`
    assert inner.matches("a.b.io") and not inner.matches("a.b.c.io")
    assert compile_pattern("**cilium.io").matches("cilium.io")  # no dot after: plain `*`
    assert not compile_pattern("**cilium.io").matches("a.cilium.io")


# ---------------------------------------------------------------- §8 item 18 (Cilium's lists)

CILIUM_LISTS = [
    ("cilium.io.", ["cilium.io."],
     ["", "anysub.cilium.io.", "anysub.ci.io.", "anysub.ciliumandmore.io."]),
    ("*.cilium.io.", ["anysub.cilium.io."],
     ["", "cilium.io.", "anysub.ci.io.", "anysub.ciliumandmore.io."]),
    ("*.ci*.io.", ["anysub.cilium.io.", "anysub.ci.io.", "anysub.ciliumandmore.io."],
     ["", "cilium.io."]),
    ("*", [".", "io.", "cilium.io.", "svc.cluster.local.", "service.namesace.svc.cluster.local.",
           "_foobar._tcp.cilium.io."],
     ["", ".io.", ".cilium.io.", ".svc.cluster.local.", "cilium.io"]),
    (".", ["."], ["", ".io.", ".cilium.io"]),
    ("_foobar._tcp.cilium.io.", ["_foobar._tcp.cilium.io."],
     ["", "_tcp.cilium.io.", "cilium.io."]),
    ("*.*.cilium.io.", ["_foobar._tcp.cilium.io."], [""]),
]


@pytest.mark.parametrize("pattern,accept,reject", CILIUM_LISTS)
def test_cilium_anchored_match_lists(pattern: str, accept: list[str], reject: list[str]):
    """Names are given as-is (no normalisation), like Cilium's regex test."""
    m = compile_pattern(pattern)
    rx = re.compile(pattern_to_regex(pattern))
    for n in accept:
        assert m.matches_normalized(n), n
        assert rx.search(n), n
    for n in reject:
        assert not m.matches_normalized(n), n
        assert not rx.search(n), n


@pytest.mark.parametrize("source,target", [("*", "*"), ("*.", "*."), ("*.com", "*.com."),
                                           ("**", "**"), ("*.Cilium.IO", "*.cilium.io."),
                                           ("cilium.io.", "cilium.io."), (".", ".")])
def test_sanitize_pattern(source: str, target: str):
    assert sanitize_pattern(source) == target


@pytest.mark.parametrize("source,target", [
    ("cilium.io.", "^cilium[.]io[.]$"),
    ("*.cilium.io.", "^[-a-zA-Z0-9_]*[.]cilium[.]io[.]$"),
    ("*", "(^([-a-zA-Z0-9_]+[.])+$)|(^[.]$)"),
    (".", "^[.]$"),
    ("**.cilium.io.", "^([-a-zA-Z0-9_]+([.][-a-zA-Z0-9_]+){0,})[.]cilium[.]io[.]$"),
    ("a**b.", "^a[-a-zA-Z0-9_]*b[.]$"),
])
def test_pattern_to_regex(source: str, target: str):
    assert pattern_to_regex(source) == target


def test_sanitize_name():
    assert sanitize_name("Cilium.IO") == "cilium.io."
    assert sanitize_name("cilium.io.") == "cilium.io."
    assert sanitize_name(".") == "."
    assert sanitize_name("") == ""


# ---------------------------------------------------------------- §8 item 19 labels

SELECTORS = [name("cilium.io"), name("github.com"), pat("*cilium.io.")]


@pytest.mark.parametrize("learned,labels", [
    ("nomatch.local.", set()),
    ("github.com.", {"fqdn:github.com"}),
    ("cilium.io.", {"fqdn:cilium.io", "fqdn:*cilium.io."}),
    ("awesomecilium.io.", {"fqdn:*cilium.io."}),
])
def test_labels_for_learned_names(learned: str, labels: set[str]):
    got = labels_for_name(learned, SELECTORS)
    assert isinstance(got, LabelSet)
    assert {str(lb) for lb in got} == labels
    assert got == LabelSet(Label.parse(t) for t in labels)


def test_selector_string_is_the_field_as_written():
    assert selector_string(name("cilium.io")) == "cilium.io"
    assert selector_string(pat("*cilium.io")) == "*cilium.io"
    assert selector_label(pat("*.Example.com")) == Label("fqdn", "*.Example.com")
    assert compile_selector(name("a.b")).label == Label("fqdn", "a.b")


# ---------------------------------------------------------------- invalid selectors


@pytest.mark.parametrize("selector", [
    FQDNSelector(), FQDNSelector("a.com", "*.a.com"), name("a b.com"), name("*.a.com"),
    pat("a/b"), pat("[a].com"), pat("a" * 256), name("a" * 256), pat(" "),
])
def test_invalid_selectors_are_rejected(selector: FQDNSelector):
    with pytest.raises(ValueError):
        compile_selector(selector)


def test_compiled_selectors_are_cached():
    assert compile_selector(pat("*.x.io")) is compile_selector(pat("*.x.io"))


# ---------------------------------------------------------------- properties

_LABEL = st.text(alphabet="abz09-_", min_size=1, max_size=12)
WELL_FORMED = st.lists(_LABEL, min_size=1, max_size=5).map(lambda ls: ".".join(ls) + ".")


@given(WELL_FORMED)
def test_star_matches_every_well_formed_name(n: str):
    for p in ("*", "**", "*."):
        assert compile_pattern(p).matches_normalized(n)
        assert compile_pattern(p).matches(n.upper())


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_random_names_never_crash(n: str):
    for sel in (pat("*"), pat("*.ci*.io"), pat("**.cilium.io"), name("cilium.io"),
                pat("a*b*c*d*e.com")):
        assert compile_selector(sel).matches(n) in (True, False)
    labels_for_name(n, SELECTORS)


_PATTERN = st.text(alphabet="ab.*-_", min_size=1, max_size=10)
_NAME = st.text(alphabet="ab.-_A", max_size=10)


@given(_PATTERN, st.lists(_NAME, min_size=1, max_size=6))
@settings(max_examples=500)
def test_label_matcher_agrees_with_cilium_regex(pattern: str, names: list[str]):
    """The linear matcher and Cilium's anchored regex accept the same names."""
    sanitized = sanitize_pattern(pattern)
    rx = re.compile(pattern_to_regex(sanitized))
    m = compile_pattern(pattern)
    for n in names:
        assert m.matches_normalized(n) == bool(rx.search(n)), (sanitized, n)


def test_many_stars_do_not_backtrack():
    m = compile_pattern("*a*a*a*a*a*a*a*a*a*a*b.com")
    assert not m.matches("a" * 250 + ".com")
