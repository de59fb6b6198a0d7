"""Kubernetes kinds, the compact Workload kind, CiliumCIDRGroup, `kind: List` and dispatch."""

from __future__ import annotations

import sys
import types as pytypes

import pytest
from apitestkit import SOURCE, line_of, only_problem, parse, problems

from netstrata.api import manifests
from netstrata.api import types as t
from netstrata.api._yaml import Located
from netstrata.errors import ManifestError, ManifestProblem
from netstrata.labels import Selector


def np(spec: str, ns: str = "x") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            f"metadata: {{name: n, namespace: {ns}}}\nspec:\n{body}\n")


# ---------------------------------------------------------------- NetworkPolicy


def test_network_policy_roundtrip() -> None:
    text = np("""
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
    namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y]}]}
  - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
  ports:
  - port: 80
  - {protocol: UDP, port: serve-81-udp}
  - {protocol: SCTP, port: 1000, endPort: 2000}
  - {protocol: TCP}
- {}
egress:
- to: []
""")
    (pol,) = parse(text).network_policies
    assert (pol.name, pol.namespace) == ("n", "x")
    assert pol.pod_selector == Selector.from_k8s({"pod": "a"})
    assert pol.policy_types == ("Ingress", "Egress")
    first, everyone = pol.ingress
    assert first.peers == (
        t.NetworkPolicyPeer(pod_selector=Selector.from_k8s({"pod": "b"}),
                            namespace_selector=Selector.from_k8s(None, [("ns", "In", ["y"])])),
        t.NetworkPolicyPeer(ip_block=t.IPBlock("10.0.0.0/8", ("10.1.0.0/16",))),
    )
    assert first.ports == (
        t.NetworkPolicyPort("TCP", 80), t.NetworkPolicyPort("UDP", "serve-81-udp"),
        t.NetworkPolicyPort("SCTP", 1000, 2000), t.NetworkPolicyPort("TCP", None),
    )
    assert everyone == t.NetworkPolicyRule()
    assert pol.egress == (t.NetworkPolicyRule(),)
    assert pol.source == t.SourceRef(SOURCE, 1)


@pytest.mark.parametrize("spec,types", [
    ("podSelector: {}", ("Ingress",)),
    ("podSelector: {}\negress: []", ("Ingress",)),
    ("podSelector: {}\negress: [{}]", ("Ingress", "Egress")),
    ("podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]", ("Egress",)),
    ("podSelector: {}\npolicyTypes: [Ingress, Egress, Ingress]", None),
])
def test_policy_types_defaulting(spec: str, types: tuple[str, ...] | None) -> None:
    """API defaulting: Ingress always, plus Egress when egress has rules; written types kept."""
    if types is None:
        assert "at most 2 items" in only_problem(np(spec)).render()
        return
    assert parse(np(spec)).network_policies[0].policy_types == types


def test_namespace_defaults_to_default() -> None:
    text = np("podSelector: {}").replace(", namespace: x", "")
    assert parse(text).network_policies[0].namespace == "default"


NP_REJECTS = [
    ("ports: [{protocol: tcp, port: 80}]", "ingress[0].ports[0].protocol", "one of TCP, UDP, SCTP"),
    ("ports: [{port: '80'}]", "ingress[0].ports[0].port", "lower-case letters"),
    ("ports: [{port: 0}]", "ingress[0].ports[0].port", "a port number 1-65535"),
    ("ports: [{endPort: 90}]", "ingress[0].ports[0].endPort", "may not be specified when port"),
    ("ports: [{port: http, endPort: 90}]", "ingress[0].ports[0].endPort", "named port"),
    ("ports: [{port: 100, endPort: 90}]", "ingress[0].ports[0].endPort", "at least port 100"),
    ("from: [{}]", "ingress[0].from[0]", "must specify a peer"),
    ("from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]", "ingress[0].from[0].ipBlock",
     "ipBlock alone"),
    ("from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]",
     "ingress[0].from[0].ipBlock.except[0]", "strict subset"),
    ("from: [{ipBlock: {cidr: 10.0.0.1}}]", "ingress[0].from[0].ipBlock.cidr", "address/length"),
    ("from: [{podSelector: {matchLabels: {'k8s:pod': a}}}]",
     "ingress[0].from[0].podSelector.matchLabels.k8s:pod", "a label key"),
]


@pytest.mark.parametrize("rule,field,says", NP_REJECTS, ids=[r[1] + ":" + r[2] for r in NP_REJECTS])
def test_network_policy_rejects(rule: str, field: str, says: str) -> None:
    text = np("podSelector: {}\ningress:\n- " + rule)
    problem = only_problem(text)
    assert problem.field == "spec." + field
    assert says in problem.render(), problem.render()
    assert problem.line == line_of(text, rule.split(":")[0].strip("{[ -'"))


def test_network_policy_needs_pod_selector_and_valid_types() -> None:
    found = problems(np("policyTypes: [Ingres]"))
    assert {p.field for p in found} == {"spec.podSelector", "spec.policyTypes[0]"}
    assert any("one of Ingress, Egress" in p.render() for p in found)


