"""L7 flows of a running lab, from real curl and dig traffic, read through `netstrata observe`.

One lab for the module (`netstrata lab up CASE`, one node), from a case file written here:

* `api-server` 80/TCP with seed h's rule: only `GET /public` from `app=client` (HTTP rules, so
  the kernel redirects the connection to the node proxy's ingress listener);
* `mediabot` with an egress DNS rule (`*.github.com` through kube-dns, redirected to the
  node's DNS proxy) and `toFQDNs` `*.github.com` on 80/TCP;
* `kube-dns` answering the case's `dns_records`; `api.github.com` an outside host.

Traffic: curl `GET /public` (200) and `GET /private` (the proxy's 403) from `client`; dig
`api.github.com` (answered) and `example.org` (REFUSED by the proxy) from `mediabot`, then curl
to the answered address (allowed by toFQDNs once the answer was seen).

Expectations come from reference §4.1 (flow fields), §4.2 (endpoints), §4.3 (event type 129
for L7; an L7 denial has no drop reason: verdict DROPPED, HTTP answered 403, DNS rcode 5), §4.4
(the `http` and `dns` records) and §4.5 (filters); summaries are Hubble's texts
(`HTTP/1.1 GET http://...`, `HTTP/1.1 200 Nms (GET ...)`, `DNS Query name. A`,
`DNS Answer "ip" TTL: n (Proxy name. A)`).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from netstrata.cli.main import main  # noqa: E402
from netstrata.lab.control import lab_down, lab_up  # noqa: E402
from netstrata.lab.labstate import LabState  # noqa: E402

NODE = "default/node-1"
EXTERNAL = "203.0.113.10"
RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def _workload(
    name: str, labels: dict[str, str], ports: list[dict[str, Any]], namespace: str = "default"
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "cluster": "default",
        "node": "node-1",
        "labels": labels,
        "service_account": name,
        "ports": ports,
    }


CASE = [
    {
        "name": "l7-observe",
        "origin": "test",
        "source": "tests/datapath/test_lab_observe_l7.py",
        "summary": "seed h's HTTP rule on api-server; a DNS rule and toFQDNs for mediabot",
        "workloads": [
            _workload(
                "api-server",
                {"app": "api-server"},
                [{"port": 80, "protocol": "TCP", "name": "http"}],
            ),
            _workload("client", {"app": "client"}, []),
            _workload("mediabot", {"app": "mediabot"}, []),
            _workload(
                "kube-dns",
                {"k8s-app": "kube-dns"},
                [
                    {"port": 53, "protocol": "UDP", "name": "dns"},
                    {"port": 53, "protocol": "TCP", "name": "dns-tcp"},
                ],
                "kube-system",
            ),
            {
                "name": "api.github.com",
                "kind": "external",
                "fqdn": "api.github.com",
                "ips": [EXTERNAL],
                "ports": [80],
            },
        ],
        "dns_records": {"api.github.com": [EXTERNAL]},
        "policies": [
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNetworkPolicy",
                "metadata": {"name": "api-server-public-get", "namespace": "default"},
                "spec": {
                    "endpointSelector": {"matchLabels": {"app": "api-server"}},
                    "ingress": [
                        {
                            "fromEndpoints": [{"matchLabels": {"app": "client"}}],
                            "toPorts": [
                                {
                                    "ports": [{"port": "80", "protocol": "TCP"}],
                                    "rules": {"http": [{"method": "GET", "path": "/public"}]},
                                }
                            ],
                        }
                    ],
                },
            },
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNetworkPolicy",
                "metadata": {"name": "mediabot-fqdn", "namespace": "default"},
                "spec": {
                    "endpointSelector": {"matchLabels": {"app": "mediabot"}},
                    "egress": [
                        {
                            "toFQDNs": [{"matchPattern": "*.github.com"}],
                            "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}],
                        },
                        {
                            "toEndpoints": [
                                {
                                    "matchLabels": {
                                        "k8s:io.kubernetes.pod.namespace": "kube-system",
                                        "k8s:k8s-app": "kube-dns",
                                    }
                                }
                            ],
                            "toPorts": [
                                {
                                    "ports": [{"port": "53", "protocol": "ANY"}],
                                    "rules": {"dns": [{"matchPattern": "*.github.com"}]},
                                }
                            ],
                        },
                    ],
                },
            },
        ],
        "probes": [],
    }
]


class Traffic:
    """The lab and what its real clients got."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.answers: dict[str, str] = {}

    def ip(self, pod: str) -> str:
        return next(p.ip for p in self.state.plan.pods if p.workload.endswith(f"/{pod}"))

    def run(self, pod: str, *argv: str) -> str:
        netns = next(p.netns for p in self.state.plan.pods if p.workload.endswith(f"/{pod}"))
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=30
        )
        return proc.stdout

    def curl(self, pod: str, url: str) -> str:
        return self.run(
            pod, "curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", url
        ).strip()

    def dig(self, pod: str, name: str) -> str:
        return self.run(pod, "dig", "+time=3", "+tries=1", f"@{self.ip('kube-dns')}", name)


