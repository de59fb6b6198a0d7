"""L7 verdicts of the reference datapath: the proxy's rule-set check, in Python.

The proxy allows a request if any entry of the port's rule set applies to the peer identity and
either has no L7 restriction or has a rule that matches (reference §3.3). The matchers are the
ones the proxy itself uses (`policy.l7`, `fqdn`), so both give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from netstrata.policy.types import L7Policy


@dataclass(frozen=True, slots=True)
class L7Verdict:
    allowed: bool
    cookie: int | None
    """The entry that allowed it (None when denied)."""


def l7_check(policy: L7Policy, peer_identity: int, request: object) -> L7Verdict:
    """Check one parsed request (HTTPRequest, KafkaRequest or a DNS query name)."""
    from netstrata.policy import l7 as matchers

    for entry in policy.entries:
        if entry.identities is not None and peer_identity not in entry.identities:
            continue
        if entry.rules is None:
            return L7Verdict(True, entry.cookie)
        if matchers.rules_allow(policy.parser, entry.rules, request):
            return L7Verdict(True, entry.cookie)
    return L7Verdict(False, None)
