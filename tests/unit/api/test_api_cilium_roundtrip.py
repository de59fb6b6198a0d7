"""Valid CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy manifests become the expected
`api.types` dataclasses (reference §1.2-§1.7): every field, absent vs empty, normalisation."""

from __future__ import annotations

from apitestkit import SOURCE, cnp, line_of, parse

from netstrata.api import types as t
from netstrata.labels import Selector


def sel(**labels: str) -> Selector:
    return Selector.from_k8s(labels)


def only_rule(text: str) -> t.Rule:
    ms = parse(text)
    assert len(ms.cilium_policies) == 1
    (rule,) = ms.cilium_policies[0].rules
    return rule


def test_envelope_origin_and_source_lines() -> None:
    text = """\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata:
      name: web
      namespace: shop
    specs:
    - endpointSelector: {matchLabels: {app: web}}
      ingress: [{}]
    - endpointSelector: {matchLabels: {app: db}}
      egress: [{}]
    """
    (policy,) = parse(text).cilium_policies
    assert (policy.kind, policy.name, policy.namespace) == ("CiliumNetworkPolicy", "web", "shop")
    assert policy.source == t.SourceRef(SOURCE, 1)
    first, second = policy.rules
    assert first.origin == t.RuleOrigin("CiliumNetworkPolicy", "web", "shop", 0,
                                        t.SourceRef(SOURCE, line_of(text, "app: web")))
    assert second.origin.spec_index == 1
    assert second.origin.source.line == line_of(text, "app: db")
    assert first.endpoint_selector == sel(app="web")
    assert first.ingress == (t.PeerRule(),)
    assert second.egress == (t.PeerRule(),)


def test_spec_and_specs_together_spec_first() -> None:
    text = cnp("""
    endpointSelector: {}
    ingress: [{}]
    """).replace("spec:", "specs:\n- endpointSelector: {}\n  egress: [{}]\nspec:")
    rules = parse(text).cilium_policies[0].rules
    assert [r.origin.spec_index for r in rules] == [None, 0]


def test_absent_vs_empty_lists() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    ingress:
    - fromEndpoints: []
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    - fromEntities: []
    - {}
    egress:
    - toFQDNs: []
      icmps: []
    """))
    empty_ep, wildcard, no_entities, bare = rule.ingress
    assert empty_ep.endpoints == () and empty_ep.has_l3
    assert wildcard.endpoints is None and not wildcard.has_l3
    assert no_entities.entities == () and no_entities.to_ports is None
    assert bare == t.PeerRule()
    (eg,) = rule.egress
    assert eg.fqdns == () and eg.icmps == () and eg.to_ports is None
    assert rule.ingress_deny == () and rule.egress_deny == ()


def test_ports_are_normalised_strings() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    ingress:
    - toPorts:
      - ports:
        - {port: "8080", endPort: 8090, protocol: tcp}
        - {port: HTTP-Alt}
        - {port: "0", protocol: udp}
        - {port: "0x10", protocol: SCTP}
        - {port: "0", protocol: vrrp}
    """))
    (pr,) = rule.ingress[0].to_ports or ()
    assert pr.ports == (
        t.PortProtocol("8080", 8090, "TCP"),
        t.PortProtocol("http-alt", 0, "ANY"),
        t.PortProtocol("0", 0, "UDP"),
        t.PortProtocol("0x10", 0, "SCTP"),
        t.PortProtocol("0", 0, "VRRP"),
    )
    assert pr.ports[1].is_named and pr.ports[3].is_named and not pr.ports[0].is_named
    assert pr.rules is None


def test_cidr_fields() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    egress:
    - toCIDR: [10.0.0.1, 192.168.0.0/16, "2001:db8::/32"]
    - toCIDRSet:
      - {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.3.4/32]}
      - {cidrGroupRef: external}
      - cidrGroupSelector: {matchLabels: {team: a}}
    - toCIDR: []
      toCIDRSet: [{cidr: 0.0.0.0/0}]
    """))
    plain, sets, mixed = rule.egress
    assert plain.cidr_kind == "CIDR"
    assert plain.cidrs == (t.CIDRRule(cidr="10.0.0.1"), t.CIDRRule(cidr="192.168.0.0/16"),
                           t.CIDRRule(cidr="2001:db8::/32"))
    assert sets.cidr_kind == "CIDRSet"
    assert sets.cidrs == (
        t.CIDRRule(cidr="10.0.0.0/8", except_=("10.1.0.0/16", "10.2.3.4/32")),
        t.CIDRRule(cidr_group_ref="external"),
        t.CIDRRule(cidr_group_selector=sel(team="a")),
    )
    assert mixed.cidr_kind == "CIDRSet" and mixed.cidrs == (t.CIDRRule(cidr="0.0.0.0/0"),)


def test_cidr_group_ref_may_carry_except() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    egressDeny:
    - toCIDRSet: [{cidrGroupRef: ext, except: [1.1.1.1/32]}]
    """))
    assert rule.egress_deny[0].cidrs == (t.CIDRRule(cidr_group_ref="ext", except_=("1.1.1.1/32",)),)


