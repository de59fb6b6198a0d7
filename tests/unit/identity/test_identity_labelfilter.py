"""Which labels form an identity: the reference §2.3 table and the §1.9 derived labels."""

from __future__ import annotations

import pytest

from netstrata.identity import (
    DEFAULT_LABEL_FILTER,
    LabelFilter,
    LabelRule,
    identity_labels_for_pod,
)
from netstrata.labels import Label, LabelSet

# Keys the reference's "Included" column keeps (as pod labels, source k8s).
INCLUDED = [
    "io.kubernetes.pod.namespace",
    "io.cilium.k8s.namespace.labels.team",
    "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name",
    "app.kubernetes.io/name",
    "app.kubernetes.io/part-of",
    "io.cilium.k8s.policy.cluster",
    "io.cilium.k8s.policy.serviceaccount",
    "app",
    "tier",
    "version",
    "example.com/owner",
    "k8s-app",  # starts like "k8s.io" but is an ordinary label
]

# Keys the reference's "Excluded" column drops.
EXCLUDED = [
    "io.kubernetes.pod.name",
    "io.kubernetes.container.name",
    "kubernetes.io/hostname",
    "kubernetes.io/metadata.name",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/job-completion-index",
    "batch.kubernetes.io/controller-uid",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "k8s.io/cluster-autoscaler",
    "pod-template-generation",
    "pod-template-hash",
    "controller-revision-hash",
    "controller-uid",
    "annotation.io.kubernetes.container.hash",
    "annotations",
    "etcd_node",
    "topology.kubernetes.io/zone",
]


@pytest.mark.parametrize("key", INCLUDED)
def test_included_keys(key: str) -> None:
    assert DEFAULT_LABEL_FILTER.is_identity_label(Label("k8s", key, "v"))


@pytest.mark.parametrize("key", EXCLUDED)
def test_excluded_keys(key: str) -> None:
    assert not DEFAULT_LABEL_FILTER.is_identity_label(Label("k8s", key, "v"))


def test_reserved_labels_are_always_identity_labels() -> None:
    assert DEFAULT_LABEL_FILTER.is_identity_label(Label("reserved", "host"))


def test_longest_include_beats_shortest_exclude() -> None:
    # "io.kubernetes.pod.namespace" is both excluded (io.kubernetes, 13 chars) and included
    # (the full key, 27 chars): the longer match decides.
    f = LabelFilter((LabelRule.parse("!foo"), LabelRule.parse("foo.bar")))
    assert f.is_identity_label(Label("k8s", "foo.bar.baz"))
    assert not f.is_identity_label(Label("k8s", "foo.baz"))
    assert f.is_identity_label(Label("k8s", "other"))  # no include configured by a user


def test_match_length_is_the_regex_match_not_the_pattern() -> None:
    # `.*beta\.kubernetes\.io` matches the whole namespace-label key below, which is longer than
    # the namespace-labels include, so Cilium drops it too.
    key = "io.cilium.k8s.namespace.labels.beta.kubernetes.io/x"
    assert not DEFAULT_LABEL_FILTER.is_identity_label(Label("k8s", key, "v"))


def test_user_include_switches_to_allow_list_mode() -> None:
    f = DEFAULT_LABEL_FILTER.with_user_rules(["k8s:app"])
    assert f.allow_list
    assert f.is_identity_label(Label("k8s", "app", "web"))
    assert f.is_identity_label(Label("k8s", "io.kubernetes.pod.namespace", "ns"))
    assert not f.is_identity_label(Label("k8s", "tier", "db"))
    assert f.is_identity_label(Label("reserved", "world"))
    # A source-qualified rule applies to that source only.
    assert not f.is_identity_label(Label("container", "app", "web"))
    # Exclude-only user rules keep deny-list mode.
    g = DEFAULT_LABEL_FILTER.with_user_rules(["!tier", ""])
    assert not g.allow_list
    assert not g.is_identity_label(Label("k8s", "tier", "db"))
    assert g.is_identity_label(Label("k8s", "app", "web"))


