"""End to end on loopback: a real HTTP client → source proxy → mTLS tunnel → destination
proxy → HTTP app, with `mesh.evaluate` deciding on the principal the tunnel proved and on a
JWT verified against a JWKS served over HTTP.

The HTTP step at the destination is a minimal head reader written here (one request per
connection), standing in for the node proxy's HTTP layer, which wires `mesh.evaluate` the same
way; the TLS, tunnel, CA, PeerAuthentication and evaluator are the real ones.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import pytest
from meshtestkit import ISSUER, NOW, Keys, ap, objects
from tunnelkit import SLEEP, TD, Clock, credentials, destination

from netstrata.mesh import MeshRequest, evaluate
from netstrata.mesh.ca import CertificateAuthority
from netstrata.mesh.spiffe import SpiffeId
from netstrata.mesh.tunnel import (
    InboundConnection,
    OutboundListener,
    OutboundRoute,
    TunnelClient,
    pipe,
)

ATTACKER = SpiffeId(TD, "foo", "attacker")


async def http_app() -> tuple[asyncio.Server, tuple[str, int]]:
    """The destination workload: answers every request with 200 and the path it got."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1]
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(path), path)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2]


async def jwks_server(jwks: str) -> tuple[asyncio.Server, str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = jwks.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            b"%d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    return server, f"http://{host}:{port}/jwks.json"


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback URL)
        return resp.read().decode()


def authorizing_handler(policies: list, jwks: dict[str, str]):
    """Destination L7 step: read the request head, ask mesh.evaluate, reply or forward."""

    async def handle(
        conn: InboundConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = tuple(
            (k.strip().lower(), v.strip())
            for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
        )
        request = MeshRequest(
            workload=conn.workload,
            destination_port=conn.target[1],
            source_ip=conn.source_address[0],
            method=method,
            host=dict(headers).get("host"),
            path=target,
            headers=headers,
        )
        for uri in {p for p in jwks if not jwks[p]}:  # fetch remote JWKS off the loop
            jwks[uri] = await asyncio.to_thread(_fetch, uri)
        decision = evaluate(policies, request, conn.peer, now=NOW, jwks_fetcher=jwks.get)
        if not decision.allowed:
            body = (decision.body or "").encode()
            writer.write(
                b"HTTP/1.1 %d Denied\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (decision.status or 403, len(body), body)
            )
            await writer.drain()
            writer.close()
            return
        upstream = await asyncio.open_connection(*conn.target)
        upstream[1].write(head)
        await pipe((reader, writer), upstream)

    return handle


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback URL)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(TD, now=time.time())


POLICY = """
action: ALLOW
rules:
- from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
  to: [{operation: {paths: ["/public/*"]}}]
- from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
  to: [{operation: {paths: ["/private/*"]}}]
"""


def test_authorization_on_the_mtls_principal_and_jwt(ca) -> None:
    keys = Keys()

    async def run() -> list[tuple[int, str]]:
        app, app_addr = await http_app()
        jwks_srv, jwks_url = await jwks_server(keys.jwks)
        req_authn = (
            f"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
            f"metadata: {{name: jwt, namespace: foo}}\nspec:\n  jwtRules:\n"
            f"  - issuer: {ISSUER}\n    jwksUri: {jwks_url}\n---\n"
        )
        policies = objects(ap("foo", "httpbin", POLICY) + req_authn)
        clock = Clock()
        handler = authorizing_handler(policies, {jwks_url: ""})
        async with destination(
            credentials(ca, ca.bundle(), clock), [app_addr[1]], handler=handler
        ) as dest:
            tunnel_client = TunnelClient(credentials(ca, ca.bundle(), clock))
            outs = {}
            for who in (SLEEP, ATTACKER):
                outs[who] = OutboundListener(
                    tunnel_client, lambda w, who=who: OutboundRoute(app_addr, who, dest.tunnel)
                )
            sleep_at = await outs[SLEEP].start("127.0.0.1")
            attacker_at = await outs[ATTACKER].start("127.0.0.1")
            base = f"http://{sleep_at[0]}:{sleep_at[1]}"
            evil = f"http://{attacker_at[0]}:{attacker_at[1]}"
            good = {"Authorization": f"Bearer {keys.token()}"}
            bad = {"Authorization": f"Bearer {keys.token(rogue=True)}"}
            results = []
            for url, hdrs in (
                (base + "/public/a", None),
                (evil + "/public/a", None),
                (evil + "/private/x", good),
                (evil + "/private/x", bad),
                (evil + "/private/x", None),
            ):
                results.append(await asyncio.to_thread(_get, url, hdrs))
            for out in outs.values():
                await out.close()
        app.close()
        jwks_srv.close()
        return results

    allowed, denied, jwt_ok, jwt_bad, jwt_missing = asyncio.run(run())
    assert allowed == (200, "/public/a")
    assert denied == (403, "RBAC: access denied")
    assert jwt_ok == (200, "/private/x")
    assert jwt_bad[0] == 401 and jwt_bad[1] == "Jwt verification fails"
    assert jwt_missing == (403, "RBAC: access denied")  # no token: no requestPrincipal
