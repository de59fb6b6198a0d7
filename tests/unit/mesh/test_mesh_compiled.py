"""Compiled policy sets: snapshots follow policy changes, and the path index of a RuleSet
finds the same first match as scanning every rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from meshtestkit import NOW, ap, http, mtls, objects, workload

from netstrata.mesh.attributes import build_attributes
from netstrata.mesh.authz import evaluate
from netstrata.mesh.compiled import PolicySet, policy_set, rule_set
from netstrata.mesh.rules import compile_policy
from netstrata.mesh.trustdomain import TrustDomainBundle

ALLOW_A = ap(
    "foo",
    "allow-a",
    """
action: ALLOW
rules: [{to: [{operation: {paths: ["/a/*"]}}]}]
""",
)
ALLOW_B = ap(
    "foo",
    "allow-b",
    """
action: ALLOW
rules: [{to: [{operation: {paths: ["/b"]}}]}]
""",
)


def test_a_policy_change_is_a_new_snapshot_and_the_old_one_comes_back_from_the_cache():
    first, second = objects(ALLOW_A), objects(ALLOW_B)
    request = http("/a/x", wl=workload())
    assert evaluate(first, request, mtls(), now=NOW).decided_by == "ns[foo]-policy[allow-a]-rule[0]"
    assert evaluate(second, request, mtls(), now=NOW).outcome == "deny-403"
    assert evaluate(first, request, mtls(), now=NOW).allowed
    assert policy_set(first) is policy_set(list(first))  # same objects, same snapshot
    assert policy_set(first).version != policy_set(second).version


def test_workloads_with_other_labels_get_their_own_compiled_policies():
    ps = PolicySet(
        objects(
            ap(
                "foo",
                "sel",
                """
selector: {matchLabels: {app: httpbin}}
action: ALLOW
rules: [{}]
""",
            )
        )
    )
    assert ps.workload(workload()).applicable
    assert not ps.workload(workload(name="other")).applicable
    assert ps.workload(workload()) is ps.workload(workload())


_SEGMENT = st.sampled_from(["a", "b", "ab", "x.png", ""])
_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
_VALUE = st.one_of(
    _PATH,  # exact
    _PATH.map(lambda p: p + "*"),  # prefix
    _PATH.map(lambda p: "*" + p),  # suffix
    st.just("*"),  # presence (regex: not indexable)
    st.just("/a/{*}"),  # URI template (not indexable)
)


def _policies(specs: list[tuple[list[str], list[str]]]) -> list:
    text = ""
    for i, (paths, methods) in enumerate(specs):
        op = {"paths": paths} | ({"methods": methods} if methods else {})
        text += ap("foo", f"p{i:02d}", f"action: DENY\nrules: [{{to: [{{operation: {op}}}]}}]")
    return objects(text)


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.lists(_VALUE, min_size=1, max_size=3),
            st.lists(st.sampled_from(["GET", "POST"]), max_size=1),
        ),
        min_size=1,
        max_size=12,
    ),
    path=_PATH,
    method=st.sampled_from(["GET", "POST"]),
)
def test_the_path_index_finds_the_first_match_of_a_full_scan(specs, path, method):
    bundle = TrustDomainBundle.of("cluster.local")
    rules = [r for p in _policies(specs) for r in compile_policy(p, bundle, for_tcp=False)]
    attrs = build_attributes(http(path, method=method, wl=workload()), mtls(), target=path)
    plain, indexed = rule_set(rules, index=False), rule_set(rules)
    assert indexed.indexed
    assert indexed.first_match(attrs) is plain.first_match(attrs)