# ---------------------------------------------------------------- Namespace, Pod, Service


def test_namespace() -> None:
    text = """\
    apiVersion: v1
    kind: Namespace
    metadata:
      name: shop
      labels: {team: a, kubernetes.io/metadata.name: shop}
      annotations: {netstrata.io/cluster: east}
    """
    assert parse(text).namespaces == (
        t.Namespace("shop", (("kubernetes.io/metadata.name", "shop"), ("team", "a")), "east"),
    )


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
  annotations: {policy.cilium.io/proxy-visibility: "<Ingress/80/TCP/HTTP>"}
spec:
  serviceAccountName: web-sa
  nodeName: node-2
  restartPolicy: Always
  volumes: []
  containers:
  - name: app
    image: nginx
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 53, protocol: UDP}
  - name: sidecar
    image: envoy
    ports: [{name: admin, containerPort: 9901, protocol: TCP}]
status:
  phase: Running
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
"""


def test_pod_becomes_workload() -> None:
    (w,) = parse(POD).workloads
    assert w == t.Workload(
        name="web-1", namespace="shop", cluster="default", node="node-2",
        labels=(("app", "web"),), service_account="web-sa",
        ports=(t.ContainerPort(8080, "TCP", "http"), t.ContainerPort(53, "UDP"),
               t.ContainerPort(9901, "TCP", "admin")),
        kind="pod", ips=("10.0.0.5", "fd00::5"),
        annotations=(("policy.cilium.io/proxy-visibility", "<Ingress/80/TCP/HTTP>"),),
    )


def test_host_network_pod_and_defaults() -> None:
    text = ("apiVersion: v1\nkind: Pod\nmetadata: {name: h}\n"
            "spec: {hostNetwork: true, containers: [{name: c}]}\nstatus: {podIP: 192.0.2.1}\n")
    (w,) = parse(text).workloads
    assert (w.kind, w.namespace, w.service_account, w.ips) == (
        "host-network", "default", "default", ("192.0.2.1",))


def test_pod_typo_is_not_silently_ignored() -> None:
    problem = only_problem(POD.replace("serviceAccountName", "serviceAcountName"))
    assert problem.field == "spec.serviceAcountName"
    assert '(did you mean "serviceAccountName"?)' in problem.found
    assert problem.line == line_of(POD, "serviceAccountName")


def test_pod_port_name_rules() -> None:
    problem = only_problem(POD.replace("name: http,", "name: HTTP_port,"))
    assert problem.field == "spec.containers[0].ports[0].name"


def test_service() -> None:
    text = """\
    apiVersion: v1
    kind: Service
    metadata: {name: api, namespace: shop, labels: {tier: be}}
    spec:
      type: ClusterIP
      clusterIP: 10.96.0.10
      selector: {app: api}
      ports:
      - {name: http, port: 80, targetPort: 8080}
      - {name: grpc, port: 9090, targetPort: grpc, protocol: TCP}
      - {port: 53, protocol: UDP}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: ext}
    spec: {ports: [{port: 443}]}
    """
    api, ext = parse(text).services
    assert api == t.Service(
        name="api", namespace="shop", selector=(("app", "api"),),
        ports=(t.ServicePort(80, 8080, "TCP", "http"), t.ServicePort(9090, "grpc", "TCP", "grpc"),
               t.ServicePort(53, None, "UDP")),
        labels=(("tier", "be"),), cluster_ip="10.96.0.10",
    )
    assert ext.selector is None and ext.namespace == "default"


# ---------------------------------------------------------------- Workload, CIDR groups


def test_compact_workload() -> None:
    text = """\
    apiVersion: netstrata.io/v1alpha1
    kind: Workload
    metadata: {name: api, namespace: shop}
    spec:
      cluster: east
      node: node-1
      labels: {app: api}
      serviceAccount: api-sa
      ports: [{port: 8080, protocol: tcp, name: http, appProtocol: http}]
      annotations: {sidecar.istio.io/inject: "true"}
    ---
    apiVersion: netstrata.io/v1alpha1
    kind: Workload
    spec: {name: one.one.one.one, kind: external, ips: [1.1.1.1, "2606:4700::1111"], fqdn: one.one.one.one}
    """
    api, ext = parse(text).workloads
    assert api == t.Workload(
        name="api", namespace="shop", cluster="east", node="node-1", labels=(("app", "api"),),
        service_account="api-sa", ports=(t.ContainerPort(8080, "TCP", "http", "http"),),
        annotations=(("sidecar.istio.io/inject", "true"),),
    )
    assert (ext.kind, ext.ips, ext.fqdn, ext.namespace) == (
        "external", ("1.1.1.1", "2606:4700::1111"), "one.one.one.one", "default")


@pytest.mark.parametrize("body,field,says", [
    ("metadata: {name: a}\nspec: {name: b}", "spec.name", "the same name as metadata.name"),
    ("spec: {node: n}", "spec.name", "a workload name"),
    ("spec: {name: a, kind: vm}", "spec.kind", "one of pod, host-network, external, kube-apiserver"),
    ("spec: {name: a, ips: [1.2.3.999]}", "spec.ips[0]", "an IPv4 or IPv6 address"),
    ("spec: {name: a, ports: [{port: 0}]}", "spec.ports[0].port", "1-65535"),
])
def test_workload_rejects(body: str, field: str, says: str) -> None:
    problem = only_problem("apiVersion: netstrata.io/v1alpha1\nkind: Workload\n" + body + "\n")
    assert problem.field == field and says in problem.render(), problem.render()


@pytest.mark.parametrize("version", ["cilium.io/v2alpha1", "cilium.io/v2"])
def test_cidr_group(version: str) -> None:
    text = (f"apiVersion: {version}\nkind: CiliumCIDRGroup\nmetadata: {{name: ext, labels: {{a: b}}}}\n"
            "spec: {externalCIDRs: [1.0.0.0/8, '2606:4700:4700::/96']}\n")
    assert parse(text).cidr_groups == (
        t.CIDRGroup("ext", ("1.0.0.0/8", "2606:4700:4700::/96"), (("a", "b"),)),
    )


def test_cidr_group_rejects_bare_address() -> None:
    text = ("apiVersion: cilium.io/v2alpha1\nkind: CiliumCIDRGroup\nmetadata: {name: g}\n"
            "spec:\n  externalCIDRs:\n  - 1.0.0.0/8\n  - 1.2.3.4\n")
    problem = only_problem(text)
    assert (problem.field, problem.line) == ("spec.externalCIDRs[1]", 7)


# ---------------------------------------------------------------- dispatch, List, Istio


def test_list_is_expanded_and_errors_name_the_item() -> None:
    text = """\
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: Namespace
      metadata: {name: a}
    - apiVersion: cilium.io/v2
      kind: CiliumNetworkPolicy
      metadata: {name: p, namespace: a}
      spec:
        endpointSelector: {}
        ingress: [{fromEntities: [everything]}]
    """
    problem = only_problem(text)
    assert problem.field == "items[1].spec.ingress[0].fromEntities[0]"
    assert problem.line == line_of(text, "everything")
    fixed = parse(text.replace("everything", "all"))
    assert len(fixed.namespaces) == 1 and len(fixed.cilium_policies) == 1


@pytest.mark.parametrize("head,field,says", [
    ("apiVersion: apps/v1\nkind: Deployment", "kind", "a supported apiVersion and kind:"),
    ("apiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy", "apiVersion",
     "apiVersion cilium.io/v2 for kind CiliumNetworkPolicy"),
    ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicies", "kind",
     '(did you mean "CiliumNetworkPolicy"?)'),
    ("kind: Pod", "apiVersion", "found nothing"),
    ("apiVersion: v1\nkind: 3", "kind", "a kind such as"),
])
def test_unknown_kinds(head: str, field: str, says: str) -> None:
    problem = only_problem(head + "\nmetadata: {name: x}\n")
    assert problem.field == field and says in problem.render(), problem.render()


def test_unknown_kind_names_what_is_supported() -> None:
    problem = only_problem("apiVersion: apps/v1\nkind: Deployment\n")
    for supported in ("cilium.io/v2 CiliumNetworkPolicy", "networking.k8s.io/v1 NetworkPolicy",
                      "v1 Pod", "netstrata.io/v1alpha1 Workload", "security.istio.io"):
        assert supported in problem.expected
    assert problem.found == "apps/v1 Deployment"


def test_non_mapping_document() -> None:
    problem = only_problem("- just\n- a list\n")
    assert (problem.field, problem.line) == ("", 1)
    assert "a mapping with apiVersion and kind" in problem.expected


ISTIO = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: shop}
spec: {action: DENY}
"""


