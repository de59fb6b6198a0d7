"""The istio-authz acceptance case format: load, mint tokens, evaluate, judge, report.

A case file (`netstrata/istio-authz-cases/v1`, see its header) carries `defaults` (mesh
settings, JWT timing), `fixtures.jwt` (issuer, JWKS, throw-away signing keys) and `cases`, each
with a `workload`, complete Istio manifests (`policies`), one `request` and an `expect`.
This module turns a case into `evaluate()` arguments: manifests go through
`api.istio.parse_istio_document` with their real line numbers (a manifest the webhook would
refuse is not applied, as a rejected `kubectl apply` leaves nothing behind); the request's
`jwt` is minted here from the fixtures (valid tokens signed with `netstrata-test-key-1`,
invalid ones per `invalid_reason`) and placed where `location` says, so the evaluator sees a
real header, query parameter or cookie and verifies it like any other token.

The report is FORMAT.md's result shape (suite `istio-authz`, mode `reference`, one probe per
case: `got` = outcome, `rule` = decided_by, layer `mesh`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jwt as pyjwt

from netstrata.api._yaml import FieldPath, Located, load_documents
from netstrata.api.istio import IstioMeta, IstioObject, PeerAuthentication, parse_istio_document
from netstrata.errors import ManifestError, NetstrataError
from netstrata.mesh.authz import evaluate
from netstrata.mesh.types import (
    ClientCapture,
    ExtAuthzResponse,
    ExtensionProvider,
    MeshConfig,
    MeshDecision,
    MeshRequest,
    Peer,
    ServiceRef,
    Workload,
    WorkloadPort,
)

SUITE: Final = "istio-authz"
DEFAULT_NOW: Final = 1_790_000_000.0
"""Evaluation time of a check run (2026-09-21T...Z); tokens are minted relative to it."""
UNKNOWN_ISSUER: Final = "https://unknown-issuer.netstrata.test"
WRONG_AUDIENCE: Final = "netstrata-wrong-audience"
_PA_MODES: Final = ("STRICT", "PERMISSIVE", "DISABLE")


class CaseFileError(NetstrataError):
    """The case file itself cannot be used (not YAML, not this schema, a bad field)."""


@dataclass(frozen=True, slots=True)
class MeshCase:
    """One case, ready to evaluate."""

    id: str
    title: str
    objects: tuple[IstioObject, ...]
    request: MeshRequest
    peer: Peer
    mesh: MeshConfig
    expect: Mapping[str, Any]
    tags: tuple[str, ...] = ()
    ext_authz: Mapping[str, ExtAuthzResponse | None] = field(default_factory=dict)
    jwks_by_uri: Mapping[str, str] = field(default_factory=dict)
    """What each `jwksUri` serves (`environment.jwks`)."""
    default_jwks: str | None = None
    """Served for any other `jwksUri`: the fixture JWKS, the only key set of the test world."""
    rejected: tuple[str, ...] = ()
    """Manifests refused by validation (not applied), as rendered ManifestErrors."""


# ---------------------------------------------------------------- workloads, mesh, request


def _protocol(port: Mapping[str, Any]) -> str:
    proto = str(port.get("app_protocol") or port.get("appProtocol") or port.get("protocol")
                or "tcp").lower()
    if proto in ("tcp", "udp", "sctp") and port.get("name"):
        prefix = str(port["name"]).split("-", 1)[0].lower()  # Istio's port-name convention
        if prefix in ("http", "http2", "grpc", "grpc-web", "tcp", "tls", "https"):
            return prefix
    return proto


def workload_of(raw: Mapping[str, Any]) -> Workload:
    proxy = raw.get("proxyConfig") or {}
    kind = str(raw.get("kind") or "sidecar")
    return Workload(
        name=str(raw.get("name", "workload")), namespace=str(raw.get("namespace", "default")),
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        ports=tuple(WorkloadPort(int(p["port"]), _protocol(p)) for p in raw.get("ports") or []),
        annotations={str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
        kind=kind if kind in ("gateway", "waypoint") else "sidecar",  # type: ignore[arg-type]
        num_trusted_proxies=int((proxy.get("gatewayTopology") or {}).get(
            "numTrustedProxies", 0)),
        ip=raw.get("ip"),
        services=tuple(ServiceRef(str(s["name"]), str(s.get("namespace", raw.get(
            "namespace", "default")))) for s in raw.get("services") or []),
        connection_settings=dict(proxy.get("connectionSettings") or {}))


def _provider(raw: Mapping[str, Any]) -> ExtensionProvider:
    http, grpc = raw.get("envoyExtAuthzHttp"), raw.get("envoyExtAuthzGrpc")
    body = http or grpc or {}
    status = body.get("statusOnError")
    return ExtensionProvider(
        name=str(raw["name"]), kind="http" if http is not None else "grpc",
        service=str(body.get("service", "")), port=int(body.get("port", 0)),
        status_on_error=int(status) if status else 403, fail_open=bool(body.get("failOpen")))


def mesh_of(defaults: Mapping[str, Any], override: Mapping[str, Any]) -> MeshConfig:
    m = {**defaults, **override}
    norm = (m.get("pathNormalization") or {}).get("normalization", "BASE")
    return MeshConfig(
        root_namespace=str(m.get("rootNamespace", "istio-system")),
        trust_domain=str(m.get("trustDomain", "cluster.local")),
        trust_domain_aliases=tuple(m.get("trustDomainAliases") or ()),
        ca_trust_domains=tuple(td for ca in m.get("caCertificates") or []
                               for td in ca.get("trustDomains") or []),
        path_normalization=str(norm),  # type: ignore[arg-type]
        extension_providers=tuple(_provider(p) for p in m.get("extensionProviders") or []),
        skip_validate_trust_domain=bool(m.get("skipValidateTrustDomain", False)),
        multiple_custom_providers=bool(m.get("enableMultipleCustomProviders", False)))


def mesh_peer_authentication(mesh_raw: Mapping[str, Any], root: str) -> PeerAuthentication | None:
    """`mesh.peerAuthentication: STRICT` (a shorthand some cases use) as the mesh-wide policy."""
    mode = str(mesh_raw.get("peerAuthentication", "")).split(" ")[0].upper()
    if mode not in _PA_MODES:
        return None
    return PeerAuthentication(IstioMeta("mesh-default", root), mode=mode)  # type: ignore[arg-type]


def _headers(raw: Any) -> list[tuple[str, str]]:
    if isinstance(raw, Mapping):
        return [(str(k), str(v)) for k, v in raw.items()]
    return [(str(k), str(v)) for k, v in raw or []]


def place_token(req: dict[str, Any], headers: list[tuple[str, str]], token: str,
                 location: Any) -> None:
    """Put the token where the case says (default `Authorization: Bearer <token>`)."""
    if isinstance(location, str):
        name, _, rest = location.partition(":")
        location = ({"param": rest.strip()} if name.strip() in ("query", "param") else
                    {"cookie": rest.strip()} if name.strip() == "cookie" else
                    {"header": name.strip(), "prefix": rest.strip().replace("<token>", "")})
    location = location or {"header": "Authorization", "prefix": "Bearer "}
    if "param" in location or "query" in location:
        name = location.get("param") or location.get("query")
        path = str(req.get("path") or "/")
        req["path"] = f"{path}{'&' if '?' in path else '?'}{name}={token}"
    elif "cookie" in location:
        headers.append(("cookie", f"{location['cookie']}={token}"))
    else:
        headers.append((str(location.get("header", "Authorization")),
                        f"{location.get('prefix', '')}{token}"))


def mint_token(spec: Mapping[str, Any], fixtures: Mapping[str, Any],
               timing: Mapping[str, Any], now: float) -> str:
    """A token for `request.jwt` (case-file header: valid ones signed with the test key)."""
    if spec.get("invalid_reason") == "malformed" or "raw" in spec:
        return str(spec.get("raw", "not-a-jwt"))
    claims = dict(spec.get("claims") or {})
    reason = spec.get("invalid_reason")
    iat = spec.get("iat_offset_s", timing.get("iat_offset_s", -60))
    exp = spec.get("exp_offset_s", timing.get("exp_offset_s", 3600))
    if reason == "expired" and exp >= 0:
        exp = -3600
    claims.setdefault("iat", int(now + iat))
    claims.setdefault("exp", int(now + exp))
    if "nbf_offset_s" in spec or reason == "not-yet-valid":
        claims.setdefault("nbf", int(now + spec.get("nbf_offset_s", 3600)))
    if reason != "unknown-issuer" and fixtures.get("issuer"):
        claims.setdefault("iss", fixtures["issuer"])
    if reason == "unknown-issuer" and claims.get("iss") in (None, fixtures.get("issuer")):
        claims["iss"] = UNKNOWN_ISSUER
    if reason == "audience" and "aud" not in claims:
        claims["aud"] = WRONG_AUDIENCE
    kid = str(spec.get("kid", timing.get("kid", "netstrata-test-key-1")))
    keys = fixtures.get("keys") or {}
    signer = "netstrata-rogue-key" if reason == "bad-signature" else kid
    if signer not in keys:
        raise CaseFileError(f"fixtures.jwt.keys has no {signer}")
    alg = str(spec.get("alg", timing.get("alg", "ES256")))
    return pyjwt.encode(claims, keys[signer]["private_key_pem"], algorithm=alg,
                        headers={"kid": kid})


def istio_sni(host: Any, port: int) -> str | None:
    """The SNI an Istio client sidecar sends with mTLS to a Kubernetes service:
    `outbound_.<port>_._.<service FQDN>` (known only when the request names the FQDN)."""
    if not isinstance(host, str) or ".svc." not in host:
        return None
    name, _, host_port = host.partition(":")
    return f"outbound_.{host_port if host_port.isdigit() else port}_._.{name.lower()}"


def request_of(raw: Mapping[str, Any], workload: Workload, fixtures: Mapping[str, Any],
               timing: Mapping[str, Any], now: float) -> tuple[MeshRequest, Peer]:
    req = dict(raw)
    headers = _headers(req.get("headers"))
    if req.get("jwt"):
        token = mint_token(req["jwt"], fixtures, timing, now)
        place_token(req, headers, token, req["jwt"].get("location"))
    peer_raw = req.get("peer") or {}
    mtls = bool(peer_raw.get("mtls"))
    sni = peer_raw.get("sni") or req.get("sni")
    if mtls and not sni:
        sni = istio_sni(req.get("host"), int(req["destination_port"]))
    principal = peer_raw.get("principal")
    if isinstance(principal, str):
        principal = principal.removeprefix("spiffe://")
    peer = Peer(mtls=mtls, principal=principal, sni=sni)
    client_raw = req.get("client")
    client = None
    if isinstance(client_raw, Mapping):
        client = ClientCapture(
            annotations={str(k): str(v) for k, v in (client_raw.get("annotations") or {}).items()},
            has_sidecar=client_raw.get("sidecar", True) not in (False, "none", "false"))
    protocol = str(req.get("protocol", "http")).lower()
    method = req.get("method") or (None if protocol == "tcp" else
                                   "POST" if protocol == "grpc" else "GET")
    request = MeshRequest(
        workload=workload, destination_port=int(req["destination_port"]), protocol=protocol,
        source_ip=str(req.get("source_ip", "0.0.0.0")), destination_ip=req.get("destination_ip"),
        method=method, host=req.get("host"), path=req.get("path"),
        headers=tuple(headers), client=client,
        filter_metadata=req.get("metadata") or req.get("filter_metadata") or {})
    return request, peer


# ---------------------------------------------------------------- loading


def _sub_doc(doc: Located, prefix: FieldPath) -> Located:
    n = len(prefix)
    data: Any = doc.data
    for part in prefix:
        data = data[part]
    return Located(data, doc.source, {p[n:]: m for p, m in doc.marks.items() if p[:n] == prefix})


def _ext_authz(env: Mapping[str, Any]) -> dict[str, ExtAuthzResponse | None]:
    """Stub answers by provider: `allow`, `deny` (with `status`), anything else = unreachable."""
    out: dict[str, ExtAuthzResponse | None] = {}
    for name, answer in (env.get("ext_authz") or {}).items():
        decision = str((answer or {}).get("decision", "allow")).lower()
        if decision in ("allow", "allowed", "ok"):
            out[name] = ExtAuthzResponse(True)
        elif decision in ("deny", "denied"):
            out[name] = ExtAuthzResponse(False, int((answer or {}).get("status", 403)))
        else:
            out[name] = None
    return out


def _case(doc: Located, i: int, top: Mapping[str, Any], now: float) -> MeshCase:
    raw = doc.data["cases"][i]
    defaults = top.get("defaults") or {}
    fixtures = (top.get("fixtures") or {}).get("jwt") or {}
    mesh_raw = {**(defaults.get("mesh") or {}), **(raw.get("mesh") or {})}
    mesh = mesh_of(defaults.get("mesh") or {}, raw.get("mesh") or {})
    objects: list[IstioObject] = []
    rejected: list[str] = []
    for j, _ in enumerate(raw.get("policies") or []):
        try:
            objects.append(parse_istio_document(_sub_doc(doc, ("cases", i, "policies", j))))
        except ManifestError as exc:
            rejected.append(str(exc))
    mesh_pa = mesh_peer_authentication(mesh_raw, mesh.root_namespace)
    if mesh_pa is not None and not any(
            isinstance(o, PeerAuthentication) and o.meta.namespace == mesh.root_namespace
            and not (o.selector and o.selector.match_labels) for o in objects):
        objects.insert(0, mesh_pa)
    workload = workload_of(raw.get("workload") or {})
    env = raw.get("environment") or {}
    request, peer = request_of(raw.get("request") or {}, workload, fixtures,
                               defaults.get("jwt") or {}, now)
    return MeshCase(
        id=str(raw.get("id", f"case-{i}")), title=str(raw.get("title", "")),
        objects=tuple(objects), request=request, peer=peer, mesh=mesh,
        expect=raw.get("expect") or {}, tags=tuple(raw.get("tags") or ()),
        ext_authz=_ext_authz(env), rejected=tuple(rejected),
        jwks_by_uri={str(k): v if isinstance(v, str) else json.dumps(v)
                     for k, v in (env.get("jwks") or {}).items()},
        default_jwks=fixtures.get("jwks"))


def load_cases(path: str | Path, *, now: float = DEFAULT_NOW) -> list[MeshCase]:
    """Every case of an istio-authz case file.

    Raises:
        CaseFileError: the file is unreadable, not YAML or has no `cases` list.
        ManifestError: the YAML itself is malformed (with its line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseFileError(f"{path}: {exc.strerror or exc}") from exc
    docs = load_documents(text, str(path))
    if not docs or not isinstance(docs[0].data, dict) or not isinstance(
            docs[0].data.get("cases"), list):
        raise CaseFileError(f"{path}: not an istio-authz case file (no `cases` list)")
    doc = docs[0]
    try:
        return [_case(doc, i, doc.data, now) for i in range(len(doc.data["cases"]))]
    except (KeyError, TypeError, ValueError) as exc:
        raise CaseFileError(f"{path}: malformed case: {exc}") from exc


# ---------------------------------------------------------------- running and judging


def run_case(case: MeshCase, *, now: float = DEFAULT_NOW) -> MeshDecision:
    def ext_authz(provider: ExtensionProvider, _req: MeshRequest) -> ExtAuthzResponse | None:
        return case.ext_authz.get(provider.name)

    def jwks(uri: str) -> str | None:
        return case.jwks_by_uri.get(uri, case.default_jwks)

    return evaluate(case.objects, case.request, case.peer, case.mesh, now=now,
                    ext_authz=ext_authz, jwks_fetcher=jwks)


def _dry_run_mismatch(want: Mapping[str, Any], got: MeshDecision) -> str | None:
    for kind in ("allow", "deny"):
        if kind not in want:
            continue
        shadow = getattr(got.dry_run, kind) if got.dry_run else None
        exp = want[kind] or {}
        if shadow is None:
            return f"no dry-run {kind} result, expected {exp}"
        if "result" in exp and exp["result"] != shadow.result:
            return f"dry-run {kind} {shadow.result}, expected {exp['result']}"
        if "policy" in exp and exp["policy"] != shadow.policy:
            return f"dry-run {kind} policy {shadow.policy}, expected {exp['policy']}"
    return None


def _upstream_mismatch(want: Mapping[str, Any], got: MeshDecision) -> str | None:
    names = {k.lower() for k, _ in got.upstream_headers or ()}
    for h in want.get("headers_absent") or []:
        if h.lower() in names:
            return f"upstream header {h} present, expected absent"
    for h in want.get("headers_present") or []:
        if h.lower() not in names:
            return f"upstream header {h} absent, expected present"
    return None


_MTLS_REASONS: Final = (
    ("strict", ("strict", "plaintext")),
    ("trust-domain", ("trust", "domain", "handshake", "td", "san")),
)


def _mtls_reason_class(decided_by: str) -> str | None:
    reason = decided_by.removeprefix("mtls:").lower()
    for name, words in _MTLS_REASONS:
        if any(w in reason for w in words):
            return name
    return None


def same_decider(expected: str, got: str) -> bool:
    """`decided_by` equality. The conventions spell the mTLS refusals `mtls:<reason>` without
    fixing the words, so two `mtls:` reasons agree when they name the same cause (STRICT vs
    plaintext, or an untrusted trust domain); everything else must be identical."""
    if expected == got:
        return True
    if expected.startswith("mtls:") and got.startswith("mtls:"):
        cls = _mtls_reason_class(got)
        return cls is not None and cls == _mtls_reason_class(expected)
    return False


def judge(case: MeshCase, got: MeshDecision) -> str | None:
    """None when `got` meets every expectation the case states, else the first mismatch."""
    e = case.expect
    checks: list[tuple[bool, str]] = [
        ("outcome" in e and e["outcome"] != got.outcome,
         f"expected {e.get('outcome')}, got {got.outcome}"),
        ("decided_by" in e and not same_decider(str(e["decided_by"]), got.decided_by),
         f"decided by {got.decided_by}, expected {e.get('decided_by')}"),
        ("audited" in e and bool(e["audited"]) != got.audited,
         f"audited={got.audited}, expected {e.get('audited')}"),
        ("audited_by" in e and e["audited_by"] != got.audited_by,
         f"audited by {got.audited_by}, expected {e.get('audited_by')}"),
        ("ext_authz_called" in e and bool(e["ext_authz_called"]) != got.ext_authz_called,
         f"ext_authz_called={got.ext_authz_called}, expected {e.get('ext_authz_called')}"),
    ]
    wire = e.get("wire") or {}
    if "grpc_status" in wire:
        checks.append((wire["grpc_status"] != got.grpc_status,
                       f"grpc-status {got.grpc_status}, expected {wire['grpc_status']}"))
    elif "http_status" in wire:
        checks.append((wire["http_status"] != got.status,
                       f"HTTP status {got.status}, expected {wire['http_status']}"))
    for bad, why in checks:
        if bad:
            return why
    if "dry_run" in e:
        shadow_why = _dry_run_mismatch(e["dry_run"] or {}, got)
        if shadow_why:
            return shadow_why
    if "upstream" in e:
        return _upstream_mismatch(e["upstream"] or {}, got)
    return None


def _from(case: MeshCase) -> str:
    if case.peer.mtls and case.peer.principal:
        return case.peer.principal
    return case.request.source_ip


def case_record(case: MeshCase, got: MeshDecision) -> dict[str, Any]:
    mismatch = judge(case, got)
    status = "failed" if mismatch else "passed"
    req = case.request
    l7 = None
    if req.protocol != "tcp":
        l7 = {req.protocol: {"method": req.method, "host": req.host, "path": req.path}}
    probe = {
        "step": 0, "from": _from(case), "to": f"{req.workload.namespace}/{req.workload.name}",
        "port": req.destination_port, "protocol": req.protocol.upper(), "l7": l7,
        "expect": case.expect.get("outcome"), "got": got.outcome, "layer": "mesh",
        "rule": got.decided_by, "status": status, "reason": mismatch,
    }
    return {"id": case.id, "status": status, "reason": mismatch, "probes": [probe]}


def report_of(records: Sequence[dict[str, Any]], mode: str = "reference") -> dict[str, Any]:
    """FORMAT.md's result shape around case records."""
    summary = {"passed": 0, "failed": 0, "skipped": 0,
               "probes": sum(len(r["probes"]) for r in records)}
    for r in records:
        summary[r["status"]] += 1
    return {"suite": SUITE, "mode": mode, "cases": list(records), "summary": summary}


def check_report(cases: Sequence[MeshCase], *, now: float = DEFAULT_NOW,
                 mode: str = "reference") -> dict[str, Any]:
    """Run `cases` and report them in FORMAT.md's result shape."""
    return report_of([case_record(c, run_case(c, now=now)) for c in cases], mode)


__all__ = [
    "DEFAULT_NOW",
    "SUITE",
    "CaseFileError",
    "MeshCase",
    "case_record",
    "check_report",
    "judge",
    "istio_sni",
    "load_cases",
    "mesh_of",
    "mesh_peer_authentication",
    "mint_token",
    "place_token",
    "report_of",
    "request_of",
    "run_case",
    "same_decider",
    "workload_of",
]
