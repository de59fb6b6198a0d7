"""`netstrata bench mesh`: what the mesh path costs per request and per connection.

All sides in one run, on loopback, client and server pinned to different CPUs:

Request/response (HTTP/1.1 keep-alive, one connection, one request at a time; requests/s,
p50/p99 latency). The upstream is the same small HTTP server in every lane:
  direct          client -> upstream (no proxy at all: the floor)
  plaintext       client -> the destination node proxy's plaintext listener
                  (`TunnelServer.start_plaintext`, PeerAuthentication PERMISSIVE) -> upstream
  mtls            client -> `TunnelClient.open` (TLS 1.3, EC P-256 SPIFFE certificates from the
                  mesh CA, CONNECT preamble) -> `TunnelServer` -> upstream
  mtls+authz      as mtls, and the destination proxy parses each request head and decides it
                  with `mesh.evaluate` (10 AuthorizationPolicies, the request allowed by the last
                  rule) before forwarding it
The authz lane's HTTP handling is the bench's own minimal one (request heads only, bodiless GETs,
one upstream connection per tunnel): the node proxy's HTTP layers are not wired to the mesh
evaluator on this path yet, so what is measured is the evaluator's cost inside the real tunnel.

Connection setup: new connections per second (connect, one request, close) and the time to a
usable connection, plaintext vs mTLS tunnel; the difference is the TLS 1.3 handshake with two
certificate chains checked (OpenSSL, plus the SPIFFE checks of `verify_workload_certificate` on
both sides) and the CONNECT round trip.

Evaluator: `mesh.evaluate` decisions per second, pure (no I/O), with 10 and 100 policies.
`evaluate` compiles the policies once per snapshot and workload (`mesh.compiled`) and finds that
snapshot again on every call, so this is the steady state of a proxy whose policies did not
change; the one compilation is outside the timed loop (the first call).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from netstrata.api._yaml import load_documents
from netstrata.api.istio import IstioObject, parse_istio_document
from netstrata.mesh import MeshRequest, Peer, evaluate
from netstrata.mesh.ca import CertificateAuthority
from netstrata.mesh.rotation import RotationPolicy, WorkloadCertificates
from netstrata.mesh.spiffe import SpiffeId
from netstrata.mesh.tls import MeshCredentials
from netstrata.mesh.tunnel import (
    InboundConnection,
    PeerAuthenticationGate,
    TunnelClient,
    TunnelServer,
    forward_to_target,
)
from netstrata.mesh.types import Workload, WorkloadPort

Progress = Callable[[str], None]

TD: Final = "cluster.local"
SOURCE: Final = SpiffeId(TD, "foo", "sleep")
NODE: Final = SpiffeId(TD, "istio-system", "node-proxy")
APP_PORT_NAME: Final = "http"
LANES: Final = ("direct", "plaintext", "mtls", "mtls+authz")
AUTHZ_POLICIES: Final = 10
REQUEST: Final = (
    b"GET /api/v1/items HTTP/1.1\r\nHost: httpbin:8000\r\nUser-Agent: nst-bench\r\n\r\n"
)
RESPONSE: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
HEAD_LIMIT: Final = 16384
"""Request heads bigger than this are refused by the bench handler (a DoS cap, as h11's)."""


@dataclass(frozen=True, slots=True)
class MeshBenchConfig:
    seconds: float = 2.0
    """Per request/response lane."""
    connections: int = 400
    """Connections opened per connection-setup lane."""
    decisions: int = 20_000
    """Evaluator calls per policy count, at most..."""
    eval_seconds: float = 2.0
    """...and for at most this long per policy count."""
    policy_counts: tuple[int, ...] = (10, 100)
    client_cpu: int | None = 0
    server_cpu: int | None = 1

    @classmethod
    def quick(cls) -> MeshBenchConfig:
        return cls(seconds=0.3, connections=40, decisions=1_000, eval_seconds=0.2)


@dataclass(frozen=True, slots=True)
class LaneResult:
    lane: str
    requests: int
    seconds: float
    p50_us: float
    p99_us: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class SetupResult:
    lane: str
    connections: int
    seconds: float
    ready_p50_us: float
    """Connect until usable: TCP connect (plaintext) or handshake + CONNECT + 200 (mTLS)."""
    ready_p99_us: float

    @property
    def rate(self) -> float:
        return self.connections / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class EvalResult:
    policies: int
    decisions: int
    seconds: float
    outcome: str

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class MeshReport:
    config: MeshBenchConfig
    lanes: tuple[LaneResult, ...]
    setup: tuple[SetupResult, ...]
    evaluator: tuple[EvalResult, ...]
    host: str = ""

    def lane(self, name: str) -> LaneResult | None:
        return next((r for r in self.lanes if r.lane == name), None)

    def ratio(self, lane: str, base: str = "plaintext") -> float | None:
        a, b = self.lane(lane), self.lane(base)
        return a.rate / b.rate if a is not None and b is not None and b.rate else None

    def setup_ratio(self) -> float | None:
        rates = {s.lane: s.rate for s in self.setup}
        return (
            rates["mtls"] / rates["plaintext"]
            if rates.keys() >= {"mtls", "plaintext"} and rates["plaintext"]
            else None
        )


# --------------------------------------------------------------------------- fixtures


def workload(port: int) -> Workload:
    return Workload(
        name="httpbin",
        namespace="foo",
        labels={"app": "httpbin"},
        ports=(WorkloadPort(port, APP_PORT_NAME),),
        ip="127.0.0.1",
    )


def authorization_policies(n: int) -> list[IstioObject]:
    """`n` ALLOW policies on httpbin; only the last one's rule admits the bench's request, so
    every decision walks all of them (principals, methods, paths, a `when` header)."""
    docs = []
    for i in range(n):
        path = "/api/v1/*" if i == n - 1 else f"/svc{i}/*"
        docs.append(f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-{i}, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["{TD}/ns/foo/sa/sleep", "{TD}/ns/bar/sa/s{i}"]}}}}]
    to: [{{operation: {{methods: ["GET", "HEAD"], paths: ["{path}"]}}}}]
    when: [{{key: "request.headers[user-agent]", notValues: ["blocked-{i}"]}}]
