"""The request pipeline (reference §3, §9, §11, §12, §14-§16): order, verdict words, shadows."""

from __future__ import annotations

import pytest
from meshtestkit import PLAINTEXT, Keys, ap, bearer, decide, http, mtls, objects, tcp, workload

from netstrata.mesh import ClientCapture, ExtAuthzResponse, ExtensionProvider, MeshConfig, Peer

DRY = '{"istio.io/dry-run": "true"}'


def test_no_policy_allows():
    d = decide("", http())
    assert (d.outcome, d.decided_by) == ("allow", "no-policies")


def test_deny_wins_over_allow_and_only_when_it_matches():
    text = ap("foo", "allow-all", "rules: [{}]") + ap(
        "foo", "deny-admin", "action: DENY\nrules: [{to: [{operation: {paths: [/admin*]}}]}]")
    d = decide(text, http("/admin/x"))
    assert (d.outcome, d.decided_by, d.status, d.body) == (
        "deny-403", "ns[foo]-policy[deny-admin]-rule[0]", 403, "RBAC: access denied")
    assert decide(text, http("/ok")).decided_by == "ns[foo]-policy[allow-all]-rule[0]"


def test_non_allow_policies_alone_report_no_allow_policies():
    text = ap("foo", "deny-admin", "action: DENY\nrules: [{to: [{operation: {paths: [/a]}}]}]")
    assert decide(text, http("/b")).decided_by == "no-allow-policies"


def test_target_ref_policies_do_not_count_for_a_sidecar():
    text = ap("foo", "gw", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, "
                           "name: gw}\nrules: [{}]")
    assert decide(text, http()).decided_by == "no-policies"


# ---------------------------------------------------------------- dry-run and AUDIT (§11)


def test_dry_run_allow_does_not_turn_on_deny_by_default():
    text = ap("foo", "get-only", "rules: [{to: [{operation: {methods: [GET]}}]}]",
              annotations=DRY)
    d = decide(text, http(method="POST"))
    assert (d.outcome, d.decided_by) == ("allow", "no-allow-policies")
    assert d.dry_run.allow.result == "denied" and d.dry_run.deny is None
    ok = decide(text, http())
    assert (ok.dry_run.allow.result, ok.dry_run.allow.policy) == (
        "allowed", "ns[foo]-policy[get-only]-rule[0]")


def test_dry_run_deny_is_reported_not_enforced():
    text = ap("foo", "deny", "action: DENY\nrules: [{}]", annotations=DRY)
    d = decide(text, http())
    assert d.outcome == "allow"
    assert (d.dry_run.deny.result, d.dry_run.deny.policy) == ("denied", "ns[foo]-policy[deny]-rule[0]")


@pytest.mark.parametrize("value,outcome", [("0", "deny-403"), ("yes", "deny-403"),
                                           ("True", "allow")])
def test_dry_run_value_is_a_go_bool_and_anything_else_is_enforced(value, outcome):
    text = ap("foo", "deny", "action: DENY\nrules: [{}]",
              annotations=f'{{"istio.io/dry-run": "{value}"}}')
    assert decide(text, http()).outcome == outcome


def test_allow_shadow_is_not_evaluated_when_deny_decided():
    text = (ap("foo", "deny", "action: DENY\nrules: [{}]")
            + ap("foo", "shadow", "rules: [{}]", annotations=DRY))
    d = decide(text, http())
    assert d.outcome == "deny-403" and d.dry_run is None


def test_audit_marks_and_never_decides():
    text = (ap("foo", "audit", "action: AUDIT\nrules: [{to: [{operation: {paths: [/p*]}}]}]")
            + ap("foo", "deny", "action: DENY\nrules: [{to: [{operation: {paths: [/p*]}}]}]"))
    d = decide(text, http("/p/1"))
    assert (d.outcome, d.audited, d.audited_by) == (
        "deny-403", True, "ns[foo]-policy[audit]-rule[0]")
    assert decide(ap("foo", "a", "action: AUDIT"), http()).audited is False


# ---------------------------------------------------------------- CUSTOM (§12)

HTTP_PROVIDER = ExtensionProvider("authz", "http", "ext.foo.svc", 8000)
GRPC_PROVIDER = ExtensionProvider("authz-grpc", "grpc", "ext.foo.svc", 9000)
CUSTOM_MESH = MeshConfig(extension_providers=(HTTP_PROVIDER, GRPC_PROVIDER))


def custom(provider: str = "authz", rules: str = "[{to: [{operation: {paths: [/admin*]}}]}]"):
    return ap("foo", f"ext-{provider}", f"action: CUSTOM\nprovider: {{name: {provider}}}\n"
                                        f"rules: {rules}")


def answers(**by_name):
    calls = []

    def client(provider, request):
        calls.append(provider.name)
        return by_name.get(provider.name)
    return client, calls


