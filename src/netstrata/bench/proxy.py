"""`netstrata bench proxy`: what the node L7 proxy costs per request (plans W5 and W6).

Everything runs on loopback in one run, lanes interleaved round by round (rotated each round)
so drift of a shared machine hits every lane alike:

  direct     the client straight to the upstream
  nginx-10   nginx (one worker) with 10 regex `location`s of method + path + header allow
  nginx-100  rules, the request matching the last one (nginx walks regex locations in order)
  l4         the netstrata proxy forwarding under an allow-all HTTP rule (`http: [{}]`):
             parsed and forwarded, no match rule evaluated
  l7-10      the netstrata proxy enforcing the equivalent 10 / 100 HTTP rules, the request
  l7-100     matching the last one

The proxy's policy is not built by hand: a CiliumNetworkPolicy with `rules.http` (and one
with `rules.dns` + `toFQDNs`) goes through `translate_cilium` and the real `Resolver`, and the
proxy enforces the `ResolvedPolicy` that comes out, as the agent feeds it (one truth).

Loads, HTTP/1.1 keep-alive with a small body: `wrk` at 1 connection (latency) and at 16
connections (saturation, CPU per request), and a fixed 1,000 requests/s. wrk2 is not packaged
in Debian, so the fixed rate is `h2load --h1 -c1 --rps 1000` (nghttp2-client): h2load sends on
a timer and logs every request's latency (`--log-file`), from which p50/p99 are taken; with
one HTTP/1.1 connection a request waits for the previous answer, which at 1,000/s and
sub-millisecond latencies leaves it open-loop in practice (a lane slower than 1 ms per request
would show as a rate under 1,000, not as hidden latency). gRPC: h2load with gRPC-framed POSTs
(h2c, prior knowledge) direct and through the proxy with 10 gRPC method rules. DNS: a small
asyncio UDP client with 16 queries in flight, direct to a stub authority and through the DNS
proxy with `rules.dns` and `toFQDNs` active (every answer is learned; the learner stands in
for the agent's ipcache write, no kernel map is written here).

CPU per request is the middle process's own CPU time (the sum of its threads'
/proc/<pid>/task/*/schedstat run time, nanoseconds) over the requests it served, not the
machine's; rps at one saturated core is 1e6 / that. The middle (nginx's worker, the proxy) is
pinned to one CPU and the clients and upstreams to another (`taskset`), so on two cores the
clients never take the middle's CPU. The upstream is nginx too (one worker, `return 200`), as
the cheapest real HTTP/1.1 and h2c server at hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from netstrata.api import types as api
from netstrata.errors import NetstrataError
from netstrata.labels import Label, LabelSet, Selector
from netstrata.policy.peers import NO_FACTS
from netstrata.policy.resolve import EndpointInfo, PolicyConfig, Resolver
from netstrata.policy.rules import Catalog, translate_cilium
from netstrata.policy.selector_cache import SelectorCache
from netstrata.policy.types import ResolvedPolicy
from netstrata.proxy.policy_source import InMemoryPolicySource, LocalEndpoint

Progress = Callable[[str], None]

HTTP_LANES: Final = ("direct", "nginx-10", "nginx-100", "l4", "l7-10", "l7-100")
"""With the default `rules` (10, 100); `nginx-N` and `l7-N` follow `ProxyBenchConfig.rules`."""
LOADS: Final = ("c1", "c16", "r1000")
"""wrk at 1 and 16 connections; h2load --h1 at a fixed 1,000 requests/s."""
GRPC_LANES: Final = ("grpc-direct", "grpc-l7")
DNS_LANES: Final = ("dns-direct", "dns-proxy")

CLIENT_IP: Final = "127.0.0.1"
UPSTREAM_IP: Final = "127.0.0.2"
DNS_CLIENT_IP: Final = "127.0.0.3"
DNS_SERVER_IP: Final = "127.0.0.4"
NAMESPACE: Final = "bench"
ID_CLIENT, ID_SERVER, ID_DNS = 1001, 1002, 1003
EP_SERVER, EP_CLIENT = 2, 1
DNS_PATTERN: Final = "*.bench.test"
GRPC_SERVICE: Final = "bench.Echo"
GRPC_FRAME: Final = b"\x00\x00\x00\x00\x05" + b"hello"
"""A gRPC length-prefixed message (uncompressed, 5 bytes)."""

TARGET_CPU_X_NGINX: Final = 2.0
TARGET_CPU_US: Final = 40.0
TARGET_RPS_CORE: Final = 25_000.0
TARGET_ADDED_P99_US: Final = 100.0
ENVOY_L7_LOSS: Final = 0.86
"""The anchor: Envoy with L7 policy keeps 11–14% of the L4-only rate (a loss of 86–89%)."""


class BenchError(NetstrataError):
    """The bench cannot run here (a tool missing) or a lane failed."""


@dataclass(frozen=True, slots=True)
class ProxyBenchConfig:
    duration: float = 3.0
    """Seconds per measurement."""
    rounds: int = 3
    """Measurements per (lane, load); medians are reported."""
    rules: tuple[int, int] = (10, 100)
    client_cpu: int = 0
    middle_cpu: int = 1
    dns_inflight: int = 16
    grpc_streams: int = 16

    @classmethod
    def quick(cls) -> ProxyBenchConfig:
        """About half a minute: one 0.5-second round per point."""
        return cls(duration=0.5, rounds=1)


@dataclass(frozen=True, slots=True)
class Measurement:
    """Median over rounds of one (lane, load)."""

    lane: str
    load: str
    rps: float
    p50_us: float
    p99_us: float
    cpu_us: float | None
    """CPU of the middle process per request (None for direct lanes: there is none)."""
    rss_kib: int | None
    requests: int
    errors: int
    """Non-2xx answers, socket errors, timeouts (every lane answers 2xx when all is well)."""

    @property
    def rps_per_core(self) -> float | None:
        return 1e6 / self.cpu_us if self.cpu_us else None


@dataclass(frozen=True, slots=True)
class TargetCheck:
    what: str
    measured: float
    target: str
    met: bool


@dataclass(frozen=True, slots=True)
class ProxyReport:
    config: ProxyBenchConfig
    measurements: tuple[Measurement, ...]
    host: str = ""
    commands: tuple[str, ...] = ()
    """One example command line per load generator, as run."""
    notes: tuple[str, ...] = ()

    def get(self, lane: str, load: str) -> Measurement | None:
        for m in self.measurements:
            if (m.lane, m.load) == (lane, load):
                return m
        return None

    def added_us(self, lane: str, load: str, base: str = "direct") -> tuple[float, float] | None:
        """(added p50, added p99) over `base` in the same load."""
        m, b = self.get(lane, load), self.get(base, load)
        if m is None or b is None:
            return None
        return m.p50_us - b.p50_us, m.p99_us - b.p99_us

    def rps_ratio(self, lane: str, load: str, base: str = "direct") -> float | None:
        m, b = self.get(lane, load), self.get(base, load)
        return m.rps / b.rps if m and b and b.rps else None

    def cpu_ratio(self, lane: str, base: str, load: str = "c16") -> float | None:
        m, b = self.get(lane, load), self.get(base, load)
        return m.cpu_us / b.cpu_us if m and b and m.cpu_us and b.cpu_us else None

    def target_checks(self) -> list[TargetCheck]:
        out: list[TargetCheck] = []
        top = max(self.config.rules)
        l7, ng = f"l7-{top}", f"nginx-{top}"
        m = self.get(l7, "c16")
        if m is not None and m.cpu_us:
            x = self.cpu_ratio(l7, ng)
            if x is not None:
                out.append(
                    TargetCheck(
                        f"{l7} CPU per request / {ng}'s",
                        x,
                        f"<= {TARGET_CPU_X_NGINX:g}x",
                        x <= TARGET_CPU_X_NGINX,
                    )
                )
            out.append(
                TargetCheck(
                    f"{l7} CPU us per request",
                    m.cpu_us,
                    f"<= {TARGET_CPU_US:g}",
                    m.cpu_us <= TARGET_CPU_US,
                )
            )
            per_core = m.rps_per_core or 0.0
            out.append(
                TargetCheck(
                    f"{l7} requests/s per core",
                    per_core,
                    f">= {TARGET_RPS_CORE:,.0f}",
                    per_core >= TARGET_RPS_CORE,
                )
            )
        added = self.added_us(l7, "r1000")
        if added is not None:
            out.append(
                TargetCheck(
                    f"{l7} added p99 at 1,000 rps (us)",
                    added[1],
                    f"<= {TARGET_ADDED_P99_US:g}",
                    added[1] <= TARGET_ADDED_P99_US,
                )
            )
        keep = self.rps_ratio(l7, "c16", "l4")
        if keep is not None:
            out.append(
                TargetCheck(
                    f"{l7} rps / l4 rps (16 connections)",
                    keep,
                    f"> {1 - ENVOY_L7_LOSS:.2f} (Envoy)",
                    keep > 1 - ENVOY_L7_LOSS,
                )
            )
        keep = self.rps_ratio(l7, "c16", "direct")
        if keep is not None:
            out.append(
                TargetCheck(
                    f"{l7} rps / direct rps (16 connections)",
                    keep,
                    f"> {1 - ENVOY_L7_LOSS:.2f} (Envoy)",
                    keep > 1 - ENVOY_L7_LOSS,
                )
            )
        return out


# --------------------------------------------------------------------------- policy


def _labels(app: str) -> LabelSet:
    return LabelSet(
        [
            Label("k8s", "app", app),
            Label("k8s", "io.kubernetes.pod.namespace", NAMESPACE),
            Label("k8s", "io.cilium.k8s.policy.cluster", "default"),
        ]
    )


def http_rules(n: int) -> tuple[api.HTTPRule, ...]:
    """N method + path-regex + header rules; `request_path(n)` matches only the last one."""
    return tuple(
        api.HTTPRule(method="GET", path=f"/api/v{i}/items/[0-9]+", headers=("X-Bench: 1",))
        for i in range(n)
    )


def request_path(n: int) -> str:
    return f"/api/v{n - 1}/items/42"


def grpc_rules(n: int) -> tuple[api.HTTPRule, ...]:
    return tuple(api.HTTPRule(method="POST", path=f"/{GRPC_SERVICE}/Call{i}") for i in range(n))


def bench_policies(
    ports: dict[str, int], dns_port: int, rules: tuple[int, ...]
) -> list[api.CiliumPolicy]:
    """The CNPs the bench enforces: ingress `rules.http` on the server per lane port (and an
    allow-all `http: [{}]` for the l4 lane), egress `rules.dns` + `toFQDNs` on the client."""
    client = Selector.from_k8s({"app": "bench-client"})

    def port(p: int, l7: api.L7Rules, proto: str = "TCP") -> api.PortRule:
        return api.PortRule((api.PortProtocol(str(p), 0, proto),), l7)

    to_ports = [port(ports[f"l7-{n}"], api.L7Rules(http=http_rules(n))) for n in rules]
    to_ports.append(port(ports["l4"], api.L7Rules(http=(api.HTTPRule(),))))
    to_ports.append(port(ports["grpc"], api.L7Rules(http=grpc_rules(10))))
    server = api.Rule(
        api.RuleOrigin("CiliumNetworkPolicy", "bench-l7", NAMESPACE),
        Selector.from_k8s({"app": "bench-server"}),
        ingress=(api.PeerRule(endpoints=(client,), to_ports=tuple(to_ports)),),
    )
    dns = api.L7Rules(dns=(api.DNSRule(match_pattern=DNS_PATTERN),))
    egress = (
        api.PeerRule(
            endpoints=(Selector.from_k8s({"app": "bench-dns"}),),
            to_ports=(port(dns_port, dns, "UDP"),),
        ),
        api.PeerRule(fqdns=(api.FQDNSelector(match_pattern=DNS_PATTERN),)),
    )
    dns_rule = api.Rule(
        api.RuleOrigin("CiliumNetworkPolicy", "bench-fqdn", NAMESPACE), client, egress=egress
    )
    return [
        api.CiliumPolicy("CiliumNetworkPolicy", "bench-l7", NAMESPACE, (server,)),
        api.CiliumPolicy("CiliumNetworkPolicy", "bench-fqdn", NAMESPACE, (dns_rule,)),
    ]


def resolve_bench_policies(
    ports: dict[str, int], dns_port: int, rules: tuple[int, ...]
) -> tuple[ResolvedPolicy, ResolvedPolicy]:
    """(server's, client's) policy, through `translate_cilium` and the `Resolver`."""
    cache = SelectorCache(NO_FACTS)
    ids = {
        ID_CLIENT: _labels("bench-client"),
        ID_SERVER: _labels("bench-server"),
        ID_DNS: _labels("bench-dns"),
    }
    for identity, labels in ids.items():
        cache.upsert_identity(identity, labels)
    internal = [
        r
        for p in bench_policies(ports, dns_port, rules)
        for r in translate_cilium(p, "default", Catalog())
    ]
    resolver = Resolver(internal, cache, PolicyConfig())
    server = resolver.resolve(EndpointInfo(EP_SERVER, ID_SERVER, ids[ID_SERVER]))
    client = resolver.resolve(EndpointInfo(EP_CLIENT, ID_CLIENT, ids[ID_CLIENT]))
    return server, client


def bench_source(args: dict[str, Any]) -> tuple[InMemoryPolicySource, dict[str, tuple[str, int]]]:
    """The proxy process's policy source and each listener's pinned original destination."""
    ports: dict[str, int] = args["ports"]
    dns_ip, dns_port = args["dns"]
    server, client = resolve_bench_policies(ports, dns_port, tuple(args["rules"]))
    for what, policy, port in (("server", server, ports["l4"]), ("client", client, dns_port)):
        if not policy.l7:
            raise BenchError(f"the resolver gave the bench {what} no L7 rule set (port {port})")
    source = InMemoryPolicySource()
    source.upsert_endpoint(
        LocalEndpoint(EP_SERVER, ID_SERVER, (UPSTREAM_IP,), server, NAMESPACE, "bench-server")
    )
    source.upsert_endpoint(
        LocalEndpoint(EP_CLIENT, ID_CLIENT, (DNS_CLIENT_IP,), client, NAMESPACE, "bench-client")
    )
    source.set_identities([(CLIENT_IP, ID_CLIENT), (dns_ip, ID_DNS)])
    pinned = {name: (UPSTREAM_IP, p) for name, p in ports.items()}
    pinned["dns"] = (dns_ip, dns_port)
    return source, pinned


# ---------------------------------------------------------------------------- processes


def missing_requirements() -> str | None:
    """Why the bench cannot run here, or None."""
    for tool, pkg in (
        ("wrk", "wrk"),
        ("nginx", "nginx-light"),
        ("h2load", "nghttp2-client"),
        ("taskset", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install {pkg})"
    if (os.cpu_count() or 1) < 2:
        return "needs 2 CPUs: the middle process and the clients are pinned apart"
    return None


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def cpu_ns(pids: list[int]) -> int:
    """Run time of every thread of `pids` (schedstat, ns)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(v) for v in f.read().split()]
    except OSError:
        return []