""")
    parsed = load_documents("---\n".join(docs), "bench-authz.yaml")
    return [parse_istio_document(d) for d in parsed if d.data is not None]


def request_of(head: bytes, port: int) -> MeshRequest:
    """The MeshRequest of one HTTP/1.1 request head (bench handler; no bodies)."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = tuple(
        (k.strip().lower(), v.strip())
        for k, _, v in (line.partition(":") for line in lines[1:] if line)
    )
    host = next((v for k, v in headers if k == "host"), None)
    return MeshRequest(
        workload=workload(port),
        destination_port=port,
        protocol="http",
        source_ip="127.0.0.1",
        method=method,
        host=host,
        path=target,
        headers=headers,
    )


def _credentials(ca: CertificateAuthority) -> MeshCredentials:
    store = WorkloadCertificates(ca, RotationPolicy(ttl_s=3600, rotate_fraction=0.5))
    return MeshCredentials(store, ca.bundle())


# --------------------------------------------------------------------------- server side


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _authz_handler(
    policies: list[IstioObject],
) -> Callable[[InboundConnection, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(
        conn: InboundConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_r, up_w = await asyncio.open_connection(*conn.target)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                decision = evaluate(
                    policies, request_of(head, conn.target[1]), conn.peer, now=time.time()
                )
                if not decision.allowed:
                    writer.write(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 19\r\n\r\nRBAC: access denied"
                    )
                    await writer.drain()
                    continue
                up_w.write(head)
                await up_w.drain()
                writer.write(await up_r.readuntil(b"\r\n\r\n") + await up_r.readexactly(2))
                await writer.drain()
        finally:
            up_w.close()
            writer.close()

    return handle


def _serve(ca: CertificateAuthority, cpu: int | None, ready: Any, stop: Any) -> None:
    """Server process: upstream app, plaintext listener, mTLS listener, mTLS+authz listener."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    policies = authorization_policies(AUTHZ_POLICIES)

    async def main() -> None:
        app = await asyncio.start_server(_upstream, "127.0.0.1", 0, limit=HEAD_LIMIT)
        app_addr = app.sockets[0].getsockname()[:2]
        wl = workload(app_addr[1])
        creds = _credentials(ca)
        gate = PeerAuthenticationGate(lambda: [], lambda ip: wl if ip == "127.0.0.1" else None)
        plain = TunnelServer(
            credentials=creds, identity=NODE, admission=gate, handler=forward_to_target
        )
        tls = TunnelServer(
            credentials=creds, identity=NODE, admission=gate, handler=forward_to_target
        )
        authz = TunnelServer(
            credentials=creds, identity=NODE, admission=gate, handler=_authz_handler(policies)
        )
        addrs = {
            "app": app_addr,
            "plaintext": await plain.start_plaintext(
                "127.0.0.1", 0, original_destination=lambda _w: app_addr
            ),
            "mtls": await tls.start("127.0.0.1"),
            "mtls+authz": await authz.start("127.0.0.1"),
        }
        ready.send(addrs)
        await asyncio.get_running_loop().run_in_executor(None, stop.recv)
        for s in (plain, tls, authz):
            await s.close()
        app.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- client side


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def _openers(addrs: dict[str, tuple[str, int]], creds: MeshCredentials) -> dict[str, Opener]:
    client = TunnelClient(creds)
    app = addrs["app"]

    def plain(addr: tuple[str, int]) -> Opener:
        return lambda: asyncio.open_connection(*addr)

    def tunnel(via: tuple[str, int]) -> Opener:
        return lambda: client.open(SOURCE, app, via)

    return {
        "direct": plain(app),
        "plaintext": plain(addrs["plaintext"]),
        "mtls": tunnel(addrs["mtls"]),
        "mtls+authz": tunnel(addrs["mtls+authz"]),
    }


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"bench request refused: {head[:40]!r}")
    await reader.readexactly(2)


async def _request_lane(lane: str, opener: Opener, seconds: float) -> LaneResult:
    reader, writer = await opener()
    try:
        for _ in range(50):  # warm-up
            await _exchange(reader, writer)
        lat: list[float] = []
        start = time.perf_counter()
        deadline = start + seconds
        while (t0 := time.perf_counter()) < deadline:
            await _exchange(reader, writer)
            lat.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        writer.close()
    return LaneResult(lane, len(lat), elapsed, _pct(lat, 0.5) * 1e6, _pct(lat, 0.99) * 1e6)


async def _setup_lane(lane: str, opener: Opener, n: int) -> SetupResult:
    ready: list[float] = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        reader, writer = await opener()
        ready.append(time.perf_counter() - t0)
        await _exchange(reader, writer)
        writer.close()
        await writer.wait_closed()
    elapsed = time.perf_counter() - start
    return SetupResult(lane, n, elapsed, _pct(ready, 0.5) * 1e6, _pct(ready, 0.99) * 1e6)


def run_evaluator(counts: tuple[int, ...], n: int, seconds: float) -> list[EvalResult]:
    out = []
    req = request_of(REQUEST, 8000)
    peer = Peer(mtls=True, principal=SOURCE.principal)
    for count in counts:
        policies = authorization_policies(count)
        now = time.time()
        decision = evaluate(policies, req, peer, now=now)
        done, start = 0, time.perf_counter()
        deadline = start + seconds
        while done < n and (done < 3 or time.perf_counter() < deadline):
            evaluate(policies, req, peer, now=now)
            done += 1
        out.append(
            EvalResult(
                count, done, time.perf_counter() - start, "ALLOW" if decision.allowed else "DENY"
            )
        )
    return out


def run(cfg: MeshBenchConfig, progress: Progress) -> MeshReport:
    now = time.time()
    ca = CertificateAuthority.create(TD, now=now)
    ctx = multiprocessing.get_context("fork")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    stop_r, stop_w = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_serve, args=(ca, cfg.server_cpu, ready_w, stop_r), daemon=True)
    server.start()
    try:
        if not ready_r.poll(30):
            raise RuntimeError("mesh bench server did not start")
        addrs = ready_r.recv()
        if cfg.client_cpu is not None:
            os.sched_setaffinity(0, {cfg.client_cpu})
        openers = _openers(addrs, _credentials(ca))

        async def measure() -> tuple[list[LaneResult], list[SetupResult]]:
            lanes = []
            for lane in LANES:
                lanes.append(await _request_lane(lane, openers[lane], cfg.seconds))
                progress(f"{lane}: {lanes[-1].rate:.0f} req/s, p99 {lanes[-1].p99_us:.0f} us")
            setups = []
            for lane in ("plaintext", "mtls"):
                setups.append(await _setup_lane(lane, openers[lane], cfg.connections))
                progress(f"{lane} connection setup: {setups[-1].rate:.0f} conn/s")
            return lanes, setups

        lanes, setups = asyncio.run(measure())
        progress(
            f"evaluator: up to {cfg.decisions} decisions or {cfg.eval_seconds:g} s per policy count"
        )
        evals = run_evaluator(cfg.policy_counts, cfg.decisions, cfg.eval_seconds)
    finally:
        stop_w.send(None)
        server.join(10)
        if server.is_alive():
            server.kill()
        if cfg.client_cpu is not None:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    host = (
        f"Linux {os.uname().release}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {load} (a shared machine: other processes compete for both CPUs)"
    )
    return MeshReport(cfg, tuple(lanes), tuple(setups), tuple(evals), host)


# --------------------------------------------------------------------------- rendering


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def summary_lines(report: MeshReport) -> list[tuple[str, str]]:
    rows = [
        (
            f"request/response, {r.lane}",
            f"{r.rate:8.0f} req/s  p50 {r.p50_us:7.0f} us  p99 {r.p99_us:7.0f} us  "
            f"{_x(report.ratio(r.lane))} of plaintext, {_x(report.ratio(r.lane, 'direct'))} of direct",
        )
        for r in report.lanes
    ]
    rows += [
        (
            f"connection setup, {s.lane}",
            f"{s.rate:8.0f} conn/s  ready p50 {s.ready_p50_us:7.0f} us  p99 {s.ready_p99_us:7.0f} us",
        )
        for s in report.setup
    ]
    setups = {s.lane: s for s in report.setup}
    if setups.keys() >= {"mtls", "plaintext"}:
        extra = setups["mtls"].ready_p50_us - setups["plaintext"].ready_p50_us
        rows.append(
            (
                "connection setup, mTLS vs plaintext",
                f"{_x(report.setup_ratio())} the connections/s; handshake + CONNECT adds "
                f"{extra:.0f} us (p50)",
            )
        )
    rows += [
        (
            f"evaluator, {e.policies} policies",
            f"{e.rate:8.0f} decisions/s  {1e6 / e.rate if e.rate else 0:6.1f} us/decision ({e.outcome})",
        )
        for e in report.evaluator
    ]
    return rows


def render_text(report: MeshReport) -> str:
    rows = summary_lines(report)
    width = max(len(k) for k, _ in rows)
    cfg = report.config
    head = (
        f"bench mesh: {report.host}; client on CPU {cfg.client_cpu}, server on CPU "
        f"{cfg.server_cpu}; HTTP/1.1 keep-alive, one request at a time, {cfg.seconds:g} s per lane"
    )
    return "\n".join([head, *(f"{k.ljust(width)}  {v}" for k, v in rows)])


def render_markdown(report: MeshReport) -> str:
    return "\n".join(
        [
            "| measure | result |",
            "|---|---|",
            *(f"| {k} | {' '.join(v.split())} |" for k, v in summary_lines(report)),
        ]
    )


def render_json(report: MeshReport) -> dict[str, Any]:
    return {
        "host": report.host,
        "lanes": [
            {
                "lane": r.lane,
                "requests": r.requests,
                "seconds": r.seconds,
                "rps": r.rate,
                "p50_us": r.p50_us,
                "p99_us": r.p99_us,
                "ratio_to_plaintext": report.ratio(r.lane),
                "ratio_to_direct": report.ratio(r.lane, "direct"),
            }
            for r in report.lanes
        ],
        "setup": [
            {
                "lane": s.lane,
                "connections": s.connections,
                "per_s": s.rate,
                "ready_p50_us": s.ready_p50_us,
                "ready_p99_us": s.ready_p99_us,
            }
            for s in report.setup
        ],
        "setup_ratio_mtls_to_plaintext": report.setup_ratio(),
        "evaluator": [
            {
                "policies": e.policies,
                "decisions": e.decisions,
                "per_s": e.rate,
                "outcome": e.outcome,
            }
            for e in report.evaluator
        ],
    }


def as_json(report: MeshReport) -> str:
    return json.dumps(render_json(report), indent=2)


__all__ = [
    "LANES",
    "MeshBenchConfig",
    "MeshReport",
    "as_json",
    "authorization_policies",
    "render_json",
    "render_markdown",
    "render_text",
    "request_of",
    "run",
    "run_evaluator",
    "summary_lines",
]
