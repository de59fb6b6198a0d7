"""`api.istio.parse_istio_document`: conversion, and rejection like Istio's webhook (§17)."""

from __future__ import annotations

import textwrap

import pytest

from netstrata.api._yaml import load_documents
from netstrata.api.istio import (
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
    parse_istio_document,
)
from netstrata.errors import ManifestError

HEAD = """\
apiVersion: security.istio.io/v1
kind: {kind}
metadata:
  name: p
  namespace: foo
"""


def parse(body: str, kind: str = "AuthorizationPolicy", head: str = HEAD):
    text = head.replace("{kind}", kind) + textwrap.dedent(body)
    return parse_istio_document(load_documents(text, "p.yaml")[0])


def problems(body: str, kind: str = "AuthorizationPolicy", head: str = HEAD) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse(body, kind, head)
    return [p.render() for p in info.value.problems]


def test_authorization_policy_converts_every_field():
    p = parse("""
        spec:
          selector: {matchLabels: {app: web}}
          action: DENY
          rules:
          - from:
            - source:
                notRequestPrincipals: ['*']
                ipBlocks: [10.0.0.0/8]
                serviceAccounts: [ns/sa]
                trustDomains: ['td*']
            - source: {principals: [a]}
            to:
            - operation: {hosts: [h], notPorts: ['81'], methods: [GET], paths: ['/x/{*}']}
            when:
            - {key: 'request.auth.claims[a][b]', values: [v], notValues: [w]}
        """)
    assert isinstance(p, AuthorizationPolicy)
    assert p.action == "DENY" and p.selector.match_labels == (("app", "web"),)
    src, op, cond = p.rules[0].from_[0], p.rules[0].to[0], p.rules[0].when[0]
    assert p.rules[0].from_[1].principals == ("a",) and src.not_request_principals == ("*",)
    assert src.service_accounts == ("ns/sa",) and src.trust_domains == ("td*",)
    assert op.not_ports == ("81",) and op.paths == ("/x/{*}",)
    assert (cond.key, cond.values, cond.not_values) == ("request.auth.claims[a][b]", ("v",),
                                                        ("w",))
    assert p.meta.source.path == "p.yaml" and p.meta.source.line == 1


def test_defaults_and_v1beta1():
    p = parse("spec: {}", head=HEAD.replace("v1\n", "v1beta1\n"))
    assert (p.action, p.rules, p.dry_run) == ("ALLOW", (), False)
    assert parse("").rules == ()


def test_request_and_peer_authentication_convert():
    ra = parse("""
        spec:
          jwtRules:
          - issuer: https://i
            jwks: '{"keys": [{"kty": "EC"}]}'
            fromHeaders: [{name: x-jwt, prefix: 'Bearer '}]
            fromParams: [tok]
            outputClaimToHeaders: [{header: x-sub, claim: sub}]
            timeout: 2s
        """, "RequestAuthentication")
    assert isinstance(ra, RequestAuthentication)
    rule = ra.jwt_rules[0]
    assert rule.from_headers[0].prefix == "Bearer " and rule.timeout_s == 2.0
    pa = parse("""
        spec:
          selector: {matchLabels: {app: web}}
          mtls: {mode: STRICT}
          portLevelMtls: {8080: {mode: DISABLE}, "9090": {}}
        """, "PeerAuthentication")
    assert isinstance(pa, PeerAuthentication)
    assert pa.mode == "STRICT" and pa.port_level_mtls == ((8080, "DISABLE"), (9090, "UNSET"))


@pytest.mark.parametrize("body,fragment", [
    ("spec: {action: DENY}", "spec.rules: expected rules with action DENY"),
    ("spec: {action: DENY, rules: []}", "spec.rules: expected rules with action DENY"),
    ("spec: {action: CUSTOM, provider: {name: x}}", "expected rules with action CUSTOM"),
    ("spec: {action: CUSTOM, rules: [{}]}", "spec.provider.name"),
    ("spec: {provider: {name: x}, rules: [{}]}", "no provider unless action is CUSTOM"),
    ("spec: {action: allow}", "spec.action: expected one of ALLOW, DENY, AUDIT, CUSTOM"),
    ("spec: {rules: [{from: []}]}", "spec.rules[0].from: expected a non-empty list"),
    ("spec: {rules: [{to: [{operation: {}}]}]}", "an operation with at least one field"),
    ("spec: {rules: [{from: [{source: {}}]}]}", "a source with at least one field"),
    ("spec: {rules: [{from: [{}]}]}", "a from entry with a source"),
    ("spec: {rules: [{to: [{operation: {ports: ['65536']}}]}]}", "a decimal port"),
    ("spec: {rules: [{to: [{operation: {ports: [80]}}]}]}", "expected a string, found 80"),
    ("spec: {rules: [{to: [{operation: {paths: ['/a/{**}/b/{*}']}}]}]}", "{**} is the last"),
    ("spec: {rules: [{to: [{operation: {paths: ['/a{*}']}}]}]}", "whole {*} or {**} segments"),
    ("spec: {rules: [{to: [{operation: {methods: ['']}}]}]}", "a non-empty string"),
    ("spec: {rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}]}", "an IP address"),
    ("spec: {rules: [{from: [{source: {principals: [a], serviceAccounts: [b]}}]}]}",
     "serviceAccounts without principals"),
    ("spec: {rules: [{from: [{source: {serviceAccounts: ['a/b/c']}}]}]}", "'namespace/"),
    ("spec: {rules: [{from: [{source: {trustDomains: ['a*b']}}]}]}", "one '*' at the start"),
    ("spec: {rules: [{when: [{key: 'destination.labels[app]', values: [a]}]}]}",
     "replaced by the workload selector"),
    ("spec: {rules: [{when: [{key: destination.namespace, values: [a]}]}]}", "metadata.namespace"),
    ("spec: {rules: [{when: [{key: request.headers, values: [a]}]}]}", "name[inner]"),
    ("spec: {rules: [{when: [{key: source.nope, values: [a]}]}]}", "a known attribute"),
    ("spec: {rules: [{when: [{key: source.ip}]}]}", "values or notValues for key source.ip"),
    ("spec: {rules: [{when: [{key: destination.port, values: [x]}]}]}", "a decimal port"),
    ("spec: {action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {principals: [a]}}]}]}",
     "no identity fields with action CUSTOM"),
    ("spec: {action: CUSTOM, provider: {name: x}, rules: [{when: [{key: request.auth.principal, "
     "values: [a]}]}]}", "no identity conditions with action CUSTOM"),
    ("spec: {selector: {matchLabels: {app: a}}, targetRef: {kind: Gateway, "
     "group: gateway.networking.k8s.io, name: g}}", "at most one of selector"),
    ("spec: {targetRef: {kind: Pod, name: g}}", "a targetRef to a Service"),
    ("spec: {targetRef: {kind: Service, name: g, namespace: other}}", "no namespace"),
    ("spec: {selector: {matchLabels: {app: '*'}}}", "labels without wildcards"),
    ("spec: {rules: [{}], bogus: 1}", 'unknown field "bogus"'),
])
def test_authorization_policy_rejections(body, fragment):
    rendered = problems(body)
    assert any(fragment in r for r in rendered), rendered