def test_selectors_entities_nodes_services_groups() -> None:
    rule = only_rule(cnp("""
    endpointSelector:
      matchLabels: {app: web, "k8s:io.kubernetes.pod.namespace": shop}
      matchExpressions:
      - {key: tier, operator: in, values: [b, a]}
      - {key: "any:legacy", operator: DoesNotExist}
    ingress:
    - fromEntities: [world, cluster, kube-apiserver]
    - fromNodes: [{matchLabels: {"node:role": edge}}]
    egress:
    - toServices:
      - k8sService: {serviceName: api, namespace: backend}
      - k8sServiceSelector: {selector: {matchLabels: {svc: x}}}
    - toGroups:
      - aws: {securityGroupsIds: [sg-1, sg-2], region: eu-west-1}
    """))
    assert rule.endpoint_selector == Selector.from_k8s(
        {"app": "web", "k8s:io.kubernetes.pod.namespace": "shop"},
        [("tier", "In", ("a", "b")), ("any:legacy", "DoesNotExist", ())],
    )
    assert rule.ingress[0].entities == ("world", "cluster", "kube-apiserver")
    assert rule.ingress[1].nodes == (Selector.from_k8s({"node:role": "edge"}),)
    assert rule.egress[0].services == (
        t.ServiceSelector(name="api", namespace="backend"),
        t.ServiceSelector(selector=sel(svc="x")),
    )
    assert rule.egress[1].groups == ("aws:region=eu-west-1;securityGroupsIds=sg-1,sg-2",)


def test_l7_rules() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    ingress:
    - toPorts:
      - ports: [{port: "80", protocol: TCP}]
        rules:
          http:
          - method: GET
            path: "/public$"
            host: "api\\\\.example\\\\.com"
            headers: ["X-Token: 42", "X-Present"]
            headerMatches:
            - {name: X-A, value: "1", mismatch: LOG}
            - {name: X-B, secret: {namespace: ns, name: s}}
          - {method: ""}
      - ports: [{port: "9092", protocol: TCP}]
        rules:
          kafka:
          - {role: Produce, topic: orders}
          - {apiKey: Fetch, apiVersion: "3", clientID: c1}
      - ports: [{port: "4000", protocol: TCP}]
        rules: {l7proto: r2d2, l7: [{cmd: READ, file: "/x"}]}
      - ports: [{port: "5000", protocol: TCP}]
        rules: {}
    egress:
    - toEndpoints: [{}]
      toPorts:
      - ports: [{port: "53", protocol: ANY}]
        rules:
          dns: [{matchPattern: "*.example.com"}, {matchName: example.org}]
    """))
    http, kafka, l7, empty = rule.ingress[0].to_ports or ()
    assert http.rules == t.L7Rules(http=(
        t.HTTPRule(method="GET", path="/public$", host="api\\.example\\.com",
                   headers=("X-Token: 42", "X-Present"),
                   header_matches=(t.HeaderMatch("X-A", "1", "LOG"),
                                   t.HeaderMatch("X-B", secret=("ns", "s")))),
        t.HTTPRule(),
    ))
    assert kafka.rules == t.L7Rules(kafka=(
        t.KafkaRule(role="produce", topic="orders"),
        t.KafkaRule(api_key="fetch", api_version="3", client_id="c1"),
    ))
    assert l7.rules == t.L7Rules(l7proto="r2d2", l7=((("cmd", "READ"), ("file", "/x")),))
    assert empty.rules is None
    (dns,) = rule.egress[0].to_ports or ()
    assert dns.rules is not None and dns.rules.parser == "dns"
    assert dns.rules.dns == (t.DNSRule(match_pattern="*.example.com"),
                             t.DNSRule(match_name="example.org"))


def test_tls_listener_and_server_names() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    egress:
    - toPorts:
      - ports: [{port: "443", protocol: TCP}]
        serverNames: ["*.example.com", "**.cilium.io"]
        terminatingTLS: {secret: {name: s}}
        originatingTLS: {secret: {namespace: kube-system, name: ca}, trustedCA: ca.crt}
        rules: {http: [{method: GET}]}
      - ports: [{port: "8080", protocol: TCP}]
        listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: cec}, name: l1, priority: 5}
    """))
    tls, listener = rule.egress[0].to_ports or ()
    assert tls.server_names == ("*.example.com", "**.cilium.io")
    assert tls.has_terminating_tls and tls.has_originating_tls
    assert listener.listener == "cec/l1" and listener.rules is None


