"""The selector cache stays equal to a from-scratch evaluation through adds, relabels and removes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.labels import Label, LabelSet, Selector
from netstrata.policy.peers import NO_FACTS, LabelPeer
from netstrata.policy.selector_cache import SelectorCache

KEYS = ["app", "tier", "env"]
VALUES = ["a", "b", "c"]

label_sets = st.builds(
    lambda pairs: LabelSet(Label("k8s", k, v) for k, v in pairs),
    st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=3, unique_by=lambda t: t[0]),
)
requirements = st.one_of(
    st.tuples(st.sampled_from(KEYS), st.just("In"), st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)),
    st.tuples(st.sampled_from(KEYS), st.sampled_from(["NotIn"]), st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)),
    st.tuples(st.sampled_from(KEYS), st.sampled_from(["Exists", "DoesNotExist"]), st.just([])),
)
selectors = st.builds(lambda reqs: LabelPeer(Selector.from_k8s(None, reqs)), st.lists(requirements, max_size=3))
ops = st.lists(st.tuples(st.sampled_from(["upsert", "remove"]), st.integers(1, 6), label_sets), max_size=25)


@settings(max_examples=150, deadline=None)
@given(sels=st.lists(selectors, min_size=1, max_size=6), ops=ops)
def test_cache_matches_fresh_evaluation(sels, ops):
    cache = SelectorCache(NO_FACTS)
    for s in sels:
        cache.select(s)
    truth: dict[int, LabelSet] = {}
    for op, ident, labels in ops:
        if op == "upsert":
            changed = cache.upsert_identity(ident, labels)
            truth[ident] = labels
        else:
            changed = cache.remove_identity(ident)
            truth.pop(ident, None)
        del changed
        for s in sels:
            expected = {i for i, ls in truth.items() if s.selector.matches(ls)}
            assert cache.select(s) == expected, s.canonical()


def test_changed_selectors_are_reported():
    cache = SelectorCache(NO_FACTS)
    web = LabelPeer(Selector.from_k8s({"app": "web"}))
    db = LabelPeer(Selector.from_k8s({"app": "db"}))
    cache.select(web), cache.select(db)
    assert cache.upsert_identity(7, LabelSet([Label("k8s", "app", "web")])) == {web.canonical()}
    assert cache.upsert_identity(7, LabelSet([Label("k8s", "app", "db")])) == {web.canonical(), db.canonical()}
    assert cache.remove_identity(7) == {db.canonical()}