def test_custom_deny_is_final_and_allow_continues():
    deny, calls = answers(authz=ExtAuthzResponse(False, 403))
    d = decide(custom(), http("/admin"), mesh=CUSTOM_MESH, ext_authz=deny)
    assert (d.outcome, d.decided_by, d.ext_authz_called) == ("deny-403", "custom:authz", True)
    allow, _ = answers(authz=ExtAuthzResponse(True))
    text = custom() + ap("foo", "deny", "action: DENY\nrules: [{to: [{operation: "
                                        "{paths: [/admin]}}]}]")
    assert decide(text, http("/admin"), mesh=CUSTOM_MESH, ext_authz=allow).decided_by == (
        "ns[foo]-policy[deny]-rule[0]")


def test_custom_is_not_called_when_its_rules_do_not_match():
    client, calls = answers(authz=ExtAuthzResponse(False))
    d = decide(custom(), http("/public"), mesh=CUSTOM_MESH, ext_authz=client)
    assert (d.outcome, d.decided_by, d.ext_authz_called, calls) == (
        "allow", "no-allow-policies", False, [])


def test_custom_runs_before_jwt():
    keys = Keys()
    client, _ = answers(authz=ExtAuthzResponse(False, 403))
    text = custom() + keys.request_authentication()
    d = decide(text, http("/admin", headers=bearer(keys.token(rogue=True))), mesh=CUSTOM_MESH,
               ext_authz=client)
    assert d.decided_by == "custom:authz"


def test_custom_provider_status_and_unreachable_provider():
    client, _ = answers(authz=ExtAuthzResponse(False, 401))
    assert decide(custom(), http("/admin"), mesh=CUSTOM_MESH, ext_authz=client).outcome == (
        "deny-401")
    d = decide(custom(), http("/admin"), mesh=CUSTOM_MESH)   # nobody answers
    assert (d.outcome, d.status) == ("deny-403", 403)
    open_mesh = MeshConfig(extension_providers=(ExtensionProvider("authz", fail_open=True),))
    assert decide(custom(), http("/admin"), mesh=open_mesh).outcome == "allow"


def test_unknown_provider_denies_matching_requests():
    d = decide(custom("missing"), http("/admin"), mesh=CUSTOM_MESH)
    assert (d.outcome, d.decided_by) == ("deny-403", "custom:missing")
    assert decide(custom("missing"), http("/ok"), mesh=CUSTOM_MESH).outcome == "allow"


def test_http_provider_is_skipped_on_tcp_and_grpc_provider_closes():
    tcp_rule = "[{to: [{operation: {ports: ['9000']}}]}]"
    client, calls = answers(**{"authz-grpc": ExtAuthzResponse(False)})
    assert decide(custom("authz", tcp_rule), tcp(), mesh=CUSTOM_MESH,
                  ext_authz=client).outcome == "allow"
    d = decide(custom("authz-grpc", tcp_rule), tcp(), mesh=CUSTOM_MESH, ext_authz=client)
    assert (d.outcome, d.decided_by, calls) == ("tcp-reset", "custom:authz-grpc", ["authz-grpc"])


def test_two_providers_need_the_feature_flag():
    text = custom("authz") + custom("authz-grpc")
    allow, _ = answers(authz=ExtAuthzResponse(True), **{"authz-grpc": ExtAuthzResponse(True)})
    assert decide(text, http("/admin"), mesh=CUSTOM_MESH, ext_authz=allow).outcome == "deny-403"
    flagged = MeshConfig(extension_providers=CUSTOM_MESH.extension_providers,
                         multiple_custom_providers=True)
    assert decide(text, http("/admin"), mesh=flagged, ext_authz=allow).outcome == "allow"


# ---------------------------------------------------------------- mTLS and capture (§14, §15)


def pa(namespace: str, spec: str) -> str:
    return (f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n"
            f"  name: default\n  namespace: {namespace}\nspec: {spec}\n---\n")


STRICT = pa("istio-system", "{mtls: {mode: STRICT}}")


def test_strict_resets_plaintext_and_accepts_mtls():
    d = decide(STRICT, http(), PLAINTEXT)
    assert (d.outcome, d.decided_by, d.status) == ("tcp-reset", "mtls:strict", None)
    assert decide(STRICT, http(), mtls()).outcome == "allow"


def test_permissive_plaintext_has_no_identity():
    deny_plain = ap("foo", "p", "action: DENY\nrules: [{from: [{source: {notPrincipals: ['*']}}]}]")
    assert decide(deny_plain, http(), PLAINTEXT).outcome == "deny-403"
    assert decide(deny_plain, http(), mtls()).outcome == "allow"


def test_disable_hides_the_client_identity():
    text = pa("foo", "{mtls: {mode: DISABLE}}") + ap(
        "foo", "p", "rules: [{from: [{source: {principals: ['*']}}]}]")
    assert decide(text, http(), mtls()).outcome == "deny-403"


