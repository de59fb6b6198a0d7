"""Rule and field semantics (reference §4-§7, §10), each trap stated as a small policy."""

from __future__ import annotations

import pytest
from meshtestkit import PLAINTEXT, Keys, ap, bearer, decide, http, mtls, objects, tcp, workload

from netstrata.mesh import MeshConfig, Peer
from netstrata.mesh.rules import nested_claim_names


def allow_with(rule: str, request=None, peer=None, mesh=None, extra: str = "", **kw):
    """Outcome of one ALLOW policy (namespace foo, no selector) holding `rule`."""
    policy = ap("foo", "p", f"rules:\n{rule}") + extra
    return decide(policy, request or http(), peer, mesh, **kw).outcome


# ---------------------------------------------------------------- rule structure


def test_from_entries_are_alternatives_and_fields_inside_one_source_are_anded():
    rule = """
- from:
  - source: {principals: [cluster.local/ns/foo/sa/a], ipBlocks: [10.0.0.0/8]}
  - source: {principals: [cluster.local/ns/foo/sa/b]}
"""
    assert allow_with(rule, peer=mtls("cluster.local/ns/foo/sa/a")) == "allow"
    assert allow_with(rule, http(source_ip="192.168.1.1"),
                      mtls("cluster.local/ns/foo/sa/a")) == "deny-403"
    assert allow_with(rule, http(source_ip="192.168.1.1"),
                      mtls("cluster.local/ns/foo/sa/b")) == "allow"


def test_from_to_and_when_are_all_required():
    rule = """
- from: [{source: {namespaces: [foo]}}]
  to: [{operation: {methods: [GET]}}]
  when: [{key: 'request.headers[x-a]', values: ["1"]}]
"""
    ok = http(headers=[("X-A", "1")])
    assert allow_with(rule, ok) == "allow"
    assert allow_with(rule, http(method="POST", headers=[("x-a", "1")])) == "deny-403"
    assert allow_with(rule, http()) == "deny-403"
    assert allow_with(rule, ok, mtls("cluster.local/ns/bar/sa/x")) == "deny-403"


def test_values_and_not_values_of_one_field_must_both_hold():
    rule = "- to: [{operation: {paths: [/api/*], notPaths: [/api/admin*]}}]"
    assert allow_with(rule, http("/api/users")) == "allow"
    assert allow_with(rule, http("/api/admin/x")) == "deny-403"
    assert allow_with(rule, http("/other")) == "deny-403"


def test_empty_rule_matches_everything_and_no_rules_match_nothing():
    assert allow_with("- {}", http("/x"), PLAINTEXT) == "allow"
    d = decide(ap("foo", "nothing"), http())
    assert (d.outcome, d.decided_by) == ("deny-403", "none")


def test_the_reported_rule_is_the_first_in_name_order():
    rules = "\n".join("- to: [{operation: {methods: [GET]}}]" for _ in range(11))
    d = decide(ap("foo", "p", f"rules:\n{rules}"), http())
    assert d.decided_by == "ns[foo]-policy[p]-rule[0]"
    more = ap("foo", "b-second", "rules: [{}]") + ap("foo", "a-first", "rules: [{}]")
    assert decide(more, http()).decided_by == "ns[foo]-policy[a-first]-rule[0]"


def test_rule_names_sort_as_strings():
    rule = "rules:\n" + "\n".join(
        "- to: [{operation: {paths: [/nomatch]}}]" for _ in range(2)) + "\n" + "\n".join(
        "- {}" for _ in range(9))  # rule[2] .. rule[10] match; "rule[10]" < "rule[2]"
    assert decide(ap("foo", "p", rule), http()).decided_by == "ns[foo]-policy[p]-rule[10]"


# ---------------------------------------------------------------- peer identity


