"""RequestAuthentication: find, verify and normalise the JWT of a request (reference §13).

Istio turns the merged `jwtRules` of a workload into Envoy's `jwt_authn` filter
(`pilot/pkg/security/authn/policy_applier.go` `convertToEnvoyJwtConfig`): one provider per
rule, each required as "{provider OR allow_missing}", and with several providers an outer OR so
that providers sharing a token location still pass. Net effect, implemented here:

- a token is looked for in each rule's locations (`fromHeaders`, `fromParams`, `fromCookies`;
  none given: `Authorization: Bearer <t>`, then the `access_token` query parameter);
- the request passes when some rule verifies every token found in its locations, or when every
  rule either finds no token or verifies what it finds; otherwise **401**;
- no token anywhere is not a failure: the request goes on without identity.

Verification follows Envoy's authenticator order and messages (`authenticator.cc`,
jwt_verify_lib): parse (`Jwt is not in the form of Header.Payload.Signature...`), issuer
(`Jwt issuer is not configured`), time with 60 s skew (`Jwt not yet valid`, `Jwt is
expired`), audiences (`Audiences in Jwt are not allowed`), then the signature against keys
selected by `kid` and `alg` (`Jwks doesn't have key to match kid or alg from Jwt`, `Jwt
verification fails`). Signatures are checked with PyJWT's algorithm objects.

After success the payload is normalised (`scope`, `permission` and `spaceDelimitedClaims` string
claims split on spaces; lists untouched) and the upstream headers are rewritten: the token
header is removed unless `forwardOriginalToken`, `outputPayloadToHeader` gets the payload
segment, `outputClaimToHeaders` copies string/number/bool claims. Time is passed in (`now`).
Tokens never appear in explanations.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from jwt.algorithms import get_default_algorithms

from netstrata.api.istio import JWTRule
from netstrata.mesh.types import JwksFetcher

DEFAULT_SPACE_DELIMITED: Final = ("permission", "scope")
_JWT_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=")
_KTY_FOR_ALG: Final = {"ES": "EC", "RS": "RSA", "PS": "RSA", "HS": "oct", "Ed": "OKP"}

MSG_BAD_FORMAT: Final = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
MSG_BAD_HEADER: Final = "Jwt header is an invalid JSON"
MSG_BAD_PAYLOAD: Final = "Jwt payload is an invalid JSON"
MSG_BAD_ALG: Final = "Jwt header [alg] is not supported"
MSG_UNKNOWN_ISSUER: Final = "Jwt issuer is not configured"
MSG_NOT_YET_VALID: Final = "Jwt not yet valid"
MSG_EXPIRED: Final = "Jwt is expired"
MSG_AUDIENCE: Final = "Audiences in Jwt are not allowed"
MSG_KID_ALG: Final = "Jwks doesn't have key to match kid or alg from Jwt"
MSG_VERIFY: Final = "Jwt verification fails"
MSG_NO_KEYS: Final = "Jwks doesn't have valid keys"
MSG_FETCH: Final = "Jwks remote fetch is failed"


class JwtInvalid(ValueError):
    """A presented token failed; `str()` is Envoy's status message."""


@dataclass(frozen=True, slots=True)
class FoundToken:
    token: str
    header: str | None
    """The header it was read from (removed upstream unless forwarded); None for params and
    cookies, which Envoy leaves in place."""


@dataclass(frozen=True, slots=True)
class AuthnResult:
    """What the jwt_authn step decided."""

    ok: bool
    payload: Mapping[str, Any] | None = None
    """Normalised payload of the accepted token; None when there was none (or on failure)."""
    error: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """Request headers after the filter (what RBAC and the app see)."""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _header_values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def _after_prefix(value: str, prefix: str) -> str | None:
    """Envoy extractor: find the prefix anywhere, then take the run of JWT characters."""
    if not prefix:
        return value.strip() or None
    pos = value.find(prefix)
    if pos < 0:
        return None
    rest = value[pos + len(prefix):]
    end = next((i for i, ch in enumerate(rest) if ch not in _JWT_CHARS), len(rest))
    return rest[:end] or None


def find_tokens(rule: JWTRule, headers: Sequence[tuple[str, str]],
                target: str) -> list[FoundToken]:
    """Tokens present in the locations `rule` reads, in location order, without duplicates."""
    locations = [(h.name, h.prefix) for h in rule.from_headers]
    params, cookies = list(rule.from_params), list(rule.from_cookies)
    if not rule.has_custom_locations:
        locations, params = [("authorization", "Bearer ")], ["access_token"]
    found: list[FoundToken] = []
    for name, prefix in locations:
        for value in _header_values(headers, name):
            token = _after_prefix(value, prefix)
            if token:
                found.append(FoundToken(token, name.lower()))
    query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    found += [FoundToken(query[p], None) for p in params if query.get(p)]
    if cookies:
        jar: SimpleCookie = SimpleCookie()
        for value in _header_values(headers, "cookie"):
            try:
                jar.load(value)
            except Exception:  # noqa: BLE001 - a malformed cookie header carries no token
                continue
        found += [FoundToken(jar[c].value, None) for c in cookies if c in jar and jar[c].value]
    unique: list[FoundToken] = []
    for tok in found:
        if tok.token not in {u.token for u in unique}:
            unique.append(tok)
    return unique


