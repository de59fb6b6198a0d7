"""Trust-domain aliases (reference §8): which policy principals are rewritten, and how."""

from __future__ import annotations

from netstrata.mesh.trustdomain import TrustDomainBundle

US_EU = TrustDomainBundle.of("cluster-us", ["cluster-eu"])


def test_a_bundle_member_expands_to_every_member():
    assert US_EU.replace_aliases(["cluster-eu/ns/billing/sa/tx"]) == (
        "cluster-us/ns/billing/sa/tx", "cluster-eu/ns/billing/sa/tx")


def test_cluster_local_means_the_local_trust_domain_and_is_not_kept():
    bundle = TrustDomainBundle.of("cluster-us")
    assert bundle.replace_aliases(["cluster.local/ns/foo/sa/sleep"]) == (
        "cluster-us/ns/foo/sa/sleep",)


def test_foreign_trust_domain_is_kept_verbatim():
    assert US_EU.replace_aliases(["other-td/ns/foo/sa/bar"]) == ("other-td/ns/foo/sa/bar",)


def test_wildcard_trust_domain_and_short_forms_are_untouched():
    values = ["*/ns/foo/sa/bar", "ns/foo/sa/bar", "*", "cluster-us/ns/foo/*"]
    assert US_EU.replace_aliases(values)[:3] == ("*/ns/foo/sa/bar", "ns/foo/sa/bar", "*")


def test_suffix_trust_domain_matching_a_member_is_kept_as_is():
    bundle = TrustDomainBundle.of("old-td", ["new-td"])
    assert bundle.replace_aliases(["*-td/ns/foo/sa/bar"]) == ("*-td/ns/foo/sa/bar",)


def test_trust_domain_values_expand_to_the_bundle():
    assert US_EU.expand_aliases(["cluster-eu", "other"]) == ("cluster-us", "cluster-eu", "other")


def test_handshake_accepts_bundle_and_ca_trust_domains_only():
    assert US_EU.accepts_peer("cluster-eu/ns/a/sa/b")
    assert not US_EU.accepts_peer("cluster-apac/ns/a/sa/b")
    assert US_EU.accepts_peer("cluster-apac/ns/a/sa/b", ["cluster-apac"])
