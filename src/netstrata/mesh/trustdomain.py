"""Trust domains: the handshake check and the rewriting of policy principals (reference §8).

Istio keeps policies written against one trust domain working after a migration or across
clusters by rewriting them (`pilot/pkg/security/trustdomain/bundle.go`): the *bundle* is the
mesh trust domain followed by its aliases, and a policy principal `<td>/ns/<ns>/sa/<sa>` whose
`<td>` is in the bundle, or is literally `cluster.local` ("the local trust domain"), becomes one
principal per bundle entry. Principals with a `*` trust domain, or not in five-part form, or
naming a foreign trust domain, are kept as written. `trustDomains` / `source.trustDomain`
values equal to a bundle entry expand to the whole bundle.

Separately, the inbound TLS context only accepts client certificates whose SPIFFE trust domain
is in the bundle or in `caCertificates[].trustDomains`
(`pilot/pkg/networking/plugin/authn/util.go`), unless validation is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

LOCAL_TRUST_DOMAIN: Final = "cluster.local"
"""The literal Istio treats as "this mesh's trust domain" in policies."""


def _prefix_match(text: str, pattern: str) -> bool:
    return pattern.endswith("*") and text.startswith(pattern[:-1])


def _suffix_match(text: str, pattern: str) -> bool:
    return pattern.startswith("*") and text.endswith(pattern[1:])


def _string_match(text: str, patterns: Iterable[str]) -> bool:
    """bundle util.go stringMatch: the pattern may be on either side."""
    return any(
        text == p or p == "*" or _prefix_match(text, p) or _prefix_match(p, text)
        or _suffix_match(text, p) or _suffix_match(p, text)
        for p in patterns)


@dataclass(frozen=True, slots=True)
class TrustDomainBundle:
    """The mesh trust domain first, then its aliases."""

    trust_domains: tuple[str, ...]

    @classmethod
    def of(cls, trust_domain: str, aliases: Iterable[str] = ()) -> TrustDomainBundle:
        return cls((trust_domain, *aliases))

    def replace_aliases(self, principals: Iterable[str]) -> tuple[str, ...]:
        """bundle.go ReplaceTrustDomainAliases, order kept, duplicates per principal dropped."""
        out: list[str] = []
        for principal in principals:
            parts = principal.split("/")
            if len(parts) != 5 or parts[0] == "*":
                out.append(principal)  # the trust domain is not enforced by this principal
                continue
            td = parts[0]
            if not (_string_match(td, self.trust_domains) or td == LOCAL_TRUST_DOMAIN):
                out.append(principal)  # a foreign trust domain matches only itself
                continue
            expanded: list[str] = []
            for bundle_td in self.trust_domains:
                # a `*-td` style trust domain that already covers this entry is kept as is
                new = principal if _suffix_match(bundle_td, td) else "/".join(
                    [bundle_td, *parts[1:]])
                if new not in expanded:
                    expanded.append(new)
            out.extend(expanded)
        return tuple(out)

    def expand_aliases(self, values: Iterable[str]) -> tuple[str, ...]:
        """bundle.go ExpandTrustDomainAliases (for `trustDomains` / `source.trustDomain`)."""
        out: list[str] = []
        for v in values:
            for item in (self.trust_domains if v in self.trust_domains else (v,)):
                if item not in out:
                    out.append(item)
        return tuple(out)

    def accepts_peer(self, principal: str, extra: Iterable[str] = ()) -> bool:
        """Whether the inbound handshake accepts a client with this SPIFFE ID (no spiffe://)."""
        td = principal.split("/", 1)[0]
        return td in self.trust_domains or td in tuple(extra)


__all__ = ["LOCAL_TRUST_DOMAIN", "TrustDomainBundle"]
