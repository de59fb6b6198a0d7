"""The mesh through the node proxy's own HTTP layers, on loopback: real curl and grpcio →
source proxy (`OutboundListener`) → mTLS tunnel with the source workload's SPIFFE certificate →
`TunnelServer` → `MeshInbound` → `NodeProxy` (HTTP/1.1 and h2c layers, `mesh_authorize` hook)
→ the app. Nothing is faked; the kernel redirect is not involved (no root needed).
"""

from __future__ import annotations

import asyncio
import shutil
import time

import grpc
import pytest
from meshtestkit import NOW, Keys, ap, objects
from tunnelkit import NODE, SLEEP, TD, Clock, credentials

from netstrata.agent.mesh import MeshHandOffSource, MeshInbound
from netstrata.mesh.ca import CertificateAuthority
from netstrata.mesh.spiffe import SpiffeId
from netstrata.mesh.tunnel import (
    OutboundListener,
    OutboundRoute,
    PeerAuthenticationGate,
    TunnelClient,
    TunnelServer,
)
from netstrata.mesh.types import MeshConfig, Workload, WorkloadPort
from netstrata.proxy.policy_source import InMemoryPolicySource, LocalEndpoint
from netstrata.proxy.server import NodeProxy

ATTACKER = SpiffeId(TD, "foo", "attacker")
METHOD_OK = "/fraud.FraudDetectionService/CheckTransaction"
METHOD_DENIED = "/fraud.FraudDetectionService/UpdateRuleSet"
POLICY = f"""
action: ALLOW
rules:
- from: [{{source: {{principals: ["cluster.local/ns/foo/sa/sleep"]}}}}]
  to: [{{operation: {{paths: ["/public/*", "{METHOD_OK}"]}}}}]
- to: [{{operation: {{methods: ["POST"], paths: ["/api/v1/process"]}}}}]
  when: [{{key: "request.auth.claims[scope]", values: ["transactions"]}}]
"""


async def http_app() -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            path = head.split(b" ", 2)[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def grpc_app() -> tuple[grpc.aio.Server, int]:
    def answer(request: bytes, context: object) -> bytes:
        return b"ok:" + request

    handlers = {
        m.rsplit("/", 1)[1]: grpc.unary_unary_rpc_method_handler(answer)
        for m in (METHOD_OK, METHOD_DENIED)
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("fraud.FraudDetectionService", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def curl(port: int, path: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "-m",
        "5",
        "-w",
        "\n%{http_code}",
        *args,
        f"http://127.0.0.1:{port}{path}",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


async def grpc_call(port: int, method: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(method)
        try:
            await call(b"tx-1", timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl tool")
def test_principal_grpc_method_and_jwt_decided_in_the_node_proxy() -> None:
    keys = Keys()
    ca = CertificateAuthority.create(TD, now=time.time())

    async def run() -> dict[str, object]:
        app, app_port = await http_app()
        gapp, grpc_port = await grpc_app()
        workload = Workload(
            name="httpbin",
            namespace="foo",
            labels={"app": "httpbin"},
            ports=(WorkloadPort(app_port, "http"), WorkloadPort(grpc_port, "grpc")),
            ip="127.0.0.1",
        )
        policies = objects(ap("foo", "httpbin", POLICY) + "---\n" + keys.request_authentication())
        inner = InMemoryPolicySource()
        inner.upsert_endpoint(LocalEndpoint(7, 1000, ("127.0.0.1",), None, "foo", "httpbin"))
        source = MeshHandOffSource(inner)
        proxy = NodeProxy(source)
        inbound = MeshInbound(proxy, source, lambda: policies, MeshConfig(), clock=lambda: NOW)
        await inbound.start()
        clock = Clock()
        gate = PeerAuthenticationGate(
            lambda: policies, lambda ip: workload if ip == "127.0.0.1" else None
        )
        server = TunnelServer(
            credentials=credentials(ca, ca.bundle(), clock),
            identity=NODE,
            admission=gate,
            handler=inbound.handle,
        )
        via = await server.start("127.0.0.1")
        client = TunnelClient(credentials(ca, ca.bundle(), clock))
        outs = []
        ports = {}
        for who in (SLEEP, ATTACKER):
            for name, target in (("http", app_port), ("grpc", grpc_port)):
                out = OutboundListener(
                    client, lambda w, who=who, t=target: OutboundRoute(("127.0.0.1", t), who, via)
                )
                ports[who.service_account, name] = (await out.start("127.0.0.1"))[1]
                outs.append(out)
        good = f"Authorization: Bearer {keys.token(claims={'scope': 'transactions'})}"
        other = f"Authorization: Bearer {keys.token(claims={'scope': 'reports'})}"
        bad = f"Authorization: Bearer {keys.token(rogue=True)}"
        sleep_http, evil_http = ports["sleep", "http"], ports["attacker", "http"]
        got: dict[str, object] = {
            "principal allowed": await curl(sleep_http, "/public/a"),
            "principal denied": await curl(evil_http, "/public/a"),
            "jwt scope ok": await curl(evil_http, "/api/v1/process", "-X", "POST", "-H", good),
            "jwt other scope": await curl(evil_http, "/api/v1/process", "-X", "POST", "-H", other),
            "jwt invalid": await curl(evil_http, "/api/v1/process", "-X", "POST", "-H", bad),
            "jwt missing": await curl(evil_http, "/api/v1/process", "-X", "POST"),
            "grpc allowed": await grpc_call(ports["sleep", "grpc"], METHOD_OK),
            "grpc denied method": await grpc_call(ports["sleep", "grpc"], METHOD_DENIED),
            "grpc denied principal": await grpc_call(ports["attacker", "grpc"], METHOD_OK),
        }
        for out in outs:
            await out.close()
        await server.close()
        await proxy.aclose()
        app.close()
        await gapp.stop(None)
        return got

    got = asyncio.run(run())
    assert got["principal allowed"] == (200, "/public/a")
    assert got["principal denied"] == (403, "RBAC: access denied")
    assert got["jwt scope ok"] == (200, "/api/v1/process")
    assert got["jwt other scope"] == (403, "RBAC: access denied")
    assert got["jwt invalid"][0] == 401
    assert got["jwt missing"] == (403, "RBAC: access denied")
    assert got["grpc allowed"] == grpc.StatusCode.OK
    assert got["grpc denied method"] == grpc.StatusCode.PERMISSION_DENIED
    assert got["grpc denied principal"] == grpc.StatusCode.PERMISSION_DENIED
