"""The destination proxy's verdict for one request: Istio's filter order as one pure function.

Order (reference §3, `pilot/pkg/networking/core/listener_builder.go`, `authz/builder`):

  connection  1. capture: a port the sidecar does not intercept goes straight to the app
              2. mTLS: PeerAuthentication STRICT refuses plaintext, an untrusted trust domain
                 fails the handshake (both: the connection is reset, no HTTP status)
  request     3. CUSTOM: a matching rule sends the request to the ext-authz provider
              4. RequestAuthentication: a presented token that fails → 401
              5. AUDIT: marks the request, never decides
              6. DENY → 403
              7. ALLOW: if any enforced ALLOW policy applies, allow iff one of its rules
                 matches, else 403; none applies → allow
              8. dry-run DENY / ALLOW engines run beside 6-7 and are only reported

On a TCP chain steps 4 disappears, rules are translated (`mesh.rules`), CUSTOM runs only for
gRPC providers, and every denial is a reset. `decided_by` follows the acceptance suite's
conventions: the deciding rule's name, `none`, `no-policies`, `no-allow-policies`,
`request-authentication`, `mtls:<reason>`, `bypass:<annotation>` or `custom:<provider>`.
Sans-IO: time, ext-authz answers and remote JWKS come in as arguments.

Selection and rule compilation happen once per policy snapshot and workload
(`mesh.compiled`); `evaluate` finds the snapshot of the objects it is given again, and
`evaluate_uncompiled` is the plain per-request form the compiled one is tested against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from netstrata.api.istio import IstioObject
from netstrata.mesh import selection
from netstrata.mesh.attributes import Attributes, build_attributes, normalized_target
from netstrata.mesh.compiled import ChainRules, PolicySet, WorkloadPolicies, policy_set
from netstrata.mesh.jwt import authenticate
from netstrata.mesh.types import (
    DryRun,
    ExtAuthzClient,
    JwksFetcher,
    MeshConfig,
    MeshDecision,
    MeshRequest,
    Outcome,
    Peer,
    ShadowResult,
)

RBAC_DENIED_BODY: Final = "RBAC: access denied"
GRPC_PERMISSION_DENIED: Final = 7
GRPC_UNAUTHENTICATED: Final = 16
MTLS_STRICT: Final = "mtls:strict"
MTLS_UNTRUSTED_TD: Final = "mtls:untrusted-trust-domain"
_METHOD: Final = re.compile(r"[A-Z0-9!#$%&'*+.^_`|~-]+")


@dataclass(slots=True)
class _Run:
    """Mutable scratch of one evaluation; the result is the frozen MeshDecision."""

    request: MeshRequest
    is_http: bool
    notes: list[str] = field(default_factory=list)
    audited_by: str | None = None
    shadow_allow: ShadowResult | None = None
    shadow_deny: ShadowResult | None = None
    ext_authz_called: bool = False

    def decide(self, outcome: Outcome, decided_by: str, *, status: int | None = None,
               body: str | None = None,
               upstream: tuple[tuple[str, str], ...] | None = None) -> MeshDecision:
        grpc = None
        if outcome in ("deny-403", "deny-401") and self.is_grpc:
            grpc = GRPC_UNAUTHENTICATED if outcome == "deny-401" else GRPC_PERMISSION_DENIED
        dry = (DryRun(self.shadow_allow, self.shadow_deny)
               if self.shadow_allow or self.shadow_deny else None)
        return MeshDecision(
            outcome=outcome, decided_by=decided_by, audited=self.audited_by is not None,
            audited_by=self.audited_by, dry_run=dry, explanation=tuple(self.notes),
            status=200 if grpc is not None else status, grpc_status=grpc, body=body,
            ext_authz_called=self.ext_authz_called, upstream_headers=upstream)

    def deny(self, decided_by: str, *, status: int = 403, body: str = RBAC_DENIED_BODY,
             ) -> MeshDecision:
        if not self.is_http:
            return self.decide("tcp-reset", decided_by)
        return self.decide("deny-401" if status == 401 else "deny-403", decided_by,
                           status=status, body=body)

    @property
    def is_grpc(self) -> bool:
        ct = dict((k.lower(), v) for k, v in self.request.headers).get("content-type", "")
        return self.is_http and (self.request.protocol == "grpc"
                                 or ct.startswith("application/grpc"))


def _connection(run: _Run, policies: PolicySet, compiled: WorkloadPolicies,
                peer: Peer) -> tuple[Peer, MeshDecision | None]:
    """Steps 1-2: capture and mTLS. Returns the peer as the proxy sees it, or a decision."""
    req, wl, mesh = run.request, run.request.workload, policies.mesh
    if wl.kind == "sidecar" and wl.annotations:
        bypass = selection.inbound_bypass(wl, req.destination_port)
        if bypass is not None:
            run.notes.append(f"port {req.destination_port} is not captured ({bypass}): the "
                             "app gets the raw connection, no mTLS or policy applies")
            return peer, run.decide("allow", f"bypass:{bypass}")
    client_bypass = selection.outbound_bypass(req.client, req.destination_port,
                                              req.destination_ip or wl.ip)
    if client_bypass is not None:
        run.notes.append(f"the client's sidecar is bypassed ({client_bypass}): plaintext, "
                         "no client principal")
        peer = Peer(False, None, peer.sni)
    if wl.kind == "sidecar":
        res = compiled.mtls_mode(policies.objects, wl, req.destination_port, mesh)
        run.notes.append(f"mTLS mode {res.mode} ({res.source})")
        if res.mode == "STRICT" and not peer.mtls:
            run.notes.append("STRICT refuses a plaintext client: no filter chain matches")
            return peer, run.decide("tcp-reset", MTLS_STRICT)
        if res.mode == "DISABLE" and peer.mtls:
            run.notes.append("DISABLE: the client's auto-mTLS sends plaintext; no principal")
            peer = Peer(False, None, peer.sni)
    if peer.mtls and peer.principal and not mesh.skip_validate_trust_domain:
        bundle = policies.bundle
        if not bundle.accepts_peer(peer.principal, mesh.ca_trust_domains):
            run.notes.append(f"client trust domain of {peer.principal} is not "
                             f"{', '.join(bundle.trust_domains)}: handshake fails")
            return peer, run.decide("tcp-reset", MTLS_UNTRUSTED_TD)
    return peer, None


def _custom(run: _Run, chain: ChainRules, attrs: Attributes, mesh: MeshConfig,
            ext_authz: ExtAuthzClient | None) -> MeshDecision | None:
    """Step 3 (builder.go buildHTTP/buildTCP for CUSTOM, extauthz.go)."""
    too_many = len(chain.custom) > 1 and not mesh.multiple_custom_providers
    for name, rules in chain.custom:
        provider = mesh.provider(name)
        if (provider is not None and not too_many and not attrs.is_http
                and provider.kind == "http"):
            run.notes.append(f"CUSTOM provider {name} is HTTP: ignored on a TCP port")
            continue
        hit = rules.first_match(attrs)
        if hit is None:
            continue
        if provider is None or too_many:
            why = "is not a configured extension provider" if provider is None else (
                "is one of several CUSTOM providers (multiple providers are off)")
            run.notes.append(f"{hit.name} matches but provider {name} {why}: denied")
            return run.deny(f"custom:{name}")
        run.ext_authz_called = True
        answer = ext_authz(provider, run.request) if ext_authz is not None else None
        if answer is None:
            if provider.fail_open:
                run.notes.append(f"ext-authz {name} unreachable, failOpen: continue")
                continue
            run.notes.append(f"ext-authz {name} unreachable: statusOnError "
                             f"{provider.status_on_error}")
            return run.deny(f"custom:{name}", status=provider.status_on_error, body="")
        if not answer.allowed:
            run.notes.append(f"{hit.name} sent the request to {name}, which denied it")
            return run.deny(f"custom:{name}", status=answer.status, body="")
        run.notes.append(f"{hit.name} sent the request to {name}, which allowed it")
    return None


def _rbac(run: _Run, any_policy: bool, chain: ChainRules, attrs: Attributes,
          upstream: tuple[tuple[str, str], ...] | None) -> MeshDecision:
    """Steps 5-8: AUDIT, DENY, ALLOW and their dry-run shadows."""
    audit = chain.audit.first_match(attrs) if chain.audit else None
    if audit is not None:
        run.audited_by = audit.name
        run.notes.append(f"audited by {audit.name}")
    if chain.has_deny_dry:
        hit = chain.deny_dry.first_match(attrs)
        run.shadow_deny = ShadowResult("denied", hit.name) if hit else ShadowResult("allowed")
        run.notes.append(f"dry-run DENY: shadow {run.shadow_deny.result}"
                         + (f" by {hit.name}" if hit else ""))
    denied = chain.deny.first_match(attrs) if chain.deny else None
    if denied is not None:
        run.notes.append(f"DENY {denied.name} matches" + (f" ({denied.note})"
                                                          if denied.note else ""))
        return run.deny(denied.name)
    if chain.has_allow_dry:
        hit = chain.allow_dry.first_match(attrs)
        run.shadow_allow = ShadowResult("allowed", hit.name) if hit else ShadowResult("denied")
        run.notes.append(f"dry-run ALLOW: shadow {run.shadow_allow.result}"
                         + (f" by {hit.name}" if hit else ""))
    if not chain.has_allow:
        word = "no-allow-policies" if any_policy else "no-policies"
        run.notes.append("no enforced ALLOW policy: allowed")
        return run.decide("allow", word, upstream=upstream)
    allowed = chain.allow.first_match(attrs)
    if allowed is None:
        for r in chain.allow.rules:  # already in name order
            run.notes.append(f"ALLOW {r.name}: {r.first_failure(attrs)}")
        return run.deny("none")
    run.notes.append(f"ALLOW {allowed.name} matches")
    return run.decide("allow", allowed.name, upstream=upstream)


def _http_target(run: _Run, mesh: MeshConfig) -> str | MeshDecision:
    """The connection manager's checks before any filter: method syntax, path normalization
    (reference §9). Returns the normalized request target, or the 400 decision."""
    request = run.request
    if request.method is not None and not _METHOD.fullmatch(request.method):
        run.notes.append(f"method {request.method!r} is not an upper-case token")
        return run.decide("reject-400", "http:bad-method", status=400)
    outcome = normalized_target(request, mesh)
    if outcome.action == "reject":
        run.notes.append("the path fails normalization")
        return run.decide("reject-400", "http:bad-path", status=400)
    if outcome.action == "redirect":
        run.notes.append(f"escaped slashes: 307 to {outcome.path}; the retry is judged")
    return outcome.path


def evaluate_compiled(policies: PolicySet, request: MeshRequest, peer: Peer, *, now: float,
                      ext_authz: ExtAuthzClient | None = None,
                      jwks_fetcher: JwksFetcher | None = None) -> MeshDecision:
    """`evaluate` against a compiled snapshot (`mesh.compiled.PolicySet`); the node proxy
    keeps one per policy version and calls this per request."""
    mesh = policies.mesh
    is_http = request.is_http
    run = _Run(request, is_http)
    compiled = policies.workload(request.workload)
    peer, early = _connection(run, policies, compiled, peer)
    if early is not None:
        return early
    target: str | None = None
    if is_http:
        checked = _http_target(run, mesh)
        if isinstance(checked, MeshDecision):
            return checked
        target = checked
    attrs = build_attributes(request, peer, target=target)
    chain = compiled.chain(is_http)
    if chain.custom:
        decided = _custom(run, chain, attrs, mesh, ext_authz)
        if decided is not None:
            return decided
    upstream: tuple[tuple[str, str], ...] | None = None
    if is_http:
        authn = authenticate(compiled.jwt_rules, method=request.method, headers=request.headers,
                             target=target or "/", now=now, skew_s=mesh.jwt_clock_skew_s,
                             fetch=jwks_fetcher)
        run.notes.extend(authn.notes)
        if not authn.ok:
            run.notes.append(f"RequestAuthentication: {authn.error}")
            return run.deny("request-authentication", status=401, body=authn.error or "")
        upstream = authn.headers
        if authn.payload is not None or authn.headers != request.headers:
            attrs = build_attributes(request, peer, target=target, jwt_payload=authn.payload,
                                     headers=authn.headers)
    return _rbac(run, bool(compiled.applicable), chain, attrs, upstream)


def evaluate(policies: Iterable[IstioObject], request: MeshRequest, peer: Peer,
             mesh_config: MeshConfig | None = None, *, now: float,
             ext_authz: ExtAuthzClient | None = None,
             jwks_fetcher: JwksFetcher | None = None) -> MeshDecision:
    """Decide `request` at its destination workload's proxy.

    Args:
        policies: every Istio object known to the mesh (all namespaces, all three kinds);
            selection picks those that apply to `request.workload`. The compiled form is
            kept while the same objects come again (`mesh.compiled.policy_set`).
        request: the request or TCP connection as the proxy receives it.
        peer: what the client's TLS handshake proved (before PeerAuthentication).
        mesh_config: meshConfig settings; Istio's defaults when None.
        now: current time, Unix seconds (JWT exp/nbf).
        ext_authz: answers CUSTOM providers; without it a matching CUSTOM rule behaves as an
            unreachable provider (statusOnError, or failOpen).
        jwks_fetcher: serves `jwksUri` documents; without it remote JWKS fail (401).
    """
    return evaluate_compiled(policy_set(policies, mesh_config), request, peer, now=now,
                             ext_authz=ext_authz, jwks_fetcher=jwks_fetcher)


def evaluate_uncompiled(policies: Iterable[IstioObject], request: MeshRequest, peer: Peer,
                        mesh_config: MeshConfig | None = None, *, now: float,
                        ext_authz: ExtAuthzClient | None = None,
                        jwks_fetcher: JwksFetcher | None = None) -> MeshDecision:
    """The straightforward evaluation: select and compile for this one request, scan every
    rule in name order. The reference `evaluate` is checked against."""
    fresh = PolicySet(policies, mesh_config, index=False, cache=False)
    return evaluate_compiled(fresh, request, peer, now=now, ext_authz=ext_authz,
                             jwks_fetcher=jwks_fetcher)


__all__ = [
    "GRPC_PERMISSION_DENIED",
    "GRPC_UNAUTHENTICATED",
    "MTLS_STRICT",
    "MTLS_UNTRUSTED_TD",
    "RBAC_DENIED_BODY",
    "evaluate",
    "evaluate_compiled",
    "evaluate_uncompiled",
]