@pytest.mark.parametrize("bad", ["", "k8s:", "!", "k8s:!", "(unclosed"])
def test_bad_rules(bad: str) -> None:
    with pytest.raises(ValueError):
        LabelRule.parse(bad)


def test_rule_str_round_trips() -> None:
    for text in ["k8s:!io\\.kubernetes", "app", "reserved:.*"]:
        assert str(LabelRule.parse(text)) == text


def test_split_returns_identity_and_information_labels() -> None:
    keep, drop = DEFAULT_LABEL_FILTER.split(
        [Label("k8s", "app", "web"), Label("k8s", "pod-template-hash", "x1")])
    assert keep == LabelSet([Label("k8s", "app", "web")])
    assert drop == LabelSet([Label("k8s", "pod-template-hash", "x1")])


def test_pod_identity_labels() -> None:
    labels = identity_labels_for_pod(
        {"app": "web", "pod-template-hash": "7d9f", "app.kubernetes.io/name": "shop",
         "statefulset.kubernetes.io/pod-name": "web-0"},
        "prod",
        {"kubernetes.io/metadata.name": "prod", "team": "a"},
        "web-sa",
        "east",
    )
    assert labels == LabelSet([
        Label("k8s", "app", "web"),
        Label("k8s", "app.kubernetes.io/name", "shop"),
        Label("k8s", "io.kubernetes.pod.namespace", "prod"),
        Label("k8s", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", "prod"),
        Label("k8s", "io.cilium.k8s.namespace.labels.team", "a"),
        Label("k8s", "io.cilium.k8s.policy.serviceaccount", "web-sa"),
        Label("k8s", "io.cilium.k8s.policy.cluster", "east"),
    ])
    assert all(lb.source == "k8s" for lb in labels)


def test_pod_defaults_and_omissions() -> None:
    labels = identity_labels_for_pod({"app": "a"}, "ns")
    assert Label("k8s", "io.cilium.k8s.policy.cluster", "default") in labels
    assert Label("k8s", "io.cilium.k8s.policy.serviceaccount", "default") in labels
    bare = identity_labels_for_pod({"app": "a"}, "ns", None, "", None)
    assert {lb.key for lb in bare} == {"app", "io.kubernetes.pod.namespace"}


def test_pod_cannot_spoof_derived_labels() -> None:
    labels = identity_labels_for_pod(
        {"app": "x", "io.kubernetes.pod.namespace": "kube-system",
         "io.cilium.k8s.namespace.labels.team": "admins",
         "io.cilium.k8s.policy.serviceaccount": "root",
         "io.cilium.k8s.policy.cluster": "other"},
        "tenant", {"team": "tenants"}, "", "east")
    assert labels == LabelSet([
        Label("k8s", "app", "x"),
        Label("k8s", "io.kubernetes.pod.namespace", "tenant"),
        Label("k8s", "io.cilium.k8s.namespace.labels.team", "tenants"),
        Label("k8s", "io.cilium.k8s.policy.cluster", "east"),
    ])


def test_same_pod_labels_modulo_per_pod_noise_give_equal_sets() -> None:
    a = identity_labels_for_pod({"app": "web", "pod-template-hash": "a1",
                                 "controller-revision-hash": "r1"}, "ns")
    b = identity_labels_for_pod({"app": "web", "pod-template-hash": "b2",
                                 "controller-revision-hash": "r2"}, "ns")
    assert a == b


def test_custom_filter_is_applied() -> None:
    f = DEFAULT_LABEL_FILTER.with_user_rules(["k8s:app"])
    labels = identity_labels_for_pod({"app": "web", "tier": "db"}, "ns", label_filter=f)
    # The derived labels stay: the default includes name them (reference §2.3 "Included").
    assert {lb.key for lb in labels} == {"app", "io.kubernetes.pod.namespace",
                                         "io.cilium.k8s.policy.cluster",
                                         "io.cilium.k8s.policy.serviceaccount"}
