"""L7 verdicts of the reference datapath: the proxy's rule-set check, in Python.

The proxy allows a request if any entry of the port's rule set applies to the peer identity and
either has no L7 restriction or has a rule that matches (reference §3.3). The matchers are the
ones the proxy itself uses (`policy.l7`, `fqdn`), so both give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from netstrata.policy.types import L7Policy


@dataclass(frozen=True, slots=True)
class L7Verdict:
    allowed: bool
    cookie: int | None
    """The entry that allowed it (None when denied)."""
    forwarded: object | None = None
    """The request as the proxy forwards it (header rewrites applied), when allowed."""


def l7_check(policy: L7Policy, peer_identity: int, request: object,
             secrets: SecretLookup | None = None) -> L7Verdict:
    """Check one parsed request (HTTPRequest, KafkaRequest or a DNS query name)."""
    for entry in policy.entries:
        if entry.identities is not None and peer_identity not in entry.identities:
            continue
        if entry.rules is None:
            return L7Verdict(True, entry.cookie, request)
        ok, forwarded = rules_allow(policy.parser, entry.rules, request, secrets)
        if ok:
            return L7Verdict(True, entry.cookie, forwarded)
    return L7Verdict(False, None)


SecretLookup = Callable[[str, str], "str | None"]


def rules_allow(parser: str, rules: tuple[object, ...], request: object,
                secrets: SecretLookup | None = None) -> tuple[bool, object]:
    """OR of one entry's rules for a request of that parser (the proxy's own matchers).

    Returns (allowed, the request as forwarded: HTTP header-mismatch actions applied).
    """
    from netstrata.policy import l7 as m

    if parser == "http" and isinstance(request, m.HTTPRequest):
        v = m.http_allowed(rules, request, secrets)  # type: ignore[arg-type]
        if v.allowed and v.header_actions:
            request = replace(request, headers=m.apply_header_actions(request.headers, v.header_actions))
        return v.allowed, request
    if parser == "kafka" and isinstance(request, m.KafkaRequest):
        return m.kafka_allowed(rules, request).allowed, request  # type: ignore[arg-type]
    if parser == "dns" and isinstance(request, str):
        return m.dns_allowed(rules, request).allowed, request  # type: ignore[arg-type]
    return False, request  # a request the rules' parser cannot read: fail closed