@dataclass(frozen=True, slots=True)
class ParsedJwt:
    header: Mapping[str, Any]
    payload: Mapping[str, Any]
    signing_input: bytes
    signature: bytes
    payload_segment: str


def parse_jwt(token: str) -> ParsedJwt:
    """jwt_verify_lib `Jwt::parseFromString`, with its checks on claim types."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtInvalid(MSG_BAD_FORMAT)
    try:
        header = json.loads(_b64url(parts[0]))
    except (ValueError, binascii.Error) as exc:
        raise JwtInvalid(MSG_BAD_HEADER) from exc
    try:
        payload = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise JwtInvalid(MSG_BAD_PAYLOAD) from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JwtInvalid(MSG_BAD_PAYLOAD if isinstance(header, dict) else MSG_BAD_HEADER)
    if header.get("alg") not in get_default_algorithms() or header.get("alg") == "none":
        raise JwtInvalid(MSG_BAD_ALG)
    for claim in ("iss", "sub", "azp", "jti"):
        if claim in payload and not isinstance(payload[claim], str):
            raise JwtInvalid(f"Jwt payload [{claim}] is not a string")
    aud = payload.get("aud")
    if aud is not None and not isinstance(aud, str) and not (
            isinstance(aud, list) and all(isinstance(a, str) for a in aud)):
        raise JwtInvalid("Jwt payload [aud] is not a string or string list")
    for claim in ("exp", "nbf", "iat"):
        v = payload.get(claim)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                              or v < 0 or (isinstance(v, float) and not v.is_integer())):
            raise JwtInvalid(f"Jwt payload [{claim}] is not an integer")
    return ParsedJwt(header, payload, f"{parts[0]}.{parts[1]}".encode(), signature, parts[1])


def _sanitize_audience(aud: str) -> str:
    """jwt_verify_lib CheckAudience: scheme prefix and trailing `/` are ignored."""
    for scheme in ("http://", "https://"):
        if aud.startswith(scheme):
            aud = aud[len(scheme):]
    return aud.rstrip("/")


def _audiences_allowed(configured: Sequence[str], aud: Any) -> bool:
    if not configured:
        return True  # Envoy: no audiences configured → not checked
    wanted = {_sanitize_audience(a) for a in configured}
    given = [aud] if isinstance(aud, str) else list(aud or [])
    return any(_sanitize_audience(a) in wanted for a in given)


def _jwks_keys(rule: JWTRule, fetch: JwksFetcher | None) -> list[Mapping[str, Any]]:
    text: str | None = rule.jwks
    if not text and rule.jwks_uri:
        text = fetch(rule.jwks_uri) if fetch is not None else None
        if text is None:
            raise JwtInvalid(MSG_FETCH)
    try:
        data = json.loads(text or "")
    except ValueError as exc:
        raise JwtInvalid(MSG_NO_KEYS) from exc
    keys = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    valid: list[Mapping[str, Any]] = [
        k for k in keys or [] if isinstance(k, dict) and isinstance(k.get("kty"), str)]
    if not valid:
        raise JwtInvalid(MSG_NO_KEYS)
    return valid


def verify_signature(jwt: ParsedJwt, keys: Sequence[Mapping[str, Any]]) -> None:
    """jwt_verify_lib verifyJwtWithoutTimeChecking: keys selected by kid, alg and key type."""
    alg, kid = str(jwt.header["alg"]), jwt.header.get("kid")
    algorithm = get_default_algorithms()[alg]
    matched = False
    for jwk in keys:
        if kid and jwk.get("kid") and jwk.get("kid") != kid:
            continue
        if jwk.get("alg") and jwk.get("alg") != alg:
            continue
        if jwk.get("kty") != _KTY_FOR_ALG.get(alg[:2]):
            continue
        matched = True
        try:
            key = algorithm.from_jwk(json.dumps(dict(jwk)))
            if algorithm.verify(jwt.signing_input, key, jwt.signature):
                return
        except Exception:  # noqa: BLE001 - an unusable key simply does not verify
            continue
    raise JwtInvalid(MSG_VERIFY if matched else MSG_KID_ALG)


def verify(token: str, rule: JWTRule, *, now: float, skew_s: int = 60,
           fetch: JwksFetcher | None = None) -> ParsedJwt:
    """Verify one token against one rule (provider) in Envoy's order; raises JwtInvalid."""
    jwt = parse_jwt(token)
    if rule.issuer and jwt.payload.get("iss") != rule.issuer:
        raise JwtInvalid(MSG_UNKNOWN_ISSUER)
    nbf, exp = jwt.payload.get("nbf"), jwt.payload.get("exp")
    if nbf is not None and now + skew_s < nbf:
        raise JwtInvalid(MSG_NOT_YET_VALID)
    if exp is not None and now > exp + skew_s:
        raise JwtInvalid(MSG_EXPIRED)
    if not _audiences_allowed(rule.audiences, jwt.payload.get("aud")):
        raise JwtInvalid(MSG_AUDIENCE)
    verify_signature(jwt, _jwks_keys(rule, fetch))
    return jwt