@pytest.mark.parametrize("value,principal,expected", [
    ("cluster.local/ns/foo/sa/sleep", "cluster.local/ns/foo/sa/sleep", "allow"),
    ("cluster.local/ns/foo/sa/sleep", "cluster.local/ns/foo/sa/sleep2", "deny-403"),
    ("cluster.local/ns/foo/*", "cluster.local/ns/foo/sa/any", "allow"),
    ("*/ns/foo/sa/sleep", "cluster-eu/ns/foo/sa/sleep", "allow"),
    ("*", "cluster.local/ns/x/sa/y", "allow"),
])
def test_principals(value, principal, expected):
    mesh = MeshConfig(trust_domain_aliases=("cluster-eu",))
    assert allow_with(f"- from: [{{source: {{principals: ['{value}']}}}}]",
                      peer=mtls(principal), mesh=mesh) == expected


def test_identity_fields_never_match_plaintext_but_their_not_forms_do():
    for field in ("principals: ['*']", "namespaces: [foo]", "serviceAccounts: [sleep]",
                  "trustDomains: ['*']"):
        assert allow_with(f"- from: [{{source: {{{field}}}}}]", peer=PLAINTEXT) == "deny-403"
        neg = "not" + field[0].upper() + field[1:]
        assert allow_with(f"- from: [{{source: {{{neg}}}}}]", peer=PLAINTEXT) == "allow"


def test_a_principal_claimed_without_mtls_is_not_visible():
    assert allow_with("- from: [{source: {namespaces: [foo]}}]",
                      peer=Peer(mtls=False, principal="cluster.local/ns/foo/sa/x")) == "deny-403"


def test_namespaces_ignore_the_trust_domain_and_support_wildcards():
    rule = "- from: [{source: {namespaces: [billing, 'team-*']}}]"
    mesh = MeshConfig(trust_domain="us", trust_domain_aliases=("eu",))
    assert allow_with(rule, peer=mtls("eu/ns/billing/sa/x"), mesh=mesh) == "allow"
    assert allow_with(rule, peer=mtls("us/ns/team-a/sa/x"), mesh=mesh) == "allow"
    assert allow_with(rule, peer=mtls("us/ns/billing2/sa/x"), mesh=mesh) == "deny-403"


def test_service_accounts_short_form_uses_the_policy_namespace():
    rule = "- from: [{source: {serviceAccounts: [sleep, bar/client]}}]"
    assert allow_with(rule, peer=mtls("cluster.local/ns/foo/sa/sleep")) == "allow"
    assert allow_with(rule, peer=mtls("cluster.local/ns/bar/sa/sleep")) == "deny-403"
    assert allow_with(rule, peer=mtls("cluster.local/ns/bar/sa/client")) == "allow"
    assert allow_with(rule, peer=mtls("cluster.local/ns/bar/sa/client-x")) == "deny-403"


def test_trust_domains_patterns_and_alias_expansion():
    mesh = MeshConfig(trust_domain="us", trust_domain_aliases=("eu",))
    exact = "- from: [{source: {trustDomains: [eu]}}]"
    assert allow_with(exact, peer=mtls("us/ns/a/sa/b"), mesh=mesh) == "allow"
    assert allow_with(exact, peer=mtls("apac/ns/a/sa/b"),
                      mesh=MeshConfig(trust_domain="us", ca_trust_domains=("apac",))) == "deny-403"
    prefix = "- from: [{source: {trustDomains: ['cluster-*']}}]"
    mesh2 = MeshConfig(trust_domain="cluster-us")
    assert allow_with(prefix, peer=mtls("cluster-us/ns/a/sa/b"), mesh=mesh2) == "allow"


def test_principals_follow_trust_domain_aliases():
    mesh = MeshConfig(trust_domain="cluster-us", trust_domain_aliases=("cluster-eu",))
    rule = "- from: [{source: {principals: [cluster-eu/ns/billing/sa/tx]}}]"
    assert allow_with(rule, peer=mtls("cluster-us/ns/billing/sa/tx"), mesh=mesh) == "allow"
    local = "- from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]"
    assert allow_with(local, peer=mtls("cluster-us/ns/foo/sa/sleep"), mesh=mesh) == "allow"


# ---------------------------------------------------------------- operations


def test_hosts_match_raw_authority_case_insensitively():
    rule = "- to: [{operation: {hosts: [httpbin.foo, 'httpbin.foo:*']}}]"
    assert allow_with(rule, http(host="HTTPBIN.foo:8000")) == "allow"
    assert allow_with("- to: [{operation: {hosts: [httpbin.foo]}}]",
                      http(host="httpbin.foo:8000")) == "deny-403"


