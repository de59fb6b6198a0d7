"""Builders shared by the mesh unit tests: manifests from YAML, requests, signed tokens."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec

from netstrata.api._yaml import load_documents
from netstrata.api.istio import parse_istio_document
from netstrata.mesh import MeshConfig, MeshRequest, Peer, Workload, WorkloadPort, evaluate

NOW = 1_800_000_000.0
ISSUER = "https://issuer.example"


def objects(text: str) -> list:
    """Parse one or more `---`-separated Istio manifests."""
    docs = load_documents(textwrap.dedent(text), "test.yaml")
    return [parse_istio_document(d) for d in docs if d.data is not None]


def ap(namespace: str, name: str, spec: str = "{}", *, annotations: str = "") -> str:
    spec_block = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    meta = f"  annotations: {annotations}\n" if annotations else ""
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n"
            f"  name: {name}\n  namespace: {namespace}\n{meta}spec:\n{spec_block}\n---\n")


def workload(namespace: str = "foo", name: str = "httpbin", ports=((8000, "http"),),
             labels: dict[str, str] | None = None, **kw: Any) -> Workload:
    return Workload(name=name, namespace=namespace, labels=labels or {"app": name},
                    ports=tuple(WorkloadPort(p, proto) for p, proto in ports), **kw)


def http(path: str = "/", *, method: str = "GET", host: str = "httpbin:8000", port: int = 8000,
         headers=(), wl: Workload | None = None, source_ip: str = "10.0.0.9",
         protocol: str = "http", **kw: Any) -> MeshRequest:
    return MeshRequest(workload=wl or workload(), destination_port=port, protocol=protocol,
                       source_ip=source_ip, method=method, host=host, path=path,
                       headers=tuple(headers), **kw)


def tcp(port: int = 9000, *, wl: Workload | None = None, source_ip: str = "10.0.0.9",
        **kw: Any) -> MeshRequest:
    wl = wl or workload(name="echo", ports=((9000, "tcp"), (9001, "tcp")))
    return MeshRequest(workload=wl, destination_port=port, protocol="tcp", source_ip=source_ip,
                       **kw)


def mtls(principal: str = "cluster.local/ns/foo/sa/sleep") -> Peer:
    return Peer(mtls=True, principal=principal)


PLAINTEXT = Peer(mtls=False)


def decide(policies: str | list, request: MeshRequest, peer: Peer | None = None,
           mesh: MeshConfig | None = None, **kw: Any):
    objs = objects(policies) if isinstance(policies, str) else policies
    return evaluate(objs, request, peer or mtls(), mesh, now=kw.pop("now", NOW), **kw)


class Keys:
    """A fresh ES256 key pair with its JWKS, and a second key that is not in the JWKS."""

    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.rogue = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        jwk.update({"kid": kid, "alg": "ES256", "use": "sig"})
        self.jwks = json.dumps({"keys": [jwk]})

    def token(self, claims: dict[str, Any] | None = None, *, rogue: bool = False,
              kid: str | None = None, **defaults: Any) -> str:
        body = {"iss": ISSUER, "sub": "alice", "iat": int(NOW) - 60, "exp": int(NOW) + 3600}
        body.update(defaults)
        body.update(claims or {})
        body = {k: v for k, v in body.items() if v is not None}  # None removes a claim
        return pyjwt.encode(body, self.rogue if rogue else self.private, algorithm="ES256",
                            headers={"kid": kid or self.kid})

    def request_authentication(self, namespace: str = "foo", extra: str = "") -> str:
        return (f"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n"
                f"  name: jwt\n  namespace: {namespace}\nspec:\n  jwtRules:\n"
                f"  - issuer: {ISSUER}\n    jwks: '{self.jwks}'\n"
                + textwrap.indent(textwrap.dedent(extra).strip(), "    ")
                + ("\n" if extra else "") + "---\n")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