def test_untrusted_trust_domain_fails_the_handshake():
    d = decide("", http(), mtls("evil.example/ns/foo/sa/x"))
    assert (d.outcome, d.decided_by) == ("tcp-reset", "mtls:untrusted-trust-domain")
    assert decide("", http(), mtls("evil.example/ns/foo/sa/x"),
                  MeshConfig(skip_validate_trust_domain=True)).outcome == "allow"
    assert decide("", http(), mtls("ca.example/ns/foo/sa/x"),
                  MeshConfig(ca_trust_domains=("ca.example",))).outcome == "allow"


def test_excluded_inbound_port_skips_mtls_and_policy():
    wl = workload(ports=((8000, "http"), (9090, "http")),
                  annotations={"traffic.sidecar.istio.io/excludeInboundPorts": "9090"})
    text = STRICT + ap("foo", "deny", "action: DENY\nrules: [{}]")
    d = decide(text, http(port=9090, wl=wl), PLAINTEXT)
    assert (d.outcome, d.decided_by) == ("allow", "bypass:excludeInboundPorts")
    assert decide(text, http(port=8000, wl=wl), mtls()).outcome == "deny-403"


def test_client_bypass_arrives_as_plaintext():
    bypass = ClientCapture({"traffic.sidecar.istio.io/excludeOutboundPorts": "8000"})
    d = decide(STRICT, http(client=bypass), mtls())
    assert (d.outcome, d.decided_by) == ("tcp-reset", "mtls:strict")
    need = ap("foo", "p", "rules: [{from: [{source: {principals: ['*']}}]}]")
    assert decide(need, http(client=bypass), mtls()).outcome == "deny-403"


def test_gateways_ignore_peer_authentication():
    gw = workload(namespace="istio-system", name="ingress", kind="gateway")
    assert decide(STRICT, http(wl=gw), PLAINTEXT).outcome == "allow"


# ---------------------------------------------------------------- normalization (§9)

DENY_ADMIN = ap("foo", "deny", "action: DENY\nrules: [{to: [{operation: {paths: [/admin, /admin/*]}}]}]")


@pytest.mark.parametrize("mode,path,outcome", [
    ("BASE", "/public/../admin", "deny-403"),
    ("BASE", "/%61dmin", "deny-403"),                  # unreserved escapes are decoded
    ("BASE", "/x/%2e%2e/admin", "deny-403"),
    ("BASE", "//admin", "allow"),                      # BASE does not merge slashes
    ("BASE", "/admin%2Fsecrets", "allow"),             # nor decode %2F
    ("MERGE_SLASHES", "//admin", "deny-403"),
    ("MERGE_SLASHES", "/admin%2Fsecrets", "allow"),
    ("DECODE_AND_MERGE_SLASHES", "/admin%2Fsecrets", "deny-403"),
    ("NONE", "/public/../admin", "allow"),
    ("BASE", "/admin?debug=1", "deny-403"),
])
def test_path_normalization(mode, path, outcome):
    assert decide(DENY_ADMIN, http(path), mesh=MeshConfig(path_normalization=mode)).outcome == (
        outcome)


def test_bad_requests_never_reach_authorization():
    assert decide(DENY_ADMIN, http("/a/%00/b")).outcome == "reject-400"
    assert decide(DENY_ADMIN, http(method="get")).outcome == "reject-400"


def test_edge_profile_gateway_merges_slashes():
    gw = workload(namespace="foo", name="gw", kind="gateway",
                  connection_settings={"profile": "EDGE"})
    assert decide(DENY_ADMIN, http("//admin", wl=gw)).outcome == "deny-403"
    plain_gw = workload(namespace="foo", name="gw", kind="gateway")
    assert decide(DENY_ADMIN, http("//admin", wl=plain_gw)).outcome == "allow"


# ---------------------------------------------------------------- TCP (§3.2, §16)


def test_tcp_denial_is_a_reset_without_status():
    d = decide(ap("foo", "nothing"), tcp())
    assert (d.outcome, d.status, d.grpc_status, d.upstream_headers) == ("tcp-reset", None, None,
                                                                         None)


def test_undeclared_port_uses_the_client_protocol():
    wl = workload(ports=())
    deny_get = ap("foo", "p", "action: DENY\nrules: [{to: [{operation: {methods: [GET]}}]}]")
    assert decide(deny_get, http(wl=wl, method="POST")).outcome == "allow"
    assert decide(deny_get, tcp(8000, wl=wl)).outcome == "tcp-reset"


def test_peer_objects_round_trip_through_evaluate():
    assert decide(objects(ap("foo", "x", "rules: [{}]")), http(), Peer(True, None)).outcome == (
        "allow")
