"""Property: whatever the input, parsing either succeeds or raises ManifestError, and every
problem is located (file and line). Random documents and mutated valid manifests (keys deleted,
types swapped, unknown keys injected, random strings and numbers) are fed through YAML text.

`HYPOTHESIS_PROFILE=deep` runs many more examples than the fast default.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netstrata.api import ManifestSet, parse_documents
from netstrata.api._yaml import load_documents
from netstrata.errors import ManifestError

_EXAMPLES = {"fast": 200, "deep": 5000}
MAX_EXAMPLES = _EXAMPLES.get(os.environ.get("HYPOTHESIS_PROFILE", "fast"), _EXAMPLES["fast"])
SOURCE = "fuzz.yaml"

CORPUS: list[dict[str, Any]] = [
    {
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"a": "b"}},
        "specs": [{
            "endpointSelector": {"matchLabels": {"app": "web"},
                                 "matchExpressions": [{"key": "t", "operator": "In",
                                                       "values": ["x"]}]},
            "ingress": [
                {"fromEndpoints": [{"matchLabels": {"k8s:app": "c"}}],
                 "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}],
                              "rules": {"http": [{"method": "GET", "path": "/a.*",
                                                  "headerMatches": [{"name": "X", "value": "1"}]}]}}]},
                {"fromCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}]},
                {"fromEntities": ["world"], "icmps": [{"fields": [{"type": "EchoRequest"}]}]},
            ],
            "ingressDeny": [{"fromCIDR": ["192.0.2.1"], "toPorts": [{"ports": [{"port": "22"}]}]}],
            "egress": [
                {"toEndpoints": [{}], "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}],
                                                   "rules": {"dns": [{"matchPattern": "*"}]}}]},
                {"toFQDNs": [{"matchName": "a.example.com"}],
                 "toPorts": [{"ports": [{"port": "9092", "protocol": "TCP"}],
                              "rules": {"kafka": [{"role": "produce", "topic": "t"}]}}]},
                {"toServices": [{"k8sService": {"serviceName": "s", "namespace": "n"}}]},
            ],
            "enableDefaultDeny": {"egress": False},
            "labels": ["k=v"], "description": "d", "log": {"value": "x"},
        }],
    },
    {
        "apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
        "metadata": {"name": "host"},
        "spec": {"nodeSelector": {}, "ingress": [{"fromEntities": ["cluster"],
                                                  "toPorts": [{"ports": [{"port": "6443"}]}]}],
                 "egressDeny": [{"toCIDRSet": [{"cidrGroupRef": "g"}]}]},
    },
    {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {}},
                                       {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/24"]}}],
                              "ports": [{"port": 80, "endPort": 90}, {"port": "http", "protocol": "UDP"}]}],
                 "egress": [{}]},
    },
    {
        "apiVersion": "v1", "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
             "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}],
                      "serviceAccountName": "sa"},
             "status": {"podIPs": [{"ip": "10.0.0.1"}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
             "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": "http"}]}},
            {"apiVersion": "netstrata.io/v1alpha1", "kind": "Workload",
             "spec": {"name": "ext", "kind": "external", "ips": ["1.1.1.1"]}},
            {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumCIDRGroup",
             "metadata": {"name": "g"}, "spec": {"externalCIDRs": ["1.0.0.0/8"]}},
        ],
    },
]

INTERESTING = [
    "", "0", "80", "65535", "65536", "-1", "0x10", "http", "HTTP", "*", ".*", "(", "TCP", "tcp",
    "UDP", "ANY", "ICMP", "IPv4", "IPv6", "EchoRequest", "10.0.0.0/8", "10.0.0.0/33", "::/0",
    "1.2.3.4", "world", "all", "In", "Exists", "cilium.io/v2", "v1", "CiliumNetworkPolicy",
    "NetworkPolicy", "List", "k8s:app", "reserved:host", "a" * 300, "produce", "fetch", "null",
]
KEYS = sorted({
    "apiVersion", "kind", "metadata", "name", "namespace", "spec", "specs", "items", "labels",
    "endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny",
    "fromEndpoints", "toEndpoints", "fromRequires", "fromCIDR", "toCIDRSet", "fromEntities",
    "toFQDNs", "toServices", "toPorts", "ports", "port", "endPort", "protocol", "rules", "http",
    "dns", "kafka", "l7proto", "l7", "icmps", "fields", "type", "family", "matchLabels",
    "matchExpressions", "operator", "values", "key", "cidr", "except", "cidrGroupRef",
    "serverNames", "listener", "terminatingTLS", "authentication", "mode", "podSelector", "from",
    "to", "ipBlock", "policyTypes", "containers", "containerPort", "selector", "externalCIDRs",
})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16),
    st.sampled_from(INTERESTING),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10), st.integers(-3, 3))
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=16,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _swapped(value: Any) -> Any:
    """The same content in a different JSON type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return {}


def _replacement(draw: st.DrawFn, op: str, target: Any) -> Any:
    if op == "swap":
        return _swapped(target)
    if op == "string":
        return draw(st.one_of(st.text(max_size=20), st.sampled_from(INTERESTING)))
    if op == "int":
        return draw(st.integers(min_value=-70000, max_value=70000))
    if op == "empty":
        return draw(st.sampled_from([[], {}, ""]))
    if op == "null":
        return None
    return draw(json_like)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc: Any = copy.deepcopy(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(list(_paths(doc))))
        op = draw(st.sampled_from(
            ["delete", "replace", "inject", "swap", "string", "int", "empty", "null", "dup"]))
        target = _get(doc, path)
        if op == "inject" and isinstance(target, dict):
            target[draw(keys)] = draw(json_like)
            continue
        if op == "dup" and isinstance(target, list) and target:
            target.append(copy.deepcopy(target[draw(st.integers(0, len(target) - 1))]))
            continue
        new = _replacement(draw, op, target)
        if not path:
            doc = new
            continue
        parent = _get(doc, path[:-1])
        if op == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = new
    return doc


def _check(doc: Any) -> None:
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    try:
        docs = load_documents(text, SOURCE)
        result = parse_documents(docs)
    except ManifestError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.path == SOURCE and p.line is not None and p.column is not None, p
            assert p.expected and p.found, p
            assert "should" not in p.render() and "validation error" not in p.render()
            assert p.expected != "a valid value", p  # every reachable error type has wording
    else:
        assert isinstance(result, ManifestSet)


def test_corpus_is_valid() -> None:
    for doc in CORPUS:
        _check(doc)
        parse_documents(load_documents(yaml.safe_dump(doc), SOURCE))


@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_manifests_only_raise_manifest_error(doc: Any) -> None:
    _check(doc)


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    json_like,
    st.fixed_dictionaries(
        {"apiVersion": st.sampled_from(["cilium.io/v2", "networking.k8s.io/v1", "v1",
                                        "netstrata.io/v1alpha1", "cilium.io/v2alpha1"]),
         "kind": st.sampled_from(["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy",
                                  "NetworkPolicy", "Pod", "Service", "Namespace", "List",
                                  "Workload", "CiliumCIDRGroup"])},
        optional={"metadata": json_like, "spec": json_like, "specs": json_like,
                  "items": st.lists(json_like, max_size=3), "status": json_like},
    ),
))
def test_random_documents_only_raise_manifest_error(doc: Any) -> None:
    _check(doc)