def test_istio_kept_raw_without_the_istio_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "ISTIO_MODULE", "netstrata.api.no_such_istio_module")
    (obj,) = parse(ISTIO).istio
    assert obj == {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                   "metadata": {"name": "deny", "namespace": "shop"}, "spec": {"action": "DENY"}}


def test_istio_handed_to_the_istio_module(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Located] = []

    def parse_istio_document(doc: Located) -> object:
        seen.append(doc)
        if doc.data["spec"].get("action") == "BAD":
            raise ManifestError([doc.problem(("spec", "action"), "ALLOW or DENY", "BAD")])
        return ("parsed", doc.data["metadata"]["name"])

    fake = pytypes.ModuleType("fake_istio")
    fake.parse_istio_document = parse_istio_document  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "netstrata.api.istio", fake)
    monkeypatch.setattr(manifests, "ISTIO_MODULE", "netstrata.api.istio")
    assert parse(ISTIO).istio == (("parsed", "deny"),)
    listed = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        ("- " if i == 0 else "  ") + line + "\n" for i, line in enumerate(ISTIO.splitlines()))
    assert parse(listed).istio == (("parsed", "deny"),)
    assert seen[-1].data["kind"] == "AuthorizationPolicy"
    assert seen[-1].where(("spec", "action")) == (7, 18)
    problem = only_problem(listed.replace("DENY", "BAD"))
    assert problem == ManifestProblem(SOURCE, 7, 18, "spec.action", "ALLOW or DENY", "BAD")
