"""DNS enforcement decisions (reference §1.5.1 `rules.dns`, §6 toFQDNs learning): allowed names
forwarded, others REFUSED (or NXDOMAIN in nameError mode), spoofed answers ignored, TTL raised to
the minimum, malformed queries answered as miekg/dns would."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode

from netstrata.api.types import DNSRule
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, Proto, ResolvedPolicy
from netstrata.proxy.dns import AAAA, CNAME, NXDOMAIN, A, DNSAnswer, build_answer, parse_query
from netstrata.proxy.layers import DNSEnforcer
from netstrata.proxy.policy_source import ConnectionInfo

KUBE_DNS = ("10.96.0.10", 53)
POD = ("10.0.1.5", 33333)
KUBE_DNS_ID = 102

POLICY = ResolvedPolicy(
    endpoint_id=9, identity=300, revision=2, entries={}, ingress_enforced=False,
    egress_enforced=True,
    l7={(Direction.EGRESS, int(Proto.UDP), 53, 16): L7Policy("dns", (
        L7Entry(frozenset({KUBE_DNS_ID}), (DNSRule(match_pattern="*.stripe.com"),
                                            DNSRule(match_name="example.com")), cookie=1),))},
    cookies={1: "CiliumNetworkPolicy shop/dns egress[0]"})
INFO = ConnectionInfo(9, Direction.EGRESS, KUBE_DNS_ID, POD, KUBE_DNS, Proto.UDP)


def query(name: str, qtype: str = "A") -> bytes:
    return dns.message.make_query(name, qtype, id=4242).to_wire()


def test_allowed_name_is_forwarded_with_a_request_flow() -> None:
    decision = DNSEnforcer().on_query(query("API.Stripe.com"), INFO, POLICY, 10.0)
    assert decision.action == "forward" and decision.query is not None
    assert decision.query.qname == "api.stripe.com."
    (flow,) = decision.flows
    assert flow.verdict == FV.FORWARDED and flow.l7.record.query == "api.stripe.com."
    assert flow.egress_allowed_by[0].name == "dns"


def test_denied_name_is_refused_or_nxdomain() -> None:
    for enforcer, rcode in ((DNSEnforcer(), dns.rcode.REFUSED),
                            (DNSEnforcer(reject_rcode=NXDOMAIN), dns.rcode.NXDOMAIN)):
        decision = enforcer.on_query(query("stripe.com"), INFO, POLICY, 10.0)
        assert decision.action == "answer" and decision.reply is not None
        reply = dns.message.from_wire(decision.reply)
        assert reply.rcode() == rcode and reply.id == 4242
        assert str(reply.question[0].name) == "stripe.com."
        request, response = decision.flows
        assert request.verdict == FV.DROPPED and response.l7.record.rcode == int(rcode)


def test_other_identity_or_no_policy_is_refused() -> None:
    other = ConnectionInfo(9, Direction.EGRESS, 2, POD, KUBE_DNS, Proto.UDP)
    assert DNSEnforcer().on_query(query("example.com"), other, POLICY, 0).action == "answer"
    assert DNSEnforcer().on_query(query("example.com"), INFO, None, 0).action == "answer"


def test_malformed_queries_get_formerr_or_nothing() -> None:
    enforcer = DNSEnforcer()
    assert enforcer.on_query(b"\x01\x02", INFO, POLICY, 0).action == "ignore"
    two_questions = bytearray(query("example.com"))
    two_questions[5] = 2  # QDCOUNT 2
    decision = enforcer.on_query(bytes(two_questions), INFO, POLICY, 0)
    assert decision.action == "answer" and decision.reply is not None
    assert dns.message.from_wire(decision.reply).rcode() == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.from_wire(query("example.com")))
    assert enforcer.on_query(response.to_wire(), INFO, POLICY, 0).action == "ignore"  # QR set


def answer_for(name: str, records: list[DNSAnswer], ident: int = 4242) -> bytes:
    q = parse_query(dns.message.make_query(name, "A", id=ident).to_wire())
    return build_answer(q, records)


def test_answer_is_released_with_what_the_learner_needs() -> None:
    enforcer = DNSEnforcer(min_ttl=30)
    decision = enforcer.on_query(query("www.stripe.com"), INFO, POLICY, 10.0)
    wire = answer_for("www.stripe.com", [
        DNSAnswer("www.stripe.com.", CNAME, 300, "edge.stripe.com."),
        DNSAnswer("edge.stripe.com.", A, 20, "192.0.2.10"),
        DNSAnswer("edge.stripe.com.", A, 60, "192.0.2.11"),
        DNSAnswer("edge.stripe.com.", AAAA, 600, "2001:db8::1")])
    result = enforcer.on_response(decision, wire, INFO, 10.0, 10.25)
    assert result.action == "release" and result.reply == wire
    obs = result.observation
    assert obs is not None
    assert obs.qname == "www.stripe.com."
    assert sorted(obs.ips) == ["192.0.2.10", "192.0.2.11", "2001:db8::1"]
    assert obs.ttl == 30  # min(20, 60, 600) raised to min_ttl
    assert obs.cnames == ("edge.stripe.com.",) and obs.endpoint_id == 9
    (flow,) = result.flows
    assert flow.l7.type == L7FlowType.RESPONSE and flow.l7.latency_ns == 250_000_000
    assert sorted(flow.l7.record.ips) == sorted(obs.ips)


def test_upstream_ttl_is_honoured_without_a_minimum() -> None:
    decision = DNSEnforcer().on_query(query("example.com"), INFO, POLICY, 0)
    wire = answer_for("example.com", [DNSAnswer("example.com.", A, 7, "192.0.2.1")])
    obs = DNSEnforcer().on_response(decision, wire, INFO, 0, 0).observation
    assert obs is not None and obs.ttl == 7


def test_answers_to_another_query_are_ignored_and_garbage_is_servfail() -> None:
    enforcer = DNSEnforcer()
    decision = enforcer.on_query(query("example.com"), INFO, POLICY, 0)
    spoofed = answer_for("example.com", [DNSAnswer("example.com.", A, 9, "203.0.113.66")], 1)
    assert enforcer.on_response(decision, spoofed, INFO, 0, 0).action == "ignore"
    other_name = answer_for("evil.com", [DNSAnswer("evil.com.", A, 9, "203.0.113.66")])
    assert enforcer.on_response(decision, other_name, INFO, 0, 0).action == "ignore"
    broken = enforcer.on_response(decision, b"\x10\x92\x81\x80garbage", INFO, 0, 0)
    assert broken.action == "release" and broken.reply is not None
    assert dns.message.from_wire(broken.reply).rcode() == dns.rcode.SERVFAIL


def test_nxdomain_answer_is_released_without_learning() -> None:
    decision = DNSEnforcer().on_query(query("example.com"), INFO, POLICY, 0)
    q = parse_query(query("example.com"))
    wire = build_answer(q, [], rcode=NXDOMAIN)
    result = DNSEnforcer().on_response(decision, wire, INFO, 0, 0)
    assert result.action == "release" and result.observation is None
    assert not dns.message.from_wire(result.reply or b"").flags & dns.flags.TC


def test_audit_mode_forwards_a_would_be_refused_query_with_verdict_audit() -> None:
    from dataclasses import replace

    decision = DNSEnforcer().on_query(query("stripe.com"), INFO, replace(POLICY, audit=True), 10.0)
    assert decision.action == "forward" and decision.reply is None
    (request,) = decision.flows
    assert request.verdict == FV.AUDIT