def normalize_payload(payload: Mapping[str, Any], rule: JWTRule) -> dict[str, Any]:
    """Envoy `normalize_payload_in_metadata`: split string claims on spaces, keep lists."""
    out = dict(payload)
    for claim in {*DEFAULT_SPACE_DELIMITED, *rule.space_delimited_claims}:
        if isinstance(out.get(claim), str):
            out[claim] = [p for p in out[claim].split(" ") if p]
    return out


def _claim_header_value(payload: Mapping[str, Any], claim: str) -> str | None:
    node: Any = payload
    for part in claim.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, int | float):
        return str(int(node)) if float(node).is_integer() and node >= 0 else str(node)
    return node if isinstance(node, str) and node else None


def _upstream(headers: list[tuple[str, str]], jwt: ParsedJwt, rule: JWTRule,
              token: FoundToken) -> list[tuple[str, str]]:
    out = list(headers)
    if rule.output_payload_to_header:
        out.append((rule.output_payload_to_header.lower(), jwt.payload_segment))
    for c2h in rule.output_claim_to_headers:
        value = _claim_header_value(jwt.payload, c2h.claim)
        if value is not None:
            out.append((c2h.header.lower(), value))
    if not rule.forward_original_token and token.header is not None:
        out = [(k, v) for k, v in out if k.lower() != token.header]
    return out


def _sanitized(headers: Sequence[tuple[str, str]], rules: Sequence[JWTRule]) -> list[tuple[str, str]]:
    """Envoy drops client-supplied copies of the headers it will write (anti-spoofing)."""
    written = {r.output_payload_to_header.lower() for r in rules if r.output_payload_to_header}
    written |= {c.header.lower() for r in rules for c in r.output_claim_to_headers}
    return [(k, v) for k, v in headers if k.lower() not in written]


def is_cors_preflight(method: str | None, headers: Sequence[tuple[str, str]]) -> bool:
    names = {k.lower() for k, _ in headers}
    return method == "OPTIONS" and "origin" in names and "access-control-request-method" in names


def authenticate(rules: Sequence[JWTRule], *, method: str | None,
                 headers: Sequence[tuple[str, str]], target: str, now: float,
                 skew_s: int = 60, fetch: JwksFetcher | None = None) -> AuthnResult:
    """The jwt_authn filter for the merged `rules` of a workload (module docstring)."""
    hdrs = _sanitized(headers, rules)
    if not rules:
        return AuthnResult(True, headers=tuple(hdrs))
    if is_cors_preflight(method, hdrs):
        return AuthnResult(True, headers=tuple(hdrs), notes=("CORS preflight skips JWT",))
    first_error: str | None = None
    all_ok = True
    accepted: tuple[JWTRule, ParsedJwt, FoundToken] | None = None
    for rule in rules:
        tokens = find_tokens(rule, hdrs, target)
        try:
            verified = [(verify(t.token, rule, now=now, skew_s=skew_s, fetch=fetch), t)
                        for t in tokens]
        except JwtInvalid as exc:
            all_ok, first_error = False, first_error or str(exc)
            continue
        if verified and accepted is None:
            accepted = (rule, verified[0][0], verified[0][1])
    if accepted is None and not all_ok:
        return AuthnResult(False, error=first_error, headers=tuple(hdrs))
    if accepted is None:  # every rule found nothing in its locations
        return AuthnResult(True, headers=tuple(hdrs), notes=("no JWT presented",))
    rule, jwt, token = accepted
    return AuthnResult(True, normalize_payload(jwt.payload, rule),
                       headers=tuple(_upstream(hdrs, jwt, rule, token)),
                       notes=(f"JWT from issuer {jwt.payload.get('iss')!r} accepted",))


__all__ = [
    "AuthnResult",
    "FoundToken",
    "JwtInvalid",
    "ParsedJwt",
    "authenticate",
    "find_tokens",
    "is_cors_preflight",
    "normalize_payload",
    "parse_jwt",
    "verify",
    "verify_signature",
]
