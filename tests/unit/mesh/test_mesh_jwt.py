"""RequestAuthentication (reference §13): token locations, Envoy's checks, 401 vs 403, upstream."""

from __future__ import annotations

import base64
import json

import pytest
from meshtestkit import ISSUER, NOW, Keys, ap, bearer, decide, http, objects, tcp, workload

from netstrata.api.istio import ClaimToHeader, JWTHeader, JWTRule
from netstrata.mesh import jwt as mjwt


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def rule(keys: Keys, **kw) -> JWTRule:
    return JWTRule(issuer=ISSUER, jwks=keys.jwks, **kw)


def authn(rules, headers=(), target="/", method="GET", now=NOW, **kw):
    return mjwt.authenticate(rules, method=method, headers=list(headers), target=target,
                             now=now, **kw)


def test_valid_token_is_accepted_and_stripped_upstream(keys):
    res = authn([rule(keys)], bearer(keys.token()))
    assert res.ok and res.payload["sub"] == "alice"
    assert "authorization" not in {k for k, _ in res.headers}


def test_forward_original_token_keeps_the_header(keys):
    token = keys.token()
    res = authn([rule(keys, forward_original_token=True)], bearer(token))
    assert ("authorization", f"Bearer {token}") in res.headers


def test_missing_token_is_not_a_failure(keys):
    res = authn([rule(keys)])
    assert res.ok and res.payload is None


@pytest.mark.parametrize("make,message", [
    (lambda k: k.token(rogue=True), mjwt.MSG_VERIFY),
    (lambda k: k.token(exp=int(NOW) - 61), mjwt.MSG_EXPIRED),
    (lambda k: k.token(nbf=int(NOW) + 61), mjwt.MSG_NOT_YET_VALID),
    (lambda k: k.token(iss="https://other.example"), mjwt.MSG_UNKNOWN_ISSUER),
    (lambda k: k.token(kid="unknown-kid"), mjwt.MSG_KID_ALG),
    (lambda k: "abc.def", mjwt.MSG_BAD_FORMAT),
])
def test_invalid_tokens_fail_with_envoys_message(keys, make, message):
    res = authn([rule(keys)], bearer(make(keys)))
    assert not res.ok and res.error == message


def test_sixty_second_clock_skew(keys):
    assert authn([rule(keys)], bearer(keys.token(exp=int(NOW) - 59))).ok
    assert authn([rule(keys)], bearer(keys.token(nbf=int(NOW) + 59))).ok


def test_expiry_is_checked_before_the_signature(keys):
    res = authn([rule(keys)], bearer(keys.token(rogue=True, exp=int(NOW) - 3600)))
    assert res.error == mjwt.MSG_EXPIRED


def test_audiences(keys):
    r = rule(keys, audiences=("api.example.com",))
    assert authn([r], bearer(keys.token(aud=["x", "https://api.example.com/"]))).ok
    assert authn([r], bearer(keys.token(aud="other"))).error == mjwt.MSG_AUDIENCE
    assert authn([r], bearer(keys.token())).error == mjwt.MSG_AUDIENCE     # no aud at all
    assert authn([rule(keys)], bearer(keys.token(aud="anything"))).ok    # none configured


def test_custom_locations_replace_the_defaults(keys):
    r = rule(keys, from_headers=(JWTHeader("x-jwt", "Bearer "),))
    token = keys.token()
    assert authn([r], [("x-jwt", f"Bearer {token}")]).payload is not None
    # a token where no rule looks is invisible: the request is tokenless, not rejected
    res = authn([r], bearer(keys.token(rogue=True)))
    assert res.ok and res.payload is None


def test_default_locations_include_the_access_token_parameter(keys):
    res = authn([rule(keys)], target=f"/x?access_token={keys.token()}")
    assert res.payload is not None


def test_params_and_cookies(keys):
    p = rule(keys, from_params=("tok",))
    assert authn([p], target=f"/x?a=1&tok={keys.token()}").payload is not None
    c = rule(keys, from_cookies=("session",))
    res = authn([c], [("cookie", f"a=b; session={keys.token()}")])
    assert res.payload is not None and any(k == "cookie" for k, _ in res.headers)