def test_paths_ignore_the_query_and_methods_are_case_sensitive():
    assert allow_with("- to: [{operation: {paths: [/info]}}]", http("/info?x=/admin")) == "allow"
    assert allow_with("- to: [{operation: {methods: [get]}}]", http()) == "deny-403"


def test_grpc_is_post_with_the_method_path():
    grpc = workload(name="svc", ports=((50051, "grpc"),))
    req = http("/pkg.Svc/Get", method="POST", port=50051, wl=grpc, protocol="grpc",
               headers=[("content-type", "application/grpc")])
    assert allow_with("- to: [{operation: {methods: [POST], paths: [/pkg.Svc/*]}}]", req) == "allow"
    d = decide(ap("foo", "p", "rules: [{to: [{operation: {methods: [GET]}}]}]"), req)
    assert (d.outcome, d.status, d.grpc_status) == ("deny-403", 200, 7)


def test_ports_are_the_workload_port():
    two = workload(ports=((8000, "http"), (8001, "http")))
    rule = "- to: [{operation: {ports: ['8000']}}]"
    assert allow_with(rule, http(wl=two, port=8000)) == "allow"
    assert allow_with(rule, http(wl=two, port=8001)) == "deny-403"


# ---------------------------------------------------------------- conditions


def test_header_conditions():
    rule = "- when: [{key: 'request.headers[X-Token]', values: ['*']}]"
    assert allow_with(rule, http(headers=[("x-token", "")])) == "allow"
    assert allow_with(rule, http()) == "deny-403"
    joined = "- when: [{key: 'request.headers[x-v]', values: ['a,b']}]"
    assert allow_with(joined, http(headers=[("x-v", "a"), ("X-V", "b")])) == "allow"
    neg = "- when: [{key: 'request.headers[x-v]', notValues: [bad]}]"
    assert allow_with(neg, http()) == "allow"   # absent: a negative match holds


@pytest.mark.parametrize("key,values,request_kw,expected", [
    ("source.ip", ["10.0.0.0/24"], {"source_ip": "10.0.0.9"}, "allow"),
    ("source.ip", ["10.0.1.0/24"], {"source_ip": "10.0.0.9"}, "deny-403"),
    ("destination.port", ["8000"], {}, "allow"),
    ("destination.ip", ["10.9.9.9"], {"destination_ip": "10.9.9.9"}, "allow"),
    ("destination.ip", ["10.9.9.9"], {}, "deny-403"),
])
def test_connection_conditions(key, values, request_kw, expected):
    rule = f"- when: [{{key: {key}, values: {values}}}]"
    assert allow_with(rule, http(**request_kw)) == expected


def test_source_conditions_use_the_peer_identity():
    assert allow_with("- when: [{key: source.namespace, values: [foo]}]") == "allow"
    assert allow_with("- when: [{key: source.principal, values: ['cluster.local/ns/foo/*']}]",
                      peer=PLAINTEXT) == "deny-403"
    assert allow_with("- when: [{key: source.serviceAccount, values: [foo/sleep]}]") == "allow"
    assert allow_with("- when: [{key: source.trustDomain, values: [cluster.local]}]") == "allow"


def test_connection_sni():
    rule = "- when: [{key: connection.sni, values: ['*.svc.cluster.local']}]"
    assert allow_with(rule, peer=Peer(True, "cluster.local/ns/foo/sa/s",
                                      "outbound_.8000_._.httpbin.foo.svc.cluster.local")) == "allow"
    assert allow_with(rule) == "deny-403"


def test_experimental_envoy_filter_metadata():
    rule = "- when: [{key: 'experimental.envoy.filters.f.x[k]', values: ['[b]', 'exact']}]"
    listy = http(filter_metadata={"envoy.filters.f.x": {"k": ["a", "b"]}})
    assert allow_with(rule, listy) == "allow"
    assert allow_with(rule, http(filter_metadata={"envoy.filters.f.x": {"k": "exact"}})) == "allow"
    assert allow_with(rule, http()) == "deny-403"


