"""Which labels form a security identity (reference §1.9 and §2.3).

A pod's identity labels are its filtered pod labels plus the labels Cilium derives (namespace,
namespace labels, service account, cluster), all of source `k8s`. Labels that differ per pod
(pod name, template hashes, job indexes, ...) must not be part of the identity, or every pod
would get its own identity and policy maps would explode.

The filter works the way Cilium's `labelsfilter` does, so that configured prefixes behave alike:

* a rule is `[source:][!]regex`; the regex must match at the start of the label key, and the
  length of that match is what counts (not the length of the pattern);
* a label is kept when the longest matching include is longer than the shortest matching
  exclude, or, when no include rule was configured by the user, when no exclude matches;
* configuring any include rule switches to allow-list mode (`reserved:.*` must stay in).

The default rules are the reference's table: Cilium's built-in list plus the exclusions the
reference adds (`batch.kubernetes.io/controller-uid`, `controller-uid`, `topology.kubernetes.io`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from netstrata.labels import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_NAMESPACE_LABELS_PREFIX,
    LABEL_SERVICE_ACCOUNT,
    SOURCE_K8S,
    Label,
    LabelSet,
)


@dataclass(frozen=True, slots=True)
class LabelRule:
    """One filter rule: include (or exclude) keys whose start matches `pattern`."""

    pattern: str
    """Regular expression matched at the start of the label key."""
    exclude: bool = False
    """True for `!` rules."""
    source: str | None = None
    """Only labels of this source; None for any source."""
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    @classmethod
    def parse(cls, text: str) -> LabelRule:
        """Parse Cilium's `--labels` syntax: `[source:][!]regex`.

        Raises:
            ValueError: empty pattern or invalid regex.
        """
        source, sep, rest = text.partition(":")
        if not sep:
            source, rest = "", text
        exclude = rest.startswith("!")
        pattern = rest[1:] if exclude else rest
        if not pattern:
            raise ValueError(f"label rule {text!r} has an empty pattern")
        try:
            return cls(pattern, exclude, source or None)
        except re.error as exc:
            raise ValueError(f"label rule {text!r}: {exc}") from exc

    def match_length(self, label: Label) -> int | None:
        """Length of the key prefix this rule matches, or None if it does not apply."""
        if self.source is not None and self.source != label.source:
            return None
        m = self._regex.match(label.key)
        return None if m is None else m.end()

    def __str__(self) -> str:
        return f"{self.source or ''}{':' if self.source else ''}{'!' if self.exclude else ''}{self.pattern}"


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """An ordered set of rules; `allow_list` is True once a user configured an include."""

    rules: tuple[LabelRule, ...]
    allow_list: bool = False

    def with_user_rules(self, texts: Iterable[str]) -> LabelFilter:
        """Add `--labels`-style rules; any include switches to allow-list mode."""
        extra = tuple(LabelRule.parse(t) for t in texts if t)
        allow = self.allow_list or any(not r.exclude for r in extra)
        return LabelFilter(self.rules + extra, allow)

    def is_identity_label(self, label: Label) -> bool:
        included, excluded = 0, 0
        for rule in self.rules:
            n = rule.match_length(label)
            if n is None:
                continue
            if rule.exclude:
                excluded = n if excluded == 0 or n < excluded else excluded
            elif n > included:
                included = n
        return (not self.allow_list and excluded == 0) or included > excluded

    def split(self, labels: Iterable[Label]) -> tuple[LabelSet, LabelSet]:
        """(identity labels, informational labels)."""
        keep: list[Label] = []
        drop: list[Label] = []
        for lb in labels:
            (keep if self.is_identity_label(lb) else drop).append(lb)
        return LabelSet(keep), LabelSet(drop)

    def filter(self, labels: Iterable[Label]) -> LabelSet:
        return self.split(labels)[0]


def _rules(*texts: str) -> tuple[LabelRule, ...]:
    return tuple(LabelRule.parse(t) for t in texts)


DEFAULT_LABEL_FILTER: Final = LabelFilter(_rules(
    "reserved:.*",
    re.escape(LABEL_NAMESPACE),
    re.escape(LABEL_NAMESPACE_LABELS_PREFIX.rstrip(".")),
    re.escape("app.kubernetes.io"),
    re.escape(LABEL_CLUSTER),
    re.escape(LABEL_SERVICE_ACCOUNT),
    r"!io\.kubernetes",
    r"!kubernetes\.io",
    r"!statefulset\.kubernetes\.io/pod-name",
    r"!apps\.kubernetes\.io/pod-index",
    r"!batch\.kubernetes\.io/job-completion-index",
    r"!batch\.kubernetes\.io/controller-uid",
    r"!.*beta\.kubernetes\.io",
    r"!k8s\.io",
    r"!pod-template-generation",
    r"!pod-template-hash",
    r"!controller-revision-hash",
    r"!controller-uid",
    r"!annotation.*",
    r"!etcd_node",
    r"!topology\.kubernetes\.io",
))
"""Cilium's default identity-label rules (reference §2.3). Not in allow-list mode: labels no rule
mentions are kept."""

DEFAULT_CLUSTER_NAME: Final = "default"
CILIUM_OWNED_PREFIX: Final = "io.cilium.k8s"
"""Pod labels under this prefix are Cilium's to set; a pod's own such labels are dropped."""


def identity_labels_for_pod(
    pod_labels: Mapping[str, str],
    namespace: str,
    namespace_labels: Mapping[str, str] | None = None,
    service_account: str | None = "default",
    cluster: str | None = DEFAULT_CLUSTER_NAME,
    *,
    label_filter: LabelFilter = DEFAULT_LABEL_FILTER,
) -> LabelSet:
    """The identity label set of a pod (reference §1.9, §2.3), every label of source `k8s`.

    Args:
        pod_labels: the pod's own labels.
        namespace: the pod's namespace (`io.kubernetes.pod.namespace`).
        namespace_labels: its namespace's labels, each becoming
            `io.cilium.k8s.namespace.labels.<key>` (include `kubernetes.io/metadata.name`, which
            the API server sets on every namespace).
        service_account: `io.cilium.k8s.policy.serviceaccount`; omitted when empty or None.
        cluster: `io.cilium.k8s.policy.cluster`; omitted when empty or None.
        label_filter: the identity-label rules (default: Cilium's).

    A pod cannot claim another namespace, namespace label, service account or cluster by
    labelling itself: like Cilium's `SanitizePodLabels`, pod labels under `io.cilium.k8s` are
    dropped and the derived labels overwrite any pod label with the same key.
    """
    merged: dict[str, str] = {str(k): str(v) for k, v in pod_labels.items()
                              if not str(k).startswith(CILIUM_OWNED_PREFIX)}
    for key, value in (namespace_labels or {}).items():
        merged[LABEL_NAMESPACE_LABELS_PREFIX + str(key)] = str(value)
    merged[LABEL_NAMESPACE] = namespace
    if service_account:
        merged[LABEL_SERVICE_ACCOUNT] = service_account
    if cluster:
        merged[LABEL_CLUSTER] = cluster
    return label_filter.filter(Label(SOURCE_K8S, k, v) for k, v in merged.items())


__all__ = [
    "CILIUM_OWNED_PREFIX",
    "DEFAULT_CLUSTER_NAME",
    "DEFAULT_LABEL_FILTER",
    "LabelFilter",
    "LabelRule",
    "identity_labels_for_pod",
]