def test_icmp_names_and_numbers() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    ingress:
    - icmps:
      - fields:
        - {type: 8}
        - {family: IPv4, type: EchoRequest}
        - {family: IPv6, type: EchoRequest}
        - {family: IPv6, type: "135"}
        - {family: IPv4, type: Photuris}
      - fields: [{family: IPv6, type: PacketTooBig}]
    """))
    assert rule.ingress[0].icmps == (
        t.ICMPField("IPv4", 8), t.ICMPField("IPv4", 8), t.ICMPField("IPv6", 128),
        t.ICMPField("IPv6", 135), t.ICMPField("IPv4", 40), t.ICMPField("IPv6", 2),
    )


def test_rule_metadata_fields() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    ingress:
    - fromEndpoints: [{}]
      authentication: {mode: required}
    egressDeny:
    - toEntities: [world]
      toPorts: [{ports: [{port: "25", protocol: TCP}]}]
    enableDefaultDeny: {ingress: false}
    labels: ["team=a", "k8s:env=prod", {key: owner, value: ops, source: custom}]
    description: free text
    log: {value: audit-web}
    """))
    assert rule.ingress[0].auth_mode == "required"
    assert rule.egress_deny[0].entities == ("world",)
    assert (rule.default_deny_ingress, rule.default_deny_egress) == (False, None)
    assert rule.labels == ("unspec:team=a", "k8s:env=prod", "custom:owner=ops")
    assert (rule.description, rule.log) == ("free text", "audit-web")


def test_requires_empty_list_is_accepted() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    ingress: [{fromRequires: [], fromEndpoints: [{}]}]
    egress: [{toRequires: []}]
    """))
    assert rule.ingress[0].requires == () and rule.egress[0].requires == ()


def test_fqdns() -> None:
    rule = only_rule(cnp("""
    endpointSelector: {}
    egress:
    - toFQDNs: [{matchName: API.Example.com}, {matchPattern: "*"}, {matchPattern: "**.cilium.io"}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
    """))
    assert rule.egress[0].fqdns == (
        t.FQDNSelector(match_name="API.Example.com"),
        t.FQDNSelector(match_pattern="*"),
        t.FQDNSelector(match_pattern="**.cilium.io"),
    )


def test_clusterwide_policy_has_no_namespace_and_may_select_nodes() -> None:
    text = cnp("""
    nodeSelector: {matchLabels: {"node-role.kubernetes.io/control-plane": ""}}
    ingress:
    - fromEntities: [cluster]
      toPorts: [{ports: [{port: "6443", protocol: TCP}]}]
    """, kind="CiliumClusterwideNetworkPolicy").replace("name: p", "name: p\n  namespace: ignored")
    (policy,) = parse(text).cilium_policies
    assert policy.kind == "CiliumClusterwideNetworkPolicy" and policy.namespace is None
    (rule,) = policy.rules
    assert rule.endpoint_selector is None
    assert rule.node_selector == Selector.from_k8s({"node-role.kubernetes.io/control-plane": ""})
    assert rule.origin.namespace is None


def test_namespaces_are_not_injected() -> None:
    """Injection is policy/'s job (reference §1.9): the selectors stay as written."""
    rule = only_rule(cnp("""
    endpointSelector: {matchLabels: {app: web}}
    ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
    """))
    assert rule.endpoint_selector == sel(app="web")
    assert rule.ingress[0].endpoints == (sel(app="client"),)


def test_server_fields_in_metadata_are_accepted() -> None:
    text = cnp("""
    endpointSelector: {}
    ingress: [{}]
    """).replace("name: p", "name: p\n  uid: 1234\n  resourceVersion: \"7\"\n  generation: 2\n"
                 "  description: from the docs\n  labels: {a: b}")
    text += "status: {derivativePolicies: {}}\n"
    assert parse(text).cilium_policies[0].name == "p"