def test_remote_ip_at_a_sidecar_is_the_rightmost_forwarded_for_entry():
    rule = "- from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]"
    xff = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")]
    assert allow_with(rule, http(headers=xff)) == "allow"
    assert allow_with(rule, http(headers=[("x-forwarded-for", "203.0.113.7, 198.51.100.1")])) \
        == "deny-403"
    assert allow_with(rule, http(source_ip="203.0.113.9")) == "allow"  # no XFF: socket peer


def test_remote_ip_at_a_gateway_honours_num_trusted_proxies():
    rule = "- from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]"
    xff = [("x-forwarded-for", "203.0.113.7, 198.51.100.1")]
    gw0 = workload(namespace="foo", name="gw", kind="gateway")
    gw2 = workload(namespace="foo", name="gw", kind="gateway", num_trusted_proxies=2)
    assert allow_with(rule, http(headers=xff, wl=gw0, source_ip="10.0.0.5")) == "deny-403"
    assert allow_with(rule, http(headers=xff, wl=gw2, source_ip="10.0.0.5")) == "allow"
    short = [("x-forwarded-for", "203.0.113.7")]   # fewer than N entries: socket peer
    assert allow_with(rule, http(headers=short, wl=gw2, source_ip="10.0.0.5")) == "deny-403"


# ---------------------------------------------------------------- JWT-backed fields


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def _jwt_allow(keys: Keys, rule: str, claims=None, *, token=True, spaced: str = ""):
    extra = keys.request_authentication(extra=spaced)
    req = http(headers=bearer(keys.token(claims)) if token else ())
    return allow_with(rule, req, extra=extra)


@pytest.mark.parametrize("value,claims,expected", [
    ("https://issuer.example/alice", {}, "allow"),           # split at the last '/'
    ("https://issuer.example/bob", {}, "deny-403"),
    ("*", {}, "allow"),
    ("*/alice", {}, "allow"),
    ("https://issuer.example/*", {"sub": "anyone"}, "allow"),
    ("*example/alice", {}, "allow"),
    ("https://issuer.example/al*", {}, "allow"),
    # trap: a URL issuer contains '/', so this splits into iss "https:/" + sub prefix "issuer"
    ("https://issuer*", {}, "deny-403"),
    ("*ice", {}, "allow"),                                   # no '/': sub suffix
])
def test_request_principals(keys, value, claims, expected):
    rule = f"- from: [{{source: {{requestPrincipals: ['{value}']}}}}]"
    assert _jwt_allow(keys, rule, claims) == expected


def test_request_principals_need_a_sub_and_a_token(keys):
    rule = "- from: [{source: {requestPrincipals: ['*']}}]"
    assert _jwt_allow(keys, rule, {"sub": None}) == "deny-403"
    assert _jwt_allow(keys, rule, token=False) == "deny-403"
    neg = "- from: [{source: {notRequestPrincipals: ['*']}}]"
    assert _jwt_allow(keys, neg, token=False) == "allow"


def test_claims_match_strings_and_lists_of_strings_only(keys):
    rule = "- when: [{key: 'request.auth.claims[grp]', values: [admin]}]"
    assert _jwt_allow(keys, rule, {"grp": "admin"}) == "allow"
    assert _jwt_allow(keys, rule, {"grp": ["x", "admin"]}) == "allow"
    assert _jwt_allow(keys, rule, {"grp": "x admin"}) == "deny-403"   # not split
    flag = "- when: [{key: 'request.auth.claims[flag]', values: ['true']}]"
    assert _jwt_allow(keys, flag, {"flag": True}) == "deny-403"
    num = "- when: [{key: 'request.auth.claims[n]', values: ['7']}]"
    assert _jwt_allow(keys, num, {"n": 7}) == "deny-403"