def test_problems_carry_file_line_and_field():
    rendered = problems("""
        spec:
          action: DENY
          rules:
          - to:
            - operation:
                ports: ["x"]
        """)
    assert rendered == ["p.yaml:12:17: spec.rules[0].to[0].operation.ports[0]: expected a "
                        "decimal port 0-65535 (no ranges, no wildcards), found \"x\""]


@pytest.mark.parametrize("annotation,action,fragment", [
    ("true", "AUDIT", "only on ALLOW or DENY"),
    ("true", "CUSTOM", "only on ALLOW or DENY"),
])
def test_dry_run_annotation_is_checked(annotation, action, fragment):
    head = HEAD + f"  annotations: {{istio.io/dry-run: '{annotation}'}}\n"
    body = f"spec: {{action: {action}, provider: {{name: p}}, rules: [{{}}]}}" if action == (
        "CUSTOM") else f"spec: {{action: {action}, rules: [{{}}]}}"
    assert any(fragment in r for r in problems(body, head=head))


def test_dry_run_annotation_accepts_go_booleans_and_enforces_anything_else():
    head = HEAD + "  annotations: {istio.io/dry-run: 'T'}\n"
    assert parse("spec: {action: DENY, rules: [{}]}", head=head).dry_run is True
    head = HEAD + "  annotations: {istio.io/dry-run: 'yes'}\n"
    assert parse("spec: {action: DENY, rules: [{}]}", head=head).dry_run is False


@pytest.mark.parametrize("body,fragment", [
    ("spec: {jwtRules: [{jwks: '{}'}]}", "an issuer or a jwksUri"),
    ("spec: {jwtRules: [{issuer: i, jwksUri: 'ftp://x'}]}", "an http:// or https:// URI"),
    ("spec: {jwtRules: [{issuer: i, jwks: 'not json'}]}", "a JSON Web Key Set"),
    ("spec: {jwtRules: [{issuer: i, audiences: ['']}]}", "a non-empty string"),
    ("spec: {jwtRules: [{issuer: i, fromHeaders: [{prefix: x}]}]}", "a header name"),
    ("spec: {jwtRules: [{issuer: i, outputClaimToHeaders: [{header: 'a b', claim: c}]}]}",
     "letters, digits and '-'"),
    ("spec: {jwtRules: [{issuer: i, timeout: 5m}]}", "a duration"),
])
def test_request_authentication_rejections(body, fragment):
    assert any(fragment in r for r in problems(body, "RequestAuthentication"))


@pytest.mark.parametrize("body,fragment", [
    ("spec: {portLevelMtls: {8080: {mode: STRICT}}}", "only with a workload selector"),
    ("spec: {selector: {matchLabels: {a: b}}, portLevelMtls: {}}", "at least one port"),
    ("spec: {selector: {matchLabels: {a: b}}, portLevelMtls: {0: {mode: STRICT}}}", "1-65535"),
    ("spec: {mtls: {mode: strict}}", "one of UNSET, DISABLE, PERMISSIVE, STRICT"),
])
def test_peer_authentication_rejections(body, fragment):
    assert any(fragment in r for r in problems(body, "PeerAuthentication"))


def test_dry_run_only_on_authorization_policies():
    head = HEAD + "  annotations: {istio.io/dry-run: 'true'}\n"
    assert any("AuthorizationPolicy only" in r
               for r in problems("spec: {mtls: {mode: STRICT}}", "PeerAuthentication", head))


def test_wrong_kind_or_version():
    assert any("one of AuthorizationPolicy" in r for r in problems("spec: {}", "Sidecar"))
    head = HEAD.replace("security.istio.io/v1", "security.istio.io/v2")
    assert any("security.istio.io/v1 or" in r for r in problems("spec: {}", head=head))