def test_prefix_is_searched_and_token_characters_are_taken(keys):
    token = keys.token()
    found = mjwt.find_tokens(rule(keys), [("Authorization", f"Basic x, Bearer {token} trailing")],
                             "/")
    assert [f.token for f in found] == [token]


def test_two_issuers_each_accept_their_own_tokens(keys):
    other = Keys(kid="k2")
    r1 = rule(keys)
    r2 = JWTRule(issuer="https://two.example", jwks=other.jwks)
    assert authn([r1, r2], bearer(other.token(iss="https://two.example"))).ok
    assert authn([r1, r2], bearer(keys.token())).ok
    assert not authn([r1, r2], bearer(keys.token(iss="https://three.example"))).ok


def test_payload_normalization_and_output_headers(keys):
    r = rule(keys, output_payload_to_header="x-payload",
             output_claim_to_headers=(ClaimToHeader("x-tenant", "org.tenant"),))
    token = keys.token({"scope": "a  b", "org": {"tenant": "acme"}})
    res = authn([r], bearer(token) + (("x-tenant", "spoofed"),))
    assert res.payload["scope"] == ["a", "b"]
    hdrs = dict(res.headers)
    assert hdrs["x-tenant"] == "acme"
    payload = json.loads(base64.urlsafe_b64decode(hdrs["x-payload"] + "=="))
    assert payload["org"] == {"tenant": "acme"}


def test_list_scope_is_left_as_a_list(keys):
    res = authn([rule(keys)], bearer(keys.token({"scope": ["a", "b c"]})))
    assert res.payload["scope"] == ["a", "b c"]


def test_cors_preflight_skips_jwt(keys):
    hdrs = bearer("garbage") + (("origin", "https://x"), ("access-control-request-method", "GET"))
    assert authn([rule(keys)], hdrs, method="OPTIONS").ok


def test_remote_jwks_come_from_the_fetcher(keys):
    r = JWTRule(issuer=ISSUER, jwks_uri="https://issuer.example/jwks")
    assert authn([r], bearer(keys.token()), fetch={"https://issuer.example/jwks": keys.jwks}.get).ok
    assert authn([r], bearer(keys.token())).error == mjwt.MSG_FETCH


# ---------------------------------------------------------------- in the request pipeline


def test_invalid_token_is_401_before_a_matching_deny(keys):
    pol = keys.request_authentication() + ap("foo", "deny", "action: DENY\nrules: [{}]")
    d = decide(pol, http(headers=bearer(keys.token(rogue=True))))
    assert (d.outcome, d.decided_by, d.status) == ("deny-401", "request-authentication", 401)


def test_missing_token_is_403_only_when_a_rule_needs_identity(keys):
    need = ap("foo", "p", "rules: [{from: [{source: {requestPrincipals: ['*']}}]}]")
    d = decide(keys.request_authentication() + need, http())
    assert (d.outcome, d.decided_by) == ("deny-403", "none")
    alone = decide(keys.request_authentication(), http())
    assert (alone.outcome, alone.decided_by) == ("allow", "no-policies")


def test_grpc_401_is_unauthenticated(keys):
    wl = workload(ports=((50051, "grpc"),))
    req = http("/a.B/C", method="POST", port=50051, wl=wl, protocol="grpc",
               headers=bearer("x.y.z"))
    d = decide(keys.request_authentication(), req)
    assert (d.outcome, d.status, d.grpc_status) == ("deny-401", 200, 16)


def test_jwt_is_ignored_on_tcp(keys):
    d = decide(keys.request_authentication(), tcp())
    assert d.outcome == "allow"


def test_request_authentication_selection_follows_the_selector(keys):
    text = keys.request_authentication().replace("spec:\n", "spec:\n  selector: {matchLabels: "
                                                 "{app: other}}\n")
    d = decide(objects(text), http(headers=bearer(keys.token(rogue=True))))
    assert d.outcome == "allow"   # the rule does not apply, so the bad token is not checked


def test_authorization_header_is_gone_for_rbac_after_verification(keys):
    rule_ = ap("foo", "p", "rules: [{when: [{key: 'request.headers[authorization]', "
                           "values: ['*']}]}]")
    d = decide(keys.request_authentication() + rule_, http(headers=bearer(keys.token())))
    assert d.outcome == "deny-403"
