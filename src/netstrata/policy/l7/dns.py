"""DNS L7 rules (`toPorts[].rules.dns[]`, Cilium reference §1.5.1 and §6).

The DNS proxy looks only at the query name (never the qtype); it must match some entry, else
the proxy answers REFUSED (or NXDOMAIN with `--tofqdns-dns-reject-response-code=nameError`).
Pure: no sockets, no clock; the name syntax lives in `fqdn/matchpattern.py`.

One difference from `toFQDNs` selectors, as in Cilium's DNS proxy (`GeneratePattern`): a
match-all pattern (`*`, `**`, `*.`) allows *every* query name there, odd ones included, while
as an FQDN selector it matches only well-formed names. A rule may carry both `matchName` and
`matchPattern` (Cilium's `PortRuleDNS` allows it); either one matching is enough. An empty rule
list means no L7 restriction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final, NamedTuple

from netstrata.api.types import DNSRule, FQDNSelector
from netstrata.fqdn.matchpattern import (
    FQDNMatcher,
    compile_selector,
    is_dns_wildcard,
    sanitize_name,
)

RCODE_NXDOMAIN: Final = 3
RCODE_REFUSED: Final = 5


def reject_rcode(name_error: bool = False) -> int:
    """RCODE for a refused query: REFUSED (5), or NXDOMAIN (3) in `nameError` mode."""
    return RCODE_NXDOMAIN if name_error else RCODE_REFUSED


class DNSVerdict(NamedTuple):
    """Result of `dns_allowed`: unpacks as (allowed, rule_index)."""

    allowed: bool
    rule_index: int | None
    """Index of the first rule that matched; None when denied or when there are no rules."""


@functools.lru_cache(maxsize=4096)
def _matchers(rule: DNSRule) -> tuple[FQDNMatcher, ...] | None:
    """The rule's matchers, or None when it allows every name (a match-all pattern).

    Raises:
        ValueError: a name or pattern Cilium rejects.
    """
    out = []
    if rule.match_pattern:
        if is_dns_wildcard(rule.match_pattern.strip()):
            return None
        out.append(compile_selector(FQDNSelector(match_pattern=rule.match_pattern)))
    if rule.match_name:
        out.append(compile_selector(FQDNSelector(match_name=rule.match_name)))
    return tuple(out)


def dns_rule_matches(rule: DNSRule, qname: str) -> bool:
    """Does the query name (any case, final dot optional) match this one rule?"""
    matchers = _matchers(rule)
    if matchers is None:
        return True
    name = sanitize_name(qname)
    return any(m.matches_normalized(name) for m in matchers)


def dns_allowed(rules: Iterable[DNSRule], qname: str) -> DNSVerdict:
    """OR of the rules for one query name. No rules at all: allowed, index None."""
    seen = False
    for index, rule in enumerate(rules):
        seen = True
        if dns_rule_matches(rule, qname):
            return DNSVerdict(True, index)
    return DNSVerdict(not seen, None)
