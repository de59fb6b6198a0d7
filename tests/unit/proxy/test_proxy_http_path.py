"""Path normalization before `rules.http` matching: Envoy's own test vectors (path_utility_test)
and what Cilium's default (`--http-normalize-path=true`) means for a rule on `/public`."""

from __future__ import annotations

import pytest

from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.http_path import (
    CILIUM_DEFAULT,
    CILIUM_NORMALIZE_OFF,
    EscapedSlashes,
    PathNormalization,
    PathOutcome,
    PathPolicy,
    apply_path_policy,
    canonical_path,
    merge_slashes,
    normalize_path,
    require_forward,
    unescape_slashes,
)

# Envoy test/common/http/path_utility_test.cc, NormalizeValidPaths / NormalizeCasePath
CANONICAL = [
    ("/xyz", "/xyz"),
    ("/x/y/z", "/x/y/z"),
    ("/a/b/../c", "/a/c"),
    ("/a/b/./c", "/a/b/c"),
    ("a/b/../c", "/a/c"),
    ("/a/b/../../../../c", "/c"),
    ("/a/..\\c", "/c"),
    ("/%c0%af", "/%c0%af"),
    ("/%5c%25", "/%5c%25"),
    ("/a/b/%2E%2E/c", "/a/c"),
    ("/a/b/%2e%2e/c", "/a/c"),
    ("/a/b/%2E./c", "/a/c"),
    ("/a/b/%2E/c", "/a/b/c"),
    ("..", "/"),
    ("/../a/b", "/a/b"),
    ("/./a/b", "/a/b"),
    ("/xyz/..;foo=bar/abc", "/abc"),
    ("/..;foo=bar/abc", "/abc"),
    ("/xyz/..;foo=bar", "/"),
    ("/xyz/.;foo=bar/abc", "/xyz/abc"),
    ("/A/B/C", "/A/B/C"),
    ("/a/%2F%2f/c", "/a/%2F%2f/c"),
    # RFC 3986 §6.2.2.2: unreserved escapes decode, others stay as written
    ("/%70ublic/%7Euser", "/public/~user"),
    ("/a%20b/%3F", "/a%20b/%3F"),
    ("/a/b/", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/a/b/.", "/a/b/"),
    ("/p?q=/../x&r=%2e%2e", "/p?q=/../x&r=%2e%2e"),
    ("/a/../b?x", "/b?x"),
]


@pytest.mark.parametrize("raw,expected", CANONICAL)
def test_canonical_path_matches_envoy(raw: str, expected: str) -> None:
    assert canonical_path(raw) == expected


@pytest.mark.parametrize("raw", ["/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc"])
def test_nul_escapes_cannot_be_normalized(raw: str) -> None:
    with pytest.raises(ValueError):
        canonical_path(raw)
    outcome = apply_path_policy(raw)
    assert outcome == PathOutcome("reject", raw)
    with pytest.raises(RemoteProtocolError) as info:
        require_forward(outcome)
    assert info.value.hint == 400


# Envoy PathUtilityTest.MergeSlashes
MERGED = [
    ("", ""),
    ("a//b/c", "a/b/c"),
    ("/a//b/c/", "/a/b/c/"),
    ("a//b/c/", "a/b/c/"),
    ("/a", "/a"),
    ("//a/b/c", "/a/b/c"),
    ("/a//b/c", "/a/b/c"),
    ("/a/b/c//", "/a/b/c/"),
    ("/a///b/c", "/a/b/c"),
    ("/a////b/c", "/a/b/c"),
    ("/a//b?a=///c", "/a/b?a=///c"),
    ("/a//b?", "/a/b?"),
    ("//a/?b", "/a/?b"),
]


@pytest.mark.parametrize("raw,expected", MERGED)
def test_merge_slashes_matches_envoy(raw: str, expected: str) -> None:
    assert merge_slashes(raw) == expected


# Envoy PathUtilityTest.UnescapeSlashes
UNESCAPED = [
    ("", "", False),
    ("%2f%2F", "//", True),
    ("/a%2Fb%2fc/", "/a/b/c/", True),
    ("%2b", "%2b", False),
    ("%2", "%2", False),
    ("%%2fa/", "%/a/", True),
    ("%5c%5C", "\\\\", True),
    ("/x/%2E%2e/z%2f%2Fabc%5C../def", "/x/%2E%2e/z//abc\\../def", True),
    ("%2fa%5Cb%2fc%5c?%2fabcd%5C%%2f%", "/a\\b/c\\?%2fabcd%5C%%2f%", True),
]


@pytest.mark.parametrize("raw,expected,found", UNESCAPED)
def test_unescape_slashes_matches_envoy(raw: str, expected: str, found: bool) -> None:
    assert unescape_slashes(raw) == (expected, found)


# What a `path: /public` rule sees under Cilium's defaults (http_path module docstring).
CILIUM = [
    ("/public", "forward", "/public"),
    ("/public/../private", "forward", "/private"),
    ("/public/%2e%2e/private", "forward", "/private"),
    ("/public/%2E%2E/private", "forward", "/private"),
    ("//public", "forward", "/public"),
    ("/public//", "forward", "/public/"),
    ("/%70ublic", "forward", "/public"),
    ("/public?x=/../y", "forward", "/public?x=/../y"),
    ("/public%2Fx", "redirect", "/public/x"),
    ("/public%5c..%5cprivate", "redirect", "/private"),
    ("/a%2F..%2F..%2Fprivate", "redirect", "/private"),
    ("/a/%00/b", "reject", "/a/%00/b"),
]


@pytest.mark.parametrize("raw,action,path", CILIUM)
def test_cilium_default_outcomes(raw: str, action: str, path: str) -> None:
    assert apply_path_policy(raw, CILIUM_DEFAULT) == PathOutcome(action, path)  # type: ignore[arg-type]


def test_grpc_cannot_follow_a_redirect_so_it_is_rejected() -> None:
    assert apply_path_policy("/pkg.Svc%2FMethod", grpc=True).action == "reject"


def test_normalization_off_matches_the_path_as_sent() -> None:
    for raw in ("/public/../private", "//public", "/public%2Fx", "/a/%00"):
        assert apply_path_policy(raw, CILIUM_NORMALIZE_OFF) == PathOutcome("forward", raw)


def test_reject_escaped_slashes_action() -> None:
    policy = PathPolicy(escaped_slashes=EscapedSlashes.REJECT_REQUEST)
    assert apply_path_policy("/a%2fb", policy).action == "reject"
    assert apply_path_policy("/a/b", policy) == PathOutcome("forward", "/a/b")


def test_unescape_and_forward_action() -> None:
    policy = PathPolicy(escaped_slashes=EscapedSlashes.UNESCAPE_AND_FORWARD)
    assert apply_path_policy("/a%2f%2Fb", policy) == PathOutcome("forward", "/a/b")


MODES = [
    # raw, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES
    ("/public/../private", "/public/../private", "/private", "/private", "/private"),
    ("//a/./b", "//a/./b", "//a/b", "/a/b", "/a/b"),
    ("/a%2F..%2Fb", "/a%2F..%2Fb", "/a%2F..%2Fb", "/a%2F..%2Fb", "/b"),
    ("/a%2f%2fb", "/a%2f%2fb", "/a%2f%2fb", "/a%2f%2fb", "/a/b"),
    ("/%61/%2e%2e/c?d=%2F", "/%61/%2e%2e/c?d=%2F", "/c?d=%2F", "/c?d=%2F", "/c?d=%2F"),
]


@pytest.mark.parametrize("raw,none,base,merge,decode", MODES)
def test_istio_style_modes(raw: str, none: str, base: str, merge: str, decode: str) -> None:
    assert normalize_path(raw, PathNormalization.NONE) == none
    assert normalize_path(raw, PathNormalization.BASE) == base
    assert normalize_path(raw, PathNormalization.MERGE_SLASHES) == merge
    assert normalize_path(raw, PathNormalization.DECODE_AND_MERGE_SLASHES) == decode


def test_normalization_is_idempotent_on_the_tables() -> None:
    for raw, *_ in CANONICAL + [(r, p) for r, _, p in CILIUM if _ == "forward"]:
        once = normalize_path(raw, PathNormalization.DECODE_AND_MERGE_SLASHES)
        assert normalize_path(once, PathNormalization.DECODE_AND_MERGE_SLASHES) == once
