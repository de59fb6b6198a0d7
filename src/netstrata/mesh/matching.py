"""Value matchers with Envoy's semantics, built the way Istio's translator builds them.

Istio never evaluates policy itself: `pilot/pkg/security/authz/matcher/{string,header}.go`
turn each policy value into an Envoy `StringMatcher`, `HeaderMatcher`, path or URI-template
matcher, and Envoy evaluates those. This module is the pair of them in one step:

- `string_matcher(v, prefix)` = Istio `StringMatcherWithPrefix`: `*` is a *regex* `.+` (so the
  attribute must be present and non-empty), `*x` a suffix, `x*` a prefix, anything else exact.
  A `*` in the middle is a literal character (reference §5). With a prefix (`spiffe://` for
  principals) a suffix becomes the regex `prefix.*x`, so it still requires the prefix.
- `header_matcher(v)` = `HeaderMatcher`: `*` is `present_match` (present, even empty).
- `host_matcher(v)` = `HostMatcher`: as a header matcher, ignoring case.
- `path_matcher(v)`: a string matcher on the path without query, or, when `v` holds `{*}` or
  `{**}`, Envoy's URI template (`*` one non-empty segment, `**` any rest, full match).
- `ip_matcher(v)`: Envoy `CidrRange`; a bare address is a /32 (/128).

Regexes are Envoy `safe_regex`, which RE2 full-matches; `re.fullmatch` here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal

MatchKind = Literal["exact", "prefix", "suffix", "regex", "present"]

# Envoy uri_template: the pchar set of RFC 3986 (minus `*`), `**` may also cross `/`.
_TEMPLATE_LITERAL: Final = r"a-zA-Z0-9\-._~%!$&'()+,;:@="
_MATCH_ONE: Final = "{*}"
_MATCH_ANY: Final = "{**}"


@dataclass(frozen=True, slots=True)
class StringMatcher:
    """One Envoy string (or header) matcher."""

    kind: MatchKind
    value: str = ""
    ignore_case: bool = False

    def matches(self, text: str | None) -> bool:
        """Whether `text` matches; an absent attribute (None) never does."""
        if text is None:
            return False
        if self.kind == "present":
            return True
        if self.kind == "regex":
            return re.fullmatch(self.value, text, re.DOTALL) is not None
        subject, value = (text.lower(), self.value.lower()) if self.ignore_case else (
            text, self.value)
        if self.kind == "exact":
            return subject == value
        if self.kind == "prefix":
            return subject.startswith(value)
        return subject.endswith(value)

    def describe(self) -> str:
        return f"{self.kind} {self.value!r}" if self.kind != "present" else "present"


def string_matcher(value: str, prefix: str = "") -> StringMatcher:
    """Istio `StringMatcherWithPrefix(value, prefix)`."""
    if value == "*":
        return StringMatcher("regex", ".+")
    if value.startswith("*"):
        if not prefix:
            return StringMatcher("suffix", value[1:])
        return StringMatcher("regex", re.escape(prefix) + ".*" + re.escape(value[1:]))
    if value.endswith("*"):
        return StringMatcher("prefix", prefix + value[:-1])
    return StringMatcher("exact", prefix + value)


def header_matcher(value: str, ignore_case: bool = False) -> StringMatcher:
    """Istio `HeaderMatcher` (`ignore_case` = `HostMatcher`)."""
    if value == "*":
        return StringMatcher("present")
    if value.startswith("*"):
        return StringMatcher("suffix", value[1:], ignore_case)
    if value.endswith("*"):
        return StringMatcher("prefix", value[:-1], ignore_case)
    return StringMatcher("exact", value, ignore_case)


def host_matcher(value: str) -> StringMatcher:
    return header_matcher(value, ignore_case=True)


def is_path_template(value: str) -> bool:
    return _MATCH_ONE in value or _MATCH_ANY in value


def _template_regex(template: str) -> str:
    """Envoy `uri_template` → regex: `{*}` → `[pchar]+`, `{**}` → `[pchar/]*`."""
    out = []
    for piece in re.split(r"(\{\*\*\}|\{\*\})", template):
        if piece == _MATCH_ANY:
            out.append(f"[{_TEMPLATE_LITERAL}/]*")
        elif piece == _MATCH_ONE:
            out.append(f"[{_TEMPLATE_LITERAL}]+")
        else:
            out.append(re.escape(piece))
    return "".join(out)


def path_matcher(value: str) -> StringMatcher:
    """Matcher for an `operation.paths` value; apply it to the path without query."""
    if is_path_template(value):
        return StringMatcher("regex", _template_regex(value))
    return string_matcher(value)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class IPMatcher:
    """Envoy `CidrRange` membership."""

    network: IPNetwork

    def matches(self, address: str | None) -> bool:
        ip = parse_ip(address)
        return ip is not None and ip.version == self.network.version and ip in self.network

    def describe(self) -> str:
        return f"cidr {self.network}"


def parse_ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, or None when absent or unparsable (a zone `%eth0` is dropped)."""
    if not address:
        return None
    try:
        return ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None


def ip_matcher(value: str) -> IPMatcher:
    """Istio `AddrStrToCidrRange`: `10.1.2.3` is a /32, host bits of a CIDR are ignored."""
    addr, slash, bits = value.partition("/")
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    length = int(bits) if slash else ip.max_prefixlen
    return IPMatcher(ipaddress.ip_network(f"{ip}/{length}", strict=False))


def split_ports(value: str) -> frozenset[int]:
    """A capture annotation port list (`"8080, 9090"`) as integers; `*` and junk are ignored."""
    out = set()
    for part in value.split(","):
        part = part.strip()
        if part.isdigit():
            out.add(int(part))
    return frozenset(out)


def in_ranges(address: str | None, ranges: str) -> bool:
    """Whether `address` is inside any CIDR of a comma-separated annotation (`*` = all)."""
    ip = parse_ip(address)
    if ip is None:
        return False
    for part in ranges.split(","):
        part = part.strip()
        if part == "*":
            return True
        try:
            if ip in ipaddress.ip_network(part, strict=False):
                return True
        except ValueError:
            continue
    return False


__all__ = [
    "IPMatcher",
    "StringMatcher",
    "header_matcher",
    "host_matcher",
    "in_ranges",
    "ip_matcher",
    "is_path_template",
    "parse_ip",
    "path_matcher",
    "split_ports",
    "string_matcher",
]
