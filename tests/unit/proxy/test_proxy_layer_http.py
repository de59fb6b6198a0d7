"""HTTP/1.1 enforcement layer, Playbook style: events in, the exact commands out.

Semantics from reference §1.5.1 and §1.12 (403 `Access denied\\r\\n`, L4-only widening,
per-identity rule sets, headerMatches with Secrets) and the HTTP/1.1 core's error hints."""

from __future__ import annotations

from collections.abc import Callable

from proxyplaybook import Placeholder, Playbook

from netstrata.api.types import HeaderMatch, HTTPRule
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy.layers import (
    DEFAULT_TIMEOUTS,
    ClientData,
    ClientEof,
    Close,
    HTTPLayer,
    HTTPSettings,
    LayerContext,
    OpenServer,
    SendToClient,
    SendToServer,
    ServerData,
    ServerEof,
    ServerOpened,
    ServerOpenFailed,
    Start,
    Timeouts,
    Verdict,
)
from netstrata.proxy.policy_source import ConnectionInfo

DST = ("10.0.2.7", 8080)
CLIENT = ("10.0.1.5", 40112)
TIEFIGHTER, XWING = 48213, 51007
COOKIES = {1: "CiliumNetworkPolicy shop/api ingress[0]",
           2: "CiliumNetworkPolicy shop/open ingress[0]",
           3: "CiliumClusterwideNetworkPolicy tokens ingress[0]"}

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def policy(*entries: L7Entry, revision: int = 7) -> ResolvedPolicy:
    return ResolvedPolicy(
        endpoint_id=12, identity=100, revision=revision, entries={}, ingress_enforced=True,
        egress_enforced=False, l7={(Direction.INGRESS, 6, DST[1], 16): L7Policy("http", entries)},
        cookies=COOKIES)


PUBLIC_ONLY = policy(L7Entry(frozenset({TIEFIGHTER}), (HTTPRule(method="GET", path="/public"),),
                             cookie=1))


def layer(pol: ResolvedPolicy | None = PUBLIC_ONLY, *, peer: int = TIEFIGHTER,
          secrets: Callable[[str, str], str | None] | None = None,
          timeouts: Timeouts = DEFAULT_TIMEOUTS, current: Callable[[], ResolvedPolicy | None] | None = None
          ) -> HTTPLayer:
    info = ConnectionInfo(12, Direction.INGRESS, peer, CLIENT, DST)
    ctx = LayerContext(info, current or (lambda: pol), secrets, "node-a")
    out = HTTPLayer(ctx, HTTPSettings(timeouts=timeouts))
    out.handle(Start(), 1_000.0)
    return out


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: api\r\n" + extra + b"\r\n"


def flow(kind: L7FlowType, verdict: FV) -> Placeholder:
    return Placeholder(Verdict, lambda v: v.flow.l7.type == kind and v.flow.verdict == verdict)


def reply(status: int) -> Placeholder:
    return Placeholder(SendToClient, lambda c: c.data.startswith(b"HTTP/1.1 %d " % status))


