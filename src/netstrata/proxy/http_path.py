"""Request path normalization before `rules.http` matching, as Cilium's Envoy does it.

Cilium's `path` rules are regexes over Envoy's `:path` (query included). Which `:path` a rule
sees depends on the HTTP connection manager's normalization, so the proxy must normalize the
same way or a client could write `/public/../private` to reach what `/private` rules deny.

What Cilium configures (pkg/envoy xDS server, `getHttpFilterChainProto`): the agent flag
`--http-normalize-path` (default **true**) sets, on every L7 policy listener,
`normalize_path: true`, `merge_slashes: true` and
`path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT`. Envoy applies them in this order
(`ConnectionManagerUtility::maybeNormalizePath`), to the part before the first `?` only; the
query is never touched:

1. Escaped slashes: `%2F`/`%2f` become `/` and `%5C`/`%5c` become `\\`. If any was found, Envoy
   does not route the request: it answers **307** with `Location:` set to the fully normalized
   path (gRPC requests, which cannot follow a redirect, get 400). The client's retry is then
   checked against the rules like any request.
2. RFC 3986 §6.2.2 normalization (Envoy `PathUtil::canonicalPath`, Chromium's canonicalizer):
   `;params` are stripped from `.`/`..` segments (`/..;x/` is `/../`), `\\` becomes `/`,
   `%XX` of an unreserved character (ALPHA, DIGIT, `-._~`) is decoded, other escapes are kept
   as written (`%2F`, `%c0%af` survive, hex case preserved), `%00` makes the path invalid
   (**400**), dot segments are removed (§5.2.4, `%2e` counts as a dot) and `..` never climbs
   above `/`. Case is not changed. Chromium also percent-encodes a few characters it considers
   unsafe; we skip that because the HTTP/1.1 parser admits only visible ASCII in a target.
3. Merge slashes: runs of `/` collapse to one (leading and trailing slash kept).

So with Cilium's defaults a rule `path: "/public"` sees:

    /public/../private   -> /private          (denied unless /private is allowed)
    /public/%2e%2e/x     -> /x
    //public, /public//  -> /public, /public/
    /%70ublic            -> /public
    /public%2Fx          -> 307 Location: /public/x (the retry is matched as /public/x)
    /a/%00/b             -> 400
    /public?x=/../y      -> /public?x=/../y   (query untouched, so `/public` does not match)

The modes are Istio's `meshConfig.pathNormalization` names: `NONE` (nothing), `BASE` (step 2),
`MERGE_SLASHES` (steps 2-3) and `DECODE_AND_MERGE_SLASHES` (escaped slashes decoded and
forwarded, then steps 2-3). `CILIUM_DEFAULT` is `DECODE_AND_MERGE_SLASHES` with a redirect
instead of forwarding when step 1 changed something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

from netstrata.proxy.errors import RemoteProtocolError


class PathNormalization(Enum):
    """How much of the normalization pipeline runs (Istio's names for the same Envoy knobs)."""

    NONE = "NONE"
    BASE = "BASE"
    MERGE_SLASHES = "MERGE_SLASHES"
    DECODE_AND_MERGE_SLASHES = "DECODE_AND_MERGE_SLASHES"


class EscapedSlashes(Enum):
    """Envoy's `path_with_escaped_slashes_action`."""

    KEEP_UNCHANGED = "KEEP_UNCHANGED"
    REJECT_REQUEST = "REJECT_REQUEST"
    UNESCAPE_AND_REDIRECT = "UNESCAPE_AND_REDIRECT"
    UNESCAPE_AND_FORWARD = "UNESCAPE_AND_FORWARD"


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """The three Envoy HCM settings that shape `:path`."""

    normalize: bool = True
    """`normalize_path` (step 2)."""
    merge_slashes: bool = True
    """`merge_slashes` (step 3)."""
    escaped_slashes: EscapedSlashes = EscapedSlashes.UNESCAPE_AND_REDIRECT
    """`path_with_escaped_slashes_action` (step 1)."""


CILIUM_DEFAULT: Final = PathPolicy()
"""`--http-normalize-path=true`, Cilium's default."""
CILIUM_NORMALIZE_OFF: Final = PathPolicy(
    normalize=False, merge_slashes=False, escaped_slashes=EscapedSlashes.KEEP_UNCHANGED
)
"""`--http-normalize-path=false`: Envoy's own defaults, the path is matched as sent."""


@dataclass(frozen=True, slots=True)
class PathOutcome:
    """What the connection manager does with a request path before any L7 rule runs."""

    action: Literal["forward", "redirect", "reject"]
    """`forward`: match rules against `path`; `redirect`: answer 307 with Location `path`;
    `reject`: answer 400."""
    path: str
    """The normalized `:path` (query included); the original target when rejected."""


_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_ESCAPE_RE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_ESCAPED_SLASH_RE: Final = re.compile(r"%(?:2[Ff]|5[Cc])")
_NEEDS_WORK_RE: Final = re.compile(r"[%\\?]|/\.|//")
"""What any normalization step acts on: an escape, a backslash, a dot segment (with or without
`;params`), a slash run. A path part without these is its own normal form under every mode,
so the per-request common case skips the pipeline. `?` stops the scan at the query (below)."""


def _split_query(target: str) -> tuple[str, str]:
    index = target.find("?")
    return (target, "") if index < 0 else (target[:index], target[index:])


def unescape_slashes(target: str) -> tuple[str, bool]:
    """Decode `%2F` and `%5C` (any hex case) in the path part; report whether any was found."""
    path, query = _split_query(target)
    decoded = _ESCAPED_SLASH_RE.sub(lambda m: "/" if m.group(0)[1] == "2" else "\\", path)
    return decoded + query, decoded != path


def _decode_unreserved(match: re.Match[str]) -> str:
    value = int(match.group(1), 16)
    if value == 0:
        raise ValueError("%00 in path")
    return chr(value) if value in _UNRESERVED else match.group(0)


def _strip_dot_segment_params(segment: str) -> str:
    if segment.startswith("..;"):
        return ".."
    if segment.startswith(".;"):
        return "."
    return segment


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path, by segments."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def canonical_path(target: str) -> str:
    """Step 2: Envoy's `normalize_path` on the path part; the query is kept verbatim.

    Raises:
        ValueError: the path holds `%00`, which Envoy refuses to normalize.
    """
    path, query = _split_query(target)
    path = "/".join(_strip_dot_segment_params(s) for s in path.split("/"))
    path = path.replace("\\", "/")
    path = _ESCAPE_RE.sub(_decode_unreserved, path)
    if not path.startswith("/"):
        path = "/" + path
    return _remove_dot_segments(path) + query


def merge_slashes(target: str) -> str:
    """Step 3: collapse runs of `/` in the path part, keeping a leading and trailing one."""
    path, query = _split_query(target)
    if "//" not in path:
        return target
    inner = "/".join(s for s in path.split("/") if s)
    prefix = "/" if path.startswith("/") else ""
    suffix = "/" if path.endswith("/") else ""
    # Envoy's PathUtil::mergeSlashes exactly, quirk included: "//" stays "//" (prefix + suffix)
    return prefix + inner + suffix + query


def normalize_path(target: str, mode: PathNormalization) -> str:
    """The `:path` a rule sees under `mode` (escaped slashes are forwarded, never redirected).

    Args:
        target: origin-form request-target, query included.
        mode: how much of the pipeline runs.

    Raises:
        ValueError: the path cannot be normalized (`%00`); Envoy answers 400.
    """
    if mode is PathNormalization.NONE:
        return target
    if mode is PathNormalization.DECODE_AND_MERGE_SLASHES:
        target, _ = unescape_slashes(target)
    target = canonical_path(target)
    if mode is not PathNormalization.BASE:
        target = merge_slashes(target)
    return target


def apply_path_policy(
    target: str, policy: PathPolicy = CILIUM_DEFAULT, *, grpc: bool = False
) -> PathOutcome:
    """What Envoy's connection manager does with `target` under `policy`.

    Args:
        target: origin-form request-target as received (`RequestHead.path`).
        policy: the HCM settings; Cilium's defaults unless the agent turned them off.
        grpc: the request is gRPC (content-type application/grpc*); a redirect becomes 400.
    """
    if target[:1] == "/":
        hit = _NEEDS_WORK_RE.search(target)
        if hit is None or hit.group() == "?":
            return PathOutcome("forward", target)  # already normal (see _NEEDS_WORK_RE)
    return _run_pipeline(target, policy, grpc)


def _run_pipeline(target: str, policy: PathPolicy, grpc: bool) -> PathOutcome:
    path, found = target, False
    if policy.escaped_slashes is not EscapedSlashes.KEEP_UNCHANGED:
        path, found = unescape_slashes(target)
        if found and policy.escaped_slashes is EscapedSlashes.REJECT_REQUEST:
            return PathOutcome("reject", target)
    if policy.normalize:
        try:
            path = canonical_path(path)
        except ValueError:
            return PathOutcome("reject", target)
    if policy.merge_slashes:
        path = merge_slashes(path)
    if found and policy.escaped_slashes is EscapedSlashes.UNESCAPE_AND_REDIRECT:
        return PathOutcome("reject", target) if grpc else PathOutcome("redirect", path)
    return PathOutcome("forward", path)


def require_forward(outcome: PathOutcome) -> str:
    """The path of a `forward` outcome; a `reject` becomes RemoteProtocolError(hint=400)."""
    if outcome.action == "reject":
        raise RemoteProtocolError(f"path {outcome.path[:60]!r} fails normalization", hint=400)
    return outcome.path


__all__ = [
    "CILIUM_DEFAULT",
    "CILIUM_NORMALIZE_OFF",
    "EscapedSlashes",
    "PathNormalization",
    "PathOutcome",
    "PathPolicy",
    "apply_path_policy",
    "canonical_path",
    "merge_slashes",
    "normalize_path",
    "require_forward",
    "unescape_slashes",
]