def test_scope_is_split_and_space_delimited_claims_extend_it(keys):
    scope = "- when: [{key: 'request.auth.claims[scope]', values: [write]}]"
    assert _jwt_allow(keys, scope, {"scope": "read write"}) == "allow"
    perm = "- when: [{key: 'request.auth.claims[permission]', values: [b]}]"
    assert _jwt_allow(keys, perm, {"permission": "a b"}) == "allow"
    roles = "- when: [{key: 'request.auth.claims[roles]', values: [editor]}]"
    assert _jwt_allow(keys, roles, {"roles": "editor admin"}) == "deny-403"
    assert _jwt_allow(keys, roles, {"roles": "editor admin"},
                      spaced="spaceDelimitedClaims: [roles]") == "allow"


def test_nested_claims_and_bracket_names(keys):
    rule = "- when: [{key: 'request.auth.claims[realm][roles]', values: [ops]}]"
    assert _jwt_allow(keys, rule, {"realm": {"roles": ["dev", "ops"]}}) == "allow"
    assert _jwt_allow(keys, rule, {"realm": ["ops"]}) == "deny-403"
    assert nested_claim_names("[a][b]") == ["a", "b"]
    assert nested_claim_names("[example.com/name]") == ["example.com/name"]


def test_audiences_presenter_and_principal_conditions(keys):
    aud = "- when: [{key: request.auth.audiences, values: [api]}]"
    assert _jwt_allow(keys, aud, {"aud": ["web", "api"]}) == "allow"
    azp = "- when: [{key: request.auth.presenter, values: ['cli*']}]"
    assert _jwt_allow(keys, azp, {"azp": "client-1"}) == "allow"
    prn = "- when: [{key: request.auth.principal, values: ['*/alice']}]"
    assert _jwt_allow(keys, prn) == "allow"


# ---------------------------------------------------------------- TCP translation (§7)


def test_allow_rule_with_an_http_field_is_dropped_on_tcp_even_with_ports():
    pol = ap("foo", "p", "rules: [{to: [{operation: {methods: [GET], ports: ['9000']}}]}]")
    d = decide(pol, tcp(9000))
    assert (d.outcome, d.decided_by) == ("tcp-reset", "none")


def test_allow_rule_with_only_tcp_fields_works_on_tcp():
    pol = ap("foo", "p", "rules: [{from: [{source: {principals: ['*']}}], "
                         "to: [{operation: {ports: ['9000']}}]}]")
    assert decide(pol, tcp(9000)).outcome == "allow"
    assert decide(pol, tcp(9001)).outcome == "tcp-reset"


def test_deny_with_only_http_fields_closes_every_tcp_port():
    pol = ap("foo", "p", "action: DENY\nrules: [{to: [{operation: {methods: [GET]}}]}]")
    assert decide(pol, tcp(9001)).outcome == "tcp-reset"
    scoped = ap("foo", "p", "action: DENY\nrules: [{to: [{operation: {methods: [GET], "
                            "ports: ['9000']}}]}]")
    assert decide(scoped, tcp(9000)).outcome == "tcp-reset"
    assert decide(scoped, tcp(9001)).decided_by == "no-allow-policies"


def test_deny_keeps_its_tcp_capable_part():
    pol = ap("foo", "p", "action: DENY\nrules: [{from: [{source: {namespaces: [ns-1]}}], "
                         "when: [{key: 'request.headers[x]', values: [y]}]}]")
    assert decide(pol, tcp(), mtls("cluster.local/ns/ns-1/sa/a")).outcome == "tcp-reset"
    assert decide(pol, tcp(), mtls("cluster.local/ns/ns-2/sa/a")).outcome == "allow"


def test_audit_is_widened_like_deny():
    pol = ap("foo", "p", "action: AUDIT\nrules: [{to: [{operation: {paths: [/x]}}]}]")
    d = decide(pol, tcp())
    assert d.audited and d.audited_by == "ns[foo]-policy[p]-rule[0]" and d.outcome == "allow"


def test_http_only_rule_on_an_http_port_is_untouched():
    pol = ap("foo", "p", "rules: [{to: [{operation: {methods: [GET], ports: ['8000']}}]}]")
    assert decide(pol, http()).outcome == "allow"


def test_objects_helper_parses_several_documents():
    assert len(objects(ap("a", "x") + ap("b", "y"))) == 2