def test_allowed_request_goes_to_the_original_destination_and_the_response_comes_back() -> None:
    req = flow(L7FlowType.REQUEST, FV.FORWARDED)
    resp = flow(L7FlowType.RESPONSE, FV.FORWARDED)
    assert (
        Playbook(layer())
        >> ClientData(get("/public"))
        << req
        << OpenServer(DST)
        >> ServerOpened()
        << SendToServer(b"GET /public HTTP/1.1\r\nHost: api\r\n\r\n")
        >> ServerData(OK_RESPONSE)
        << SendToClient(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        << resp
        << SendToClient(b"ok")
    )
    record = req().flow
    assert record.l7.record.method == "GET" and record.l7.record.url == "http://api/public"
    assert record.ingress_allowed_by[0].name == "api" and record.ingress_allowed_by[0].namespace == "shop"
    answer = resp().flow
    assert answer.l7.record.code == 200 and answer.is_reply
    assert answer.ip.source == DST[0] and answer.ip.destination == CLIENT[0]  # response: swapped


def test_denied_request_gets_cilium_403_without_touching_upstream_and_keeps_the_connection() -> None:
    denied = reply(403)
    pb = Playbook(layer())
    assert (
        pb
        >> ClientData(get("/private"))
        << flow(L7FlowType.REQUEST, FV.DROPPED)
        << denied
        << flow(L7FlowType.RESPONSE, FV.DROPPED)
    )
    assert denied().data.endswith(b"\r\n\r\nAccess denied\r\n")
    assert b"content-length: 15" in denied().data.lower()
    # the same connection carries the next (allowed) request
    assert (
        pb
        >> ClientData(get("/public"))
        << flow(L7FlowType.REQUEST, FV.FORWARDED)
        << OpenServer(DST)
    )


def test_keep_alive_mixed_verdicts_reuse_one_upstream_connection() -> None:
    pb = Playbook(layer())
    assert (
        pb
        >> ClientData(get("/public"))
        << Placeholder(Verdict) << OpenServer(DST)
        >> ServerOpened() << Placeholder(SendToServer)
        >> ServerData(OK_RESPONSE)
        << reply(200) << Placeholder(Verdict) << SendToClient(b"ok")
        >> ClientData(get("/admin"))
        << Placeholder(Verdict) << reply(403) << Placeholder(Verdict)
        >> ClientData(get("/public"))
        << Placeholder(Verdict)
        << SendToServer(b"GET /public HTTP/1.1\r\nHost: api\r\n\r\n")  # no second OpenServer
    )


def test_l4_only_entry_widens_l7_for_every_identity_it_covers() -> None:
    widened = policy(
        L7Entry(frozenset({TIEFIGHTER}), (HTTPRule(method="GET", path="/public"),), cookie=1),
        L7Entry(None, None, cookie=2))
    req = flow(L7FlowType.REQUEST, FV.FORWARDED)
    assert Playbook(layer(widened, peer=XWING)) >> ClientData(get("/anything")) << req << OpenServer(DST)
    assert req().flow.ingress_allowed_by[0].name == "open"


def test_rules_apply_per_peer_identity() -> None:
    per_identity = policy(
        L7Entry(frozenset({TIEFIGHTER}), (HTTPRule(path="/empire"),), cookie=1),
        L7Entry(frozenset({XWING}), (HTTPRule(path="/rebels"),), cookie=2))
    assert (
        Playbook(layer(per_identity, peer=XWING))
        >> ClientData(get("/empire"))
        << flow(L7FlowType.REQUEST, FV.DROPPED) << reply(403) << Placeholder(Verdict)
        >> ClientData(get("/rebels"))
        << flow(L7FlowType.REQUEST, FV.FORWARDED) << OpenServer(DST)
    )


def test_header_replaced_from_a_secret_and_redacted_in_flows() -> None:
    rule = HTTPRule(path="/pay", header_matches=(
        HeaderMatch("X-Token", mismatch="REPLACE", secret=("shop", "pay-token")),))
    pol = policy(L7Entry(None, (rule,), cookie=3))
    secrets = {("shop", "pay-token"): "s3cret"}
    req = flow(L7FlowType.REQUEST, FV.FORWARDED)
    sent = Placeholder(SendToServer)
    assert (
        Playbook(layer(pol, secrets=lambda ns, name: secrets.get((ns, name))))
        >> ClientData(get("/pay", b"X-Token: guess\r\n"))
        << req << OpenServer(DST)
        >> ServerOpened() << sent
    )
    assert b"X-Token: s3cret\r\n" in sent().data and b"guess" not in sent().data
    headers = dict((h.key, h.value) for h in req().flow.l7.record.headers)
    assert headers["X-Token"] == "[redacted]"
    assert req().flow.ingress_allowed_by[0].kind == "CiliumClusterwideNetworkPolicy"


def test_unresolvable_secret_fails_the_rule_closed() -> None:
    rule = HTTPRule(header_matches=(HeaderMatch("X-Token", secret=("shop", "missing")),))
    pol = policy(L7Entry(None, (rule,), cookie=3))
    assert (
        Playbook(layer(pol, secrets=lambda ns, name: None))
        >> ClientData(get("/", b"X-Token: anything\r\n"))
        << flow(L7FlowType.REQUEST, FV.DROPPED) << reply(403) << Placeholder(Verdict)
    )


def test_path_is_normalized_before_matching_and_forwarded_normalized() -> None:
    sent = Placeholder(SendToServer)
    assert (
        Playbook(layer())
        >> ClientData(get("/public/../private"))
        << flow(L7FlowType.REQUEST, FV.DROPPED) << reply(403) << Placeholder(Verdict)
        >> ClientData(get("//x/%2e%2e/public"))
        << flow(L7FlowType.REQUEST, FV.FORWARDED) << OpenServer(DST)
        >> ServerOpened() << sent
    )
    assert sent().data.startswith(b"GET /public HTTP/1.1\r\n")


def test_escaped_slash_is_redirected_and_nul_is_rejected() -> None:
    redirect = reply(307)
    assert (
        Playbook(layer())
        >> ClientData(get("/public%2Fx"))
        << flow(L7FlowType.REQUEST, FV.FORWARDED) << redirect << Placeholder(Verdict)
        >> ClientData(get("/a/%00/b"))
        << flow(L7FlowType.REQUEST, FV.ERROR) << reply(400)
        << flow(L7FlowType.RESPONSE, FV.ERROR) << Close("client")
    )
    assert b"location: /public/x\r\n" in redirect().data


def test_smuggling_attempt_gets_400_and_close_without_upstream() -> None:
    smuggle = (b"POST /public HTTP/1.1\r\nHost: api\r\nContent-Length: 4\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /private HTTP/1.1\r\n\r\n")
    bad = reply(400)
    assert Playbook(layer()) >> ClientData(smuggle) << bad << Close("client")
    assert b"connection: close" in bad().data


def test_oversized_head_gets_431() -> None:
    huge = get("/public", b"X-Big: " + b"a" * 70_000 + b"\r\n")
    assert Playbook(layer()) >> ClientData(huge) << reply(431) << Close("client")


def test_denied_body_is_discarded_and_the_next_request_is_parsed() -> None:
    post = b"POST /private HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\n"
    assert (
        Playbook(layer())
        >> ClientData(post)
        << flow(L7FlowType.REQUEST, FV.DROPPED) << reply(403) << Placeholder(Verdict)
        >> ClientData(b"hello" + get("/public"))
        << flow(L7FlowType.REQUEST, FV.FORWARDED) << OpenServer(DST)
    )


def test_slow_client_head_times_out_with_408() -> None:
    lay = layer(timeouts=Timeouts(header=2.0, read=1.5))
    pb = Playbook(lay) >> ClientData(b"GET /public HTTP/1.1\r\n")
    assert pb
    assert lay.get_timer() == 1_000.0 + 1.5
    assert pb.at(1_001.0).timer()  # not yet: nothing happens
    assert pb.at(1_001.2) >> ClientData(b"Host")  # progress moves the read deadline ...
    assert lay.get_timer() == 1_000.0 + 2.0  # ... but not past the whole-head deadline
    assert pb.at(1_002.0).timer() << reply(408) << Close("client")


def test_idle_keep_alive_connection_closes_quietly() -> None:
    lay = layer(timeouts=Timeouts(idle=5.0))
    assert lay.get_timer() == 1_005.0
    assert Playbook(lay).at(1_005.0).timer() << Close("client")


def test_upstream_unreachable_gets_503_and_the_connection_goes_on() -> None:
    pb = Playbook(layer())
    assert (
        pb
        >> ClientData(get("/public"))
        << Placeholder(Verdict) << OpenServer(DST)
        >> ServerOpenFailed("connection refused")
        << reply(503) << flow(L7FlowType.RESPONSE, FV.ERROR)
        >> ClientData(get("/public"))
        << Placeholder(Verdict) << OpenServer(DST)
    )


def test_upstream_that_does_not_answer_gets_504() -> None:
    lay = layer(timeouts=Timeouts(upstream=3.0))
    pb = (Playbook(lay) >> ClientData(get("/public")) << Placeholder(Verdict) << OpenServer(DST)
          >> ServerOpened() << Placeholder(SendToServer))
    assert pb
    assert lay.get_timer() == 1_003.0
    assert pb.at(1_003.0).timer() << Close("server") << reply(504) << Placeholder(Verdict) << Close("client")


def test_upstream_garbage_gets_502_and_closes() -> None:
    assert (
        Playbook(layer())
        >> ClientData(get("/public")) << Placeholder(Verdict) << OpenServer(DST)
        >> ServerOpened() << Placeholder(SendToServer)
        >> ServerData(b"SSH-2.0-OpenSSH\r\n\r\n")
        << Close("server") << reply(502) << Placeholder(Verdict) << Close("client")
    )


def test_upstream_closing_after_response_is_reopened_for_the_next_request() -> None:
    pb = Playbook(layer())
    assert (
        pb
        >> ClientData(get("/public")) << Placeholder(Verdict) << OpenServer(DST)
        >> ServerOpened() << Placeholder(SendToServer)
        >> ServerData(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        << SendToClient(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # hop-by-hop stripped
        << Placeholder(Verdict) << Close("server")
        >> ClientData(get("/public")) << Placeholder(Verdict) << OpenServer(DST)
    )


def test_pipelined_requests_are_answered_in_order() -> None:
    lay = layer()
    pb = (Playbook(lay) >> ClientData(get("/public") + get("/private"))
          << Placeholder(Verdict) << OpenServer(DST))
    assert pb
    assert not lay.wants_client_data  # waiting for the upstream: stop reading
    assert pb >> ServerOpened() << Placeholder(SendToServer)
    assert not lay.wants_client_data  # the second request is buffered; reading would grow it
    assert (
        pb >> ServerData(OK_RESPONSE)
        << reply(200) << Placeholder(Verdict) << SendToClient(b"ok")
        << flow(L7FlowType.REQUEST, FV.DROPPED) << reply(403) << Placeholder(Verdict)
    )
    assert lay.wants_client_data


def test_no_rule_set_or_no_policy_denies() -> None:
    assert (Playbook(layer(None)) >> ClientData(get("/public"))
            << flow(L7FlowType.REQUEST, FV.DROPPED) << reply(403) << Placeholder(Verdict))
    kafka_rules = ResolvedPolicy(12, 100, 1, {}, True, False,
                                 l7={(Direction.INGRESS, 6, DST[1], 16): L7Policy("kafka", ())})
    assert (Playbook(layer(kafka_rules)) >> ClientData(get("/public"))
            << flow(L7FlowType.REQUEST, FV.DROPPED) << reply(403) << Placeholder(Verdict))


def test_a_new_policy_revision_applies_to_the_next_request() -> None:
    current = [PUBLIC_ONLY]
    lay = layer(current=lambda: current[0])
    pb = Playbook(lay)
    assert pb >> ClientData(get("/admin")) << Placeholder(Verdict) << reply(403) << Placeholder(Verdict)
    current[0] = policy(L7Entry(None, None, cookie=2), revision=8)
    req = flow(L7FlowType.REQUEST, FV.FORWARDED)
    assert pb >> ClientData(get("/admin")) << req << OpenServer(DST)
    assert req().flow.ingress_allowed_by[0].revision == 8


def test_client_eof_after_response_closes_both_sides() -> None:
    assert (
        Playbook(layer())
        >> ClientData(get("/public")) << Placeholder(Verdict) << OpenServer(DST)
        >> ServerOpened() << Placeholder(SendToServer)
        >> ClientEof()
        >> ServerData(OK_RESPONSE)
        << reply(200) << Placeholder(Verdict) << SendToClient(b"ok")
        << Close("server") << Close("client")
    )


def test_upstream_eof_before_response_gets_502() -> None:
    assert (
        Playbook(layer())
        >> ClientData(get("/public")) << Placeholder(Verdict) << OpenServer(DST)
        >> ServerOpened() << Placeholder(SendToServer)
        >> ServerEof()
        << Close("server") << reply(502) << Placeholder(Verdict) << Close("client")
    )


def test_connect_is_not_tunnelled() -> None:
    assert (
        Playbook(layer())
        >> ClientData(b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n")
        << flow(L7FlowType.REQUEST, FV.ERROR) << reply(501) << Placeholder(Verdict)
        << Close("client")
    )


def test_audit_mode_forwards_a_would_be_denied_request_unchanged_with_verdict_audit() -> None:
    # netstrata's L7 audit (beyond Cilium, whose audit mode stops at L3/L4).
    from dataclasses import replace

    req = flow(L7FlowType.REQUEST, FV.AUDIT)
    assert (
        Playbook(layer(replace(PUBLIC_ONLY, audit=True)))
        >> ClientData(get("/private"))
        << req
        << OpenServer(DST)
        >> ServerOpened()
        << SendToServer(b"GET /private HTTP/1.1\r\nHost: api\r\n\r\n")
        >> ServerData(OK_RESPONSE)
        << reply(200) << flow(L7FlowType.RESPONSE, FV.FORWARDED) << SendToClient(b"ok")
    )
    assert not req().flow.ingress_allowed_by