@dataclass
class _Proc:
    popen: subprocess.Popen[str]
    addresses: dict[str, Any] = field(default_factory=dict)

    def pids(self) -> list[int]:
        """The process and, for nginx, its workers (the master only waits)."""
        kids = _children(self.popen.pid)
        return kids or [self.popen.pid]


def _python_side(role: str, args: dict[str, Any], cpu: int) -> _Proc:
    cmd = [
        "taskset",
        "-c",
        str(cpu),
        sys.executable,
        "-m",
        "netstrata.bench._proxy_side",
        role,
        json.dumps(args),
    ]
    popen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert popen.stdout is not None
    line = popen.stdout.readline()
    if not line.startswith("ready "):
        popen.kill()
        raise BenchError(f"bench {role} did not start (exit {popen.wait()})")
    return _Proc(popen, json.loads(line[6:]))


def _stop(proc: _Proc) -> None:
    if proc.popen.stdin is not None:
        proc.popen.stdin.close()
    try:
        proc.popen.wait(5)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()


def nginx_conf(prefix: Path, servers: str) -> str:
    return f"""worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 10000000;
{servers}
}}
"""


def upstream_servers(ports: dict[str, int]) -> str:
    """The upstream: `return 200` on every lane's port, h2c with gRPC trailers on grpc's."""
    out = []
    for name, p in ports.items():
        if name == "grpc":
            out.append(f"""  server {{ listen {UPSTREAM_IP}:{p} http2;
    location / {{ default_type application/grpc; add_trailer grpc-status 0 always;
      return 200 ""; }} }}""")
        else:
            out.append(f"""  server {{ listen {UPSTREAM_IP}:{p};
    location / {{ default_type text/plain; return 200 "ok\\n"; }} }}""")
    return "\n".join(out)