@pytest.fixture(scope="module")
def lab(bpf_cache: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    # a module-scoped fixture runs before conftest's autouse skip; ask labkit directly
    # (importing `conftest` by name finds whichever conftest.py pytest loaded last)
    from labkit import kernel_lab_missing

    missing = kernel_lab_missing()
    if missing:
        pytest.skip(missing)
    for tool in ("curl", "dig"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (the traffic comes from real clients)")
    case = tmp_path_factory.mktemp("observe-l7") / "case.yaml"
    case.write_text(yaml.safe_dump(CASE, sort_keys=False))
    name = f"o7{secrets.token_hex(3)}"
    try:
        traffic = Traffic(lab_up(case, name=name))
        api = traffic.ip("api-server")
        traffic.answers = {
            "public": traffic.curl("client", f"http://{api}/public"),
            "private": traffic.curl("client", f"http://{api}/private"),
            "dig": traffic.dig("mediabot", "api.github.com"),
            "refused": traffic.dig("mediabot", "example.org"),
            "fqdn": traffic.curl("mediabot", f"http://{EXTERNAL}/"),
        }
        yield traffic
    finally:
        lab_down(name)


def observe(state: LabState, *flags: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["observe", "--name", state.name, *flags]) == 0
    return out.getvalue()


def flows(
    state: LabState, *flags: str, want: int = 1, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """`observe --all -o json FLAGS` flows, waiting until at least `want` arrived."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(x) for x in observe(state, *flags, "--all", "-o", "json").splitlines()]
        if len(lines) >= want or time.monotonic() > deadline:
            assert all(set(x) == {"flow", "node_name", "time"} for x in lines)
            return [x["flow"] for x in lines]
        time.sleep(0.1)


def one(items: list[dict[str, Any]], **l7: str) -> dict[str, Any]:
    [hit] = [f for f in items if all(f["l7"].get(k) == v for k, v in l7.items())]
    return hit


def check_common(f: dict[str, Any], verdict: str, direction: str) -> None:
    """What every proxy flow shares: L7 type, access-log event, no drop reason, endpoints."""
    assert f["Type"] == "L7" and f["event_type"] == {"type": 129}
    assert f["verdict"] == verdict and f["traffic_direction"] == direction
    assert "drop_reason" not in f and "drop_reason_desc" not in f
    assert f["node_name"] == NODE and RFC3339_NANOS.match(f["time"])
    assert f["IP"]["ipVersion"] == "IPv4"
    for ep in (f["source"], f["destination"]):
        assert ep["identity"] >= 256 and ep["cluster_name"] == "default"
        assert ep["workloads"] == [{"name": ep["pod_name"], "kind": "Pod"}]
        assert f"k8s:io.kubernetes.pod.namespace={ep['namespace']}" in ep["labels"]
        assert ep["ID"] > 0  # every pod here is local to the node
    reply = f["l7"]["type"] == "RESPONSE"
    assert f["is_reply"] is reply


def check_http_pair(state: Traffic, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    got = flows(state.state, "--type", "l7", "--http-path", f"^/{path}$", want=2)
    api, client = state.ip("api-server"), state.ip("client")
    url = f"http://{api}/{path}"
    req, resp = one(got, type="REQUEST"), one(got, type="RESPONSE")
    assert req["IP"]["source"] == client and req["IP"]["destination"] == api
    assert resp["IP"]["source"] == api and resp["IP"]["destination"] == client
    assert req["l4"]["TCP"]["destination_port"] == 80
    assert resp["l4"]["TCP"]["source_port"] == 80
    assert req["l4"]["TCP"]["source_port"] == resp["l4"]["TCP"]["destination_port"]
    assert req["source"]["pod_name"] == "client" and req["destination"]["pod_name"] == "api-server"
    assert "k8s:app=client" in req["source"]["labels"]
    http = req["l7"]["http"]
    assert (http["method"], http["url"], http["protocol"]) == ("GET", url, "HTTP/1.1")
    assert "code" not in http and "latency_ns" not in req["l7"]  # a request has neither
    headers = {h["key"]: h["value"] for h in http["headers"]}
    assert headers["Host"] == api and headers["User-Agent"].startswith("curl/")
    assert [h["key"] for h in http["headers"]] == sorted(headers)
    assert req["Summary"] == f"HTTP/1.1 GET {url}"
    rhttp = resp["l7"]["http"]
    assert (rhttp["method"], rhttp["url"], rhttp["protocol"]) == ("GET", url, "HTTP/1.1")
    # int64 as a JSON string, as protojson writes it; absent when 0 (the proxy's own 403 is
    # answered in the same event-loop step that read the request)
    latency = int(resp["l7"].get("latency_ns", "0"))
    assert latency > 0 or rhttp["code"] == 403
    assert resp["Summary"] == (f"HTTP/1.1 {rhttp['code']} {latency // 1_000_000}ms (GET {url})")
    return req, resp


def test_allowed_http_flow_has_hubbles_fields(lab: Traffic) -> None:
    assert lab.answers["public"] == "200"
    req, resp = check_http_pair(lab, "public")
    check_common(req, "FORWARDED", "INGRESS")
    check_common(resp, "FORWARDED", "INGRESS")
    assert resp["l7"]["http"]["code"] == 200
    for f in (req, resp):
        [policy] = f["ingress_allowed_by"]
        assert (policy["name"], policy["namespace"], policy["kind"]) == (
            "api-server-public-get",
            "default",
            "CiliumNetworkPolicy",
        )
        assert "egress_allowed_by" not in f and "ingress_denied_by" not in f


def test_denied_http_flow_is_dropped_at_l7_without_a_reason(lab: Traffic) -> None:
    assert lab.answers["private"] == "403"
    req, resp = check_http_pair(lab, "private")
    check_common(req, "DROPPED", "INGRESS")  # the denial: the request record
    assert resp["l7"]["http"]["code"] == 403 and resp["is_reply"] is True
    assert "ingress_allowed_by" not in req  # no rule allowed it (and no deny rule named)
    # The kernel redirected the connection (L3/L4 allowed it): REDIRECTED, not dropped.
    kernel = flows(
        lab.state, "--type", "policy-verdict", "--from-port", str(req["l4"]["TCP"]["source_port"])
    )
    assert [k["verdict"] for k in kernel] == ["REDIRECTED"]
    assert kernel[0]["Type"] == "L3_L4" and kernel[0]["proxy_port"] > 0


def test_dns_flows_have_hubbles_fields(lab: Traffic) -> None:
    assert EXTERNAL in lab.answers["dig"] and "status: NOERROR" in lab.answers["dig"]
    got = flows(lab.state, "--type", "l7", "--protocol", "dns", "--pod", "default/mediabot", want=4)
    dns_ip, bot = lab.ip("kube-dns"), lab.ip("mediabot")
    answered = [f for f in got if f["l7"]["dns"]["query"] == "api.github.com."]
    req, resp = one(answered, type="REQUEST"), one(answered, type="RESPONSE")
    for f in (req, resp):
        check_common(f, "FORWARDED", "EGRESS")
        [policy] = f["egress_allowed_by"]
        assert policy["name"] == "mediabot-fqdn"
    assert req["IP"]["source"] == bot and req["IP"]["destination"] == dns_ip
    assert req["l4"]["UDP"]["destination_port"] == 53
    assert resp["l4"]["UDP"]["source_port"] == 53
    assert req["destination"]["namespace"] == "kube-system"
    assert "k8s:k8s-app=kube-dns" in req["destination"]["labels"]
    # request: query, qtypes and where it was seen, nothing of the answer
    assert req["l7"]["dns"] == {
        "query": "api.github.com.",
        "observation_source": "proxy",
        "qtypes": ["A"],
    }
    assert req["Summary"] == "DNS Query api.github.com. A"
    dns = resp["l7"]["dns"]
    # rcode 0 (NOERROR) is omitted, as protojson omits zero values
    assert dns == {
        "query": "api.github.com.",
        "ips": [EXTERNAL],
        "ttl": 30,
        "observation_source": "proxy",
        "qtypes": ["A"],
        "rrtypes": ["A"],
    }
    assert int(resp["l7"]["latency_ns"]) > 0
    assert resp["Summary"] == f'DNS Answer "{EXTERNAL}" TTL: 30 (Proxy api.github.com. A)'

    # REFUSED by the DNS rule: the request DROPPED, the answer carries rcode 5
    assert "status: REFUSED" in lab.answers["refused"]
    refused = [f for f in got if f["l7"]["dns"]["query"] == "example.org."]
    rreq, rresp = one(refused, type="REQUEST"), one(refused, type="RESPONSE")
    check_common(rreq, "DROPPED", "EGRESS")
    assert rresp["l7"]["dns"]["rcode"] == 5 and "ips" not in rresp["l7"]["dns"]
    assert rresp["Summary"] == "DNS Answer RCode: Query Refused TTL: 0 (Proxy example.org. A)"


def test_tofqdns_connection_names_the_looked_up_name(lab: Traffic) -> None:
    """After the answer, the kernel let mediabot reach the address (toFQDNs) and the flow
    carries the name the DNS cache holds for it (`destination_names`, as Hubble shows it)."""
    assert lab.answers["fqdn"] == "200"
    got = flows(lab.state, "--to-ip", EXTERNAL, "--type", "policy-verdict")
    assert got and {f["verdict"] for f in got} == {"FORWARDED"}
    f = got[0]
    assert f["destination_names"] == ["api.github.com"]
    assert f["traffic_direction"] == "EGRESS" and f["source"]["pod_name"] == "mediabot"
    [policy] = f["egress_allowed_by"]
    assert policy["name"] == "mediabot-fqdn"
    assert f["destination"]["identity"] > 0 and "pod_name" not in f["destination"]


def test_l7_filters_on_real_flows(lab: Traffic) -> None:
    assert flows(lab.state, "--type", "l7", want=8)
    every = flows(lab.state)
    l7 = [f for f in every if f["Type"] == "L7"]
    assert len(l7) >= 8 and len(every) > len(l7)

    def http(f: dict[str, Any]) -> dict[str, Any]:
        return f.get("l7", {}).get("http", {})

    cases: dict[tuple[str, ...], Any] = {
        ("--type", "l7"): lambda f: f["Type"] == "L7",
        ("--http-method", "GET"): lambda f: http(f).get("method") == "GET",
        ("--http-path", "^/priv"): lambda f: "/private" in http(f).get("url", ""),
        ("--http-status", "403"): lambda f: http(f).get("code") == 403,
        ("--http-status", "2+"): lambda f: 200 <= http(f).get("code", 0) < 300,
        ("--protocol", "http"): lambda f: bool(http(f)),
        ("--protocol", "dns"): lambda f: "dns" in f.get("l7", {}),
        ("--fqdn", "*.github.com"): lambda f: (
            "api.github.com" in (f.get("source_names", []) + f.get("destination_names", []))
        ),
        ("--type", "l7", "--verdict", "DROPPED"): lambda f: (
            f["Type"] == "L7" and f["verdict"] == "DROPPED"
        ),
    }
    for flags, predicate in cases.items():
        hits = flows(lab.state, *flags)
        expected = [f for f in every if predicate(f)]
        assert hits, flags
        assert [h["uuid"] for h in hits] == [f["uuid"] for f in expected], flags
    # the L7 denials are exactly the /private request and the example.org query
    denied = flows(lab.state, "--type", "l7", "--verdict", "DROPPED")
    requests = {
        http(f).get("url") or f["l7"]["dns"]["query"]
        for f in denied
        if f["l7"]["type"] == "REQUEST"
    }
    assert requests == {f"http://{lab.ip('api-server')}/private", "example.org."}
    # compact output names the L7 event as Hubble does
    compact = observe(lab.state, "--type", "l7", "--http-path", "^/public$", "--all")
    assert "http-request FORWARDED (HTTP/1.1 GET" in compact
    assert "http-response FORWARDED (HTTP/1.1 200" in compact
