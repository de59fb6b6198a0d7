"""DNS names against `matchName`/`matchPattern` (Cilium reference §6; pkg/fqdn/matchpattern).

Used by `toFQDNs` (which learned names an FQDN selector covers, and so which `fqdn:` labels an
IP's identity gets) and by DNS L7 rules (`policy/l7/dns.py`). Pure: no DNS, no clock. Knows
nothing of policy resolution or caches.

Names are compared lower-cased and fully qualified (`sanitize_name`). Patterns:
- `.` is a literal dot; `*` matches a run of `[-a-zA-Z0-9_]` and never crosses a dot;
- a leading `**.` (two or more stars, then a dot) matches one or more whole labels;
- a pattern of stars alone, with an optional final dot (`*`, `**`, `*.`), matches every
  well-formed name: the root `.`, or one or more non-empty labels of `[-a-zA-Z0-9_]` each
  followed by a dot (`_srv._tcp.x.` included); never the empty string or a name with an empty
  label such as `.io.`.
`pattern_to_regex` gives the anchored regex Cilium builds (`ToAnchoredRegexp`), for display and
for tests. Matching does not run that regex: `FQDNMatcher` compares label by label with a
linear glob, because query names come from untrusted pods and a backtracking regex with many
stars could be made slow. A property test checks the two agree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from netstrata.api.types import FQDNSelector
from netstrata.labels import SOURCE_FQDN, Label, LabelSet

MAX_FQDN_LENGTH: Final = 255
"""Longest matchName/matchPattern Cilium accepts (`MaxFQDNLength`)."""

NAME_CHARS: Final = frozenset("-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""What `*` may match: Cilium's `allowedDNSCharsREGroup` `[-a-zA-Z0-9_]`."""

_CHARS_RE: Final = "[-a-zA-Z0-9_]"
MATCH_ALL_REGEX: Final = f"(^({_CHARS_RE}+[.])+$)|(^[.]$)"
"""Cilium's anchored regex for a match-all pattern."""
_SUBDOMAIN_RE: Final = f"({_CHARS_RE}+([.]{_CHARS_RE}+){{0,}})[.]"

_PATTERN_CHARS: Final = NAME_CHARS | {".", "*"}
_NAME_ALLOWED: Final = NAME_CHARS | {"."}


def sanitize_name(name: str) -> str:
    """Lower-case and fully qualify a DNS name (`Cilium.IO` -> `cilium.io.`).

    The empty string stays empty: it is not a name, and must not turn into the root `.`.
    """
    name = name.lower()
    return name if not name or name.endswith(".") else name + "."


def is_dns_wildcard(pattern: str) -> bool:
    """True for a match-all pattern: one or more `*`, optionally followed by one `.`."""
    body = pattern[:-1] if pattern.endswith(".") else pattern
    return bool(body) and set(body) == {"*"}


def sanitize_pattern(pattern: str) -> str:
    """Canonical form (Cilium `Sanitize`): match-all patterns as written, others lower-cased
    with a final dot (`*` -> `*`, `*.` -> `*.`, `*.Com` -> `*.com.`)."""
    pattern = pattern.strip()
    if is_dns_wildcard(pattern):
        return pattern
    return sanitize_name(pattern)


def validate_pattern(pattern: str) -> None:
    """Raise ValueError unless the pattern is at most 255 characters of `[-a-zA-Z0-9_.*]`."""
    text = pattern.strip()
    if len(text) > MAX_FQDN_LENGTH:
        raise ValueError(f"matchPattern {pattern!r}: longer than {MAX_FQDN_LENGTH} characters")
    if not text or not set(text) <= _PATTERN_CHARS:
        raise ValueError(f"matchPattern {pattern!r}: only [-a-zA-Z0-9_.*] is allowed")


def _leading_stars(pattern: str) -> int:
    return len(pattern) - len(pattern.lstrip("*"))


def _is_subdomain_wildcard(pattern: str) -> bool:
    stars = _leading_stars(pattern)
    return stars >= 2 and pattern[stars:stars + 1] == "."


def pattern_to_regex(pattern: str) -> str:
    """Cilium's anchored regex for a pattern (`ToAnchoredRegexp`); sanitize it first.

    `.` -> `[.]`; a leading `**.` -> one or more labels then a dot; any other run of `*` ->
    `[-a-zA-Z0-9_]*`; anchored `^...$`. Match-all patterns give `MATCH_ALL_REGEX`.
    """
    pattern = pattern.strip().lower()
    if is_dns_wildcard(pattern):
        return MATCH_ALL_REGEX
    out = []
    if _is_subdomain_wildcard(pattern):
        out.append(_SUBDOMAIN_RE)
        pattern = pattern[_leading_stars(pattern) + 1:]
    for run in re.findall(r"\*+|[^*]+", pattern):
        out.append(f"{_CHARS_RE}*" if run[0] == "*" else run.replace(".", "[.]"))
    return "^" + "".join(out) + "$"


