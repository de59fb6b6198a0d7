"""The RE2/Python common subset used for HTTP rule regexes (`policy/l7/_regex.py`)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netstrata.policy.l7._regex import HAS_RE2, compile_whole, translate

needs_re2 = pytest.mark.skipif(not HAS_RE2, reason="google-re2 is not installed")


@pytest.mark.parametrize(
    "pattern",
    [
        "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(?>a)", "(?(1)a|b)", "(?#note)", "(?x)a",
        "(?a)a", "(?P=n)", r"(a)\1", r"\12", "a*+", "a++", "a?+", "a{2}+", "a{1001}",
        "a{1,1001}", r"\Z", r"\u0041", r"\N{DASH}", r"[\b]", "[[:foo:]]",
        r"\Qa.b\E", r"\x{41}", r"\pL", r"\p{Greek}", r"\C", "(?<n>a)", "(?U)a", "a(?i)b",
        "[[:^alpha:]]", "^*", r"\b+", "*", "a**", "(?)", r"\e", "\\", "[a", r"\xg1",
        r"\ą",
    ],
)
def test_rejects_patterns_valid_in_only_one_engine(pattern: str):
    with pytest.raises(ValueError):
        compile_whole(pattern, "python")


@pytest.mark.parametrize(
    "pattern,python",
    [
        ("[[:alpha:]]", "[A-Za-z]"),
        ("[^[:digit:]_]", "[^0-9_]"),
        ("a{,3}", r"a\{,3}"),
        (r"a\z", r"a\Z"),
        (r"\B", r"(?:\B|\A\Z)"),
        ("[]a]", r"[\]a]"),
        ("[a&&b]", r"[a\&\&b]"),
        (r"\012", r"\012"),
        (r"\0", r"\0"),
        ("(?i)a", "(?i)a"),
        ("(?i:a)b", "(?i:a)b"),
        ("(?P<n>a)", "(?P<n>a)"),
        ("a{2,3}?", "a{2,3}?"),
    ],
)
def test_translation_for_python(pattern: str, python: str):
    assert translate(pattern) == python


def test_whole_value_only():
    rx = compile_whole("/public", "python")
    assert rx.matches("/public") and not rx.matches("/public?x=1")
    assert not rx.matches("/public\n")  # `$`-before-newline never leaks into fullmatch


def test_engine_re2_requested_without_it():
    if HAS_RE2:
        assert compile_whole("a", "re2").engine == "re2"
    else:
        with pytest.raises(ValueError, match="google-re2"):
            compile_whole("a", "re2")


# Small alphabets make Hypothesis hit the interesting constructs often.
_ATOMS = ["a", "b", ".", "\\d", "\\w", "\\s", "\\.", "[ab]", "[^a]", "[[:alpha:]]", "x{,2}",
          "{", "}", "(?:", "(", ")", "|", "*", "+", "?", "{2}", "{1,3}", "^", "$", "\\b",
          "(?i)", "(?i:", "\\z", "\\B", "-", "/", "[a-c]", "\\x41"]
patterns = st.lists(st.sampled_from(_ATOMS), max_size=8).map("".join)
subjects = st.text(alphabet="ab/.-A1 _\n{},x", max_size=8)


@needs_re2
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patterns, st.lists(subjects, min_size=1, max_size=5))
def test_engines_agree_on_the_common_subset(pattern: str, values: list[str]):
    try:
        py = compile_whole(pattern, "python")
    except ValueError:
        return
    rx2 = compile_whole(pattern, "re2")  # anything we accept, RE2 must accept too
    for value in values:
        if "\n" in value:
            continue  # documented: `$` differs before a final newline; parsers never pass one
        assert py.matches(value) == rx2.matches(value), (pattern, value)


@given(st.text(max_size=12))
@settings(max_examples=300, deadline=None)
def test_random_patterns_never_crash(pattern: str):
    try:
        rx = compile_whole(pattern, "python")
    except ValueError:
        return
    rx.matches("/some/path?q=1")
    re.compile(translate(pattern))  # what we accept always compiles in Python