def front_servers(listen: dict[int, int], upstream_port: int) -> str:
    """nginx as the L7 filter: per N, N regex locations equivalent to `http_rules(N)`."""
    out = [f"""  upstream bench_up {{ server {UPSTREAM_IP}:{upstream_port}; keepalive 64; }}"""]
    for n, p in listen.items():
        locs = "\n".join(
            f"""    location ~ ^/api/v{i}/items/[0-9]+$ {{
      if ($http_x_bench != "1") {{ return 403 "Access denied\\r\\n"; }}
      limit_except GET {{ deny all; }}
      proxy_pass http://bench_up; }}"""
            for i in range(n)
        )
        out.append(f"""  server {{ listen {CLIENT_IP}:{p};
    proxy_http_version 1.1; proxy_set_header Connection "";
{locs}
    location / {{ return 403 "Access denied\\r\\n"; }} }}""")
    return "\n".join(out)


def _nginx(workdir: Path, name: str, servers: str, cpu: int) -> _Proc:
    prefix = workdir / name
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, servers), encoding="ascii")
    nginx = shutil.which("nginx") or "nginx"
    user = [] if os.geteuid() != 0 else ["-g", "user root;"]
    popen = subprocess.Popen(
        ["taskset", "-c", str(cpu), nginx, "-p", str(prefix), "-c", str(conf), *user],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 5
    while not _children(popen.pid):
        if popen.poll() is not None or time.monotonic() > deadline:
            err = popen.stderr.read() if popen.stderr else ""
            popen.kill()
            raise BenchError(f"nginx ({name}) did not start: {err.strip()}")
        time.sleep(0.02)
    return _Proc(popen)


def _stop_nginx(proc: _Proc) -> None:
    proc.popen.send_signal(signal.SIGQUIT)
    try:
        proc.popen.wait(5)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()


def _wait_listening(ip: str, port: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection((ip, port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"nothing listens on {ip}:{port}") from None
            time.sleep(0.02)


# ---------------------------------------------------------------------------- load


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    errors: int


_UNITS: Final = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_wrk(text: str) -> LoadResult:
    """The numbers of `wrk --latency` output."""
    pct = {
        m[0]: float(m[1]) * _UNITS[m[2]]
        for m in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if done is None or "50" not in pct or "99" not in pct:
        raise BenchError(f"cannot read wrk's output:\n{text}")
    seconds = float(done[2]) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done[3]]
    errors = sum(int(v) for v in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(v) for v in sock.groups())
    return LoadResult(int(done[1]), seconds, pct["50"], pct["99"], errors)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_h2load(text: str, log: str) -> LoadResult:
    """h2load's summary and its `--log-file` (start us, status, duration us per request)."""
    done = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    took = re.search(r"finished in ([\d.]+)(us|ms|s)", text)
    if done is None or took is None:
        raise BenchError(f"cannot read h2load's output:\n{text}")
    lat, bad = [], 0
    for line in log.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            lat.append(float(parts[2]))
            bad += not parts[1].startswith("2")
    seconds = float(took[1]) * _UNITS[took[2]] / 1e6
    errors = int(done[3]) + int(done[4]) + int(done[5]) + bad
    return LoadResult(int(done[1]), seconds, percentile(lat, 0.5), percentile(lat, 0.99), errors)


def _run_tool(cmd: list[str], timeout: float) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def wrk_cmd(cpu: int, conns: int, seconds: float, url: str) -> list[str]:
    return [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        "X-Bench: 1",
        url,
    ]


def h2load_h1_cmd(cpu: int, rate: int, seconds: float, url: str, log: Path) -> list[str]:
    n = max(10, int(rate * seconds))
    return [
        "taskset",
        "-c",
        str(cpu),
        "h2load",
        "--h1",
        "-c1",
        "-t1",
        f"--rps={rate}",
        f"-n{n}",
        "-H",
        "X-Bench: 1",
        f"--log-file={log}",
        url,
    ]


def h2load_grpc_cmd(
    cpu: int, streams: int, seconds: float, url: str, body: Path, log: Path
) -> list[str]:
    return [
        "taskset",
        "-c",
        str(cpu),
        "h2load",
        "-c1",
        "-t1",
        f"-m{streams}",
        f"-D{max(1, round(seconds))}",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"--log-file={log}",
        url,
    ]


def dns_query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"


def dns_load(server: tuple[str, int], source_ip: str, seconds: float, inflight: int) -> LoadResult:
    """Closed-loop UDP queries, `inflight` outstanding, for `seconds` (blocking sockets, no
    asyncio, so the client costs far less per query than the proxy it measures)."""
    import select

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source_ip, 0))
    sock.connect(server)
    sock.setblocking(False)
    sent: dict[int, float] = {}
    lat: list[float] = []
    qid, errors = 0, 0
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            while len(sent) < inflight:
                qid = (qid + 1) & 0xFFFF
                sent[qid] = time.perf_counter()
                sock.send(dns_query(qid, f"q{qid}.bench.test"))
            if not select.select([sock], [], [], 1.0)[0]:
                errors += len(sent)  # timed out: forget them, send new ones
                sent.clear()
                continue
            while True:
                try:
                    data = sock.recv(512)
                except BlockingIOError:
                    break
                t0 = sent.pop(struct.unpack_from("!H", data)[0], None)
                if t0 is not None:
                    lat.append((time.perf_counter() - t0) * 1e6)
                    errors += data[3] & 0x0F != 0  # rcode
    finally:
        sock.close()
    return LoadResult(len(lat), seconds, percentile(lat, 0.5), percentile(lat, 0.99), errors)


# ----------------------------------------------------------------------------- the run


@dataclass
class _Bench:
    config: ProxyBenchConfig
    progress: Progress
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    front_ports: dict[int, int] = field(default_factory=dict)
    upstream: _Proc | None = None
    front: _Proc | None = None
    proxy: _Proc | None = None
    dns_stub: _Proc | None = None
    results: dict[tuple[str, str], list[Measurement]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    def url(self, lane: str, n_default: int) -> tuple[str, _Proc | None]:
        """(URL, the middle process) of an HTTP lane."""
        n = _rule_count(lane) or n_default
        path = request_path(n)
        if lane == "direct":
            return f"http://{UPSTREAM_IP}:{self.ports['l4']}{path}", None
        if lane.startswith("nginx-"):
            return f"http://{CLIENT_IP}:{self.front_ports[n]}{path}", self.front
        assert self.proxy is not None
        host, port = self.proxy.addresses["l4" if lane == "l4" else f"l7-{n}"]
        return f"http://{host}:{port}{path}", self.proxy

    def measure(self, lane: str, load: str) -> None:
        cfg = self.config
        middle: _Proc | None
        if lane in GRPC_LANES:
            middle = self.proxy if lane == "grpc-l7" else None
            if middle is None:
                base = f"http://{UPSTREAM_IP}:{self.ports['grpc']}"
            else:
                host, port = middle.addresses["grpc"]
                base = f"http://{host}:{port}"
            body, log = self.workdir / "grpc.bin", self.workdir / "h2load.log"
            cmd = h2load_grpc_cmd(
                cfg.client_cpu,
                cfg.grpc_streams,
                cfg.duration,
                f"{base}/{GRPC_SERVICE}/Call9",
                body,
                log,
            )
        elif lane in DNS_LANES:
            middle = self.proxy if lane == "dns-proxy" else None
            assert self.dns_stub is not None
            target = self.dns_stub.addresses["dns"] if middle is None else middle.addresses["dns"]
            cmd = []
        else:
            url, middle = self.url(lane, max(cfg.rules))
            log = self.workdir / "h2load.log"
            if load == "r1000":
                cmd = h2load_h1_cmd(cfg.client_cpu, 1000, cfg.duration, url, log)
            else:
                cmd = wrk_cmd(cfg.client_cpu, 1 if load == "c1" else 16, cfg.duration, url)
        pids = middle.pids() if middle is not None else []
        cpu0 = cpu_ns(pids)
        if lane in DNS_LANES:
            res = dns_load(
                (str(target[0]), int(target[1])), DNS_CLIENT_IP, cfg.duration, cfg.dns_inflight
            )
        else:
            self.commands.setdefault("grpc" if lane in GRPC_LANES else load, " ".join(cmd[3:]))
            out = _run_tool(cmd, cfg.duration * 3 + 30)
            res = (
                parse_wrk(out)
                if cmd[3] == "wrk"
                else parse_h2load(out, log.read_text(encoding="ascii"))
            )
            log.unlink(missing_ok=True)
        cpu = cpu_ns(pids) - cpu0
        m = Measurement(
            lane,
            load,
            res.requests / res.seconds if res.seconds else 0.0,
            res.p50_us,
            res.p99_us,
            cpu / 1e3 / res.requests if pids and res.requests else None,
            rss_kib(pids) if pids else None,
            res.requests,
            res.errors,
        )
        self.results.setdefault((lane, load), []).append(m)

    def start(self) -> None:
        cfg = self.config
        (self.workdir / "grpc.bin").write_bytes(GRPC_FRAME)
        names = [f"l7-{n}" for n in cfg.rules] + ["l4", "grpc"]
        self.ports = {name: _free_port(UPSTREAM_IP) for name in names}
        self.front_ports = {n: _free_port(CLIENT_IP) for n in cfg.rules}
        self.progress("starting the upstream nginx, the front nginx, the DNS stub, the proxy")
        self.upstream = _nginx(
            self.workdir, "upstream", upstream_servers(self.ports), cfg.client_cpu
        )
        self.front = _nginx(
            self.workdir, "front", front_servers(self.front_ports, self.ports["l4"]), cfg.middle_cpu
        )
        self.dns_stub = _python_side("dns-stub", {"ip": DNS_SERVER_IP}, cfg.client_cpu)
        self.proxy = _python_side(
            "proxy",
            {
                "ports": self.ports,
                "dns": self.dns_stub.addresses["dns"],
                "rules": list(cfg.rules),
                "listen_ip": CLIENT_IP,
            },
            cfg.middle_cpu,
        )
        for p in [*self.ports.values()]:
            _wait_listening(UPSTREAM_IP, p)
        for p in self.front_ports.values():
            _wait_listening(CLIENT_IP, p)

    def stop(self) -> None:
        for proc in (self.proxy, self.dns_stub):
            if proc is not None:
                _stop(proc)
        for proc in (self.front, self.upstream):
            if proc is not None:
                _stop_nginx(proc)


def _rule_count(lane: str) -> int | None:
    """N of `nginx-N` / `l7-N`; None for the lanes without rules."""
    found = re.search(r"-(\d+)$", lane)
    return int(found[1]) if found else None


def _points(cfg: ProxyBenchConfig) -> list[tuple[str, str]]:
    http = ["direct", *(f"nginx-{n}" for n in cfg.rules), "l4", *(f"l7-{n}" for n in cfg.rules)]
    points = [(lane, load) for load in LOADS for lane in http]
    points += [(lane, "h2") for lane in GRPC_LANES] + [(lane, "udp") for lane in DNS_LANES]
    return points


def _median(ms: list[Measurement]) -> Measurement:
    def med(xs: list[float]) -> float:
        return float(statistics.median(xs))

    cpus = [m.cpu_us for m in ms if m.cpu_us is not None]
    rss = [m.rss_kib for m in ms if m.rss_kib is not None]
    return Measurement(
        ms[0].lane,
        ms[0].load,
        med([m.rps for m in ms]),
        med([m.p50_us for m in ms]),
        med([m.p99_us for m in ms]),
        med(cpus) if cpus else None,
        max(rss) if rss else None,
        sum(m.requests for m in ms),
        sum(m.errors for m in ms),
    )


@contextmanager
def _bench(cfg: ProxyBenchConfig, progress: Progress) -> Iterator[_Bench]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nstbench-proxy-")))
        os.chmod(workdir, 0o755)  # nginx workers (another user when not root) read the conf
        bench = _Bench(cfg, progress, workdir)
        stack.callback(bench.stop)
        bench.start()
        yield bench


def run(config: ProxyBenchConfig, progress: Progress) -> ProxyReport:
    """Measure every lane; see the module docstring. Raises BenchError when it cannot run."""
    why = missing_requirements()
    if why is not None:
        raise BenchError(why)
    points = _points(config)
    with _bench(config, progress) as bench:
        for r in range(config.rounds):
            progress(f"round {r + 1}/{config.rounds}: {len(points)} points of {config.duration:g}s")
            shift = r % len(points)
            for lane, load in points[shift:] + points[:shift]:
                bench.measure(lane, load)
        measurements = tuple(_median(bench.results[p]) for p in points)
        commands = tuple(f"{k}: {v}" for k, v in bench.commands.items())
    notes = []
    bad = [m for m in measurements if m.errors]
    if bad:
        notes.append("errors in: " + ", ".join(f"{m.lane}/{m.load} ({m.errors})" for m in bad))
    host = f"{os.uname().nodename}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    return ProxyReport(config, measurements, host, commands, tuple(notes))


__all__ = [
    "BenchError",
    "Measurement",
    "ProxyBenchConfig",
    "ProxyReport",
    "TargetCheck",
    "bench_policies",
    "bench_source",
    "missing_requirements",
    "resolve_bench_policies",
    "run",
]