def _glob_label(segments: tuple[str, ...], label: str) -> bool:
    """Does `label` match a label pattern split at its `*` runs (len(segments) >= 2)?

    Literal segments must appear in order; the gaps (what the stars match) must be name
    characters. Leftmost placement of each middle segment is optimal, so this is linear.
    """
    head, tail = segments[0], segments[-1]
    if len(label) < len(head) + len(tail) or not label.startswith(head) \
            or not label.endswith(tail) or not set(label) <= NAME_CHARS:
        return False
    pos, end = len(head), len(label) - len(tail)
    for seg in segments[1:-1]:
        found = label.find(seg, pos, end)
        if found == -1:
            return False
        pos = found + len(seg)
    return True


def _is_label(part: str) -> bool:
    return bool(part) and set(part) <= NAME_CHARS


@dataclass(frozen=True, slots=True)
class FQDNMatcher:
    """A compiled FQDN selector; build with `compile_selector` or `compile_pattern`."""

    selector: FQDNSelector
    kind: Literal["all", "exact", "glob"]
    text: str
    """The sanitized name or pattern that is matched."""
    subdomains: bool = False
    """Pattern starts with `**.`: one or more labels come before `labels`."""
    labels: tuple[tuple[str, ...], ...] = ()
    """Per label of the pattern (after `**.`), its literal segments split at `*` runs."""

    @property
    def regex(self) -> str:
        """Cilium's equivalent anchored regex (for display)."""
        return pattern_to_regex(self.text)

    @property
    def label(self) -> Label:
        """This selector's identity label, `fqdn:<selector string>`."""
        return selector_label(self.selector)

    def matches(self, name: str) -> bool:
        """Does the DNS name match? The name is lower-cased and fully qualified first."""
        return self.matches_normalized(sanitize_name(name))

    def matches_normalized(self, name: str) -> bool:
        """Match a name exactly as given, as Cilium's regex would (no normalisation)."""
        if self.kind == "exact":
            return name == self.text
        parts = name.split(".")
        if self.kind == "all":
            return name == "." or (parts[-1] == "" and all(map(_is_label, parts[:-1]))
                                   and len(parts) > 1)
        if self.subdomains:
            extra = len(parts) - len(self.labels)
            if extra < 1 or not all(map(_is_label, parts[:extra])):
                return False
            parts = parts[extra:]
        elif len(parts) != len(self.labels):
            return False
        return all(
            (seg[0] == part) if len(seg) == 1 else _glob_label(seg, part)
            for seg, part in zip(self.labels, parts, strict=True)
        )


def _build(selector: FQDNSelector, text: str) -> FQDNMatcher:
    if is_dns_wildcard(text):
        return FQDNMatcher(selector, "all", text)
    if "*" not in text:
        return FQDNMatcher(selector, "exact", text)
    subdomains = _is_subdomain_wildcard(text)
    rest = text[_leading_stars(text) + 1:] if subdomains else text
    labels = tuple(tuple(re.split(r"\*+", part)) for part in rest.split("."))
    return FQDNMatcher(selector, "glob", text, subdomains, labels)


@functools.lru_cache(maxsize=8192)
def compile_selector(selector: FQDNSelector) -> FQDNMatcher:
    """Compile (and cache) a `toFQDNs`/`rules.dns` selector.

    `matchName` is matched literally (fully qualified, lower-cased); `matchPattern` is
    sanitized, then matched per the module docstring.

    Raises:
        ValueError: neither or both fields set, or characters/length Cilium rejects.
    """
    name, pattern = selector.match_name, selector.match_pattern
    if bool(name) == bool(pattern):
        raise ValueError("an FQDN selector needs exactly one of matchName or matchPattern")
    if name:
        if len(name) > MAX_FQDN_LENGTH or not set(name) <= _NAME_ALLOWED:
            raise ValueError(f"matchName {name!r}: at most {MAX_FQDN_LENGTH} characters "
                             "of [-a-zA-Z0-9_.]")
        return _build(selector, sanitize_name(name))
    assert pattern is not None
    validate_pattern(pattern)
    return _build(selector, sanitize_pattern(pattern).lower())


def compile_pattern(pattern: str) -> FQDNMatcher:
    """`compile_selector` for a bare matchPattern."""
    return compile_selector(FQDNSelector(match_pattern=pattern))


def name_matches(selector: FQDNSelector, name: str) -> bool:
    """Does the DNS name (any case, with or without the final dot) match the selector?"""
    return compile_selector(selector).matches(name)


def selector_string(selector: FQDNSelector) -> str:
    """The text of a selector's `fqdn:` label: matchName, else matchPattern, as written.

    Cilium `FQDNSelector.IdentityLabel()` uses the field verbatim, so `matchName: cilium.io`
    gives `fqdn:cilium.io` (no final dot) and `matchPattern: "*cilium.io."` gives
    `fqdn:*cilium.io.`. (Its `String()` is a debug form, `MatchName: x, MatchPattern: y`.)
    """
    return selector.match_name or selector.match_pattern or ""


def selector_label(selector: FQDNSelector) -> Label:
    """The identity label `fqdn:<selector string>` an FQDN identity carries."""
    return Label(SOURCE_FQDN, selector_string(selector))


def labels_for_name(name: str, selectors: Iterable[FQDNSelector]) -> LabelSet:
    """`fqdn:` labels of every selector that matches `name` (Cilium `deriveLabelsForNames`).

    The world label an FQDN identity also carries is added where the identity is built.
    """
    normalized = sanitize_name(name)
    return LabelSet(selector_label(s) for s in selectors
                    if compile_selector(s).matches_normalized(normalized))
