"""DNS enforcement: which queries the DNS proxy forwards, and what it learns from the answers.

Pure decisions for `proxy/dnsproxy.py`, which owns the sockets (reference §1.5.1, §6):

* `DNSEnforcer.on_query`: a query the core refuses to process gets the core's error reply
  (FORMERR/NOTIMP) or nothing (QR set, no readable header), as miekg/dns's default accept
  function does in Cilium; a query whose name no `rules.dns` entry allows (via `l7_check`,
  the reference datapath's walk) gets REFUSED, or NXDOMAIN in `nameError` mode; any other
  query is forwarded unchanged to the original destination.
* `DNSEnforcer.on_response`: an upstream message that is not the answer to our query (another
  id or question: a late or spoofed datagram) is ignored; an unparsable answer becomes
  SERVFAIL; a real answer is released to the client unchanged, together with the
  `DNSObservation` (name, IPs, TTL) that the FQDN learner must record *before* the client sees
  the answer, since the client connects to those IPs right away.
* TTL: the smallest TTL among the answer's A/AAAA records, raised to `min_ttl`
  (`--tofqdns-min-ttl`, default 0: the upstream's TTL is honoured).

Flows: a REQUEST record per query (FORWARDED or DROPPED, the deciding rule) and a RESPONSE
record per answer (IPs, TTL, CNAMEs, rcode; DROPPED for the proxy's refusals).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from netstrata.datapath.reference.l7 import l7_check
from netstrata.observe.builders import Packet, PolicyRef, flow_from_l7_dns
from netstrata.observe.flow import Flow, L7FlowType
from netstrata.observe.flow import Verdict as FlowVerdict
from netstrata.policy.types import ResolvedPolicy
from netstrata.proxy.dns import (
    AAAA,
    CNAME,
    REFUSED,
    SERVFAIL,
    A,
    DNSQuery,
    DNSResponse,
    MalformedDNSMessage,
    build_error_reply,
    build_refusal,
    parse_query,
    parse_response,
)
from netstrata.proxy.layers.context import policy_refs
from netstrata.proxy.policy_source import ConnectionInfo


@dataclass(frozen=True, slots=True)
class DNSObservation:
    """What one allowed answer taught the proxy: hand it to the FQDN machinery."""

    endpoint_id: int
    """The endpoint that asked (its DNS cache, in Cilium's terms)."""
    source_ip: str
    """The asking client's address."""
    server: tuple[str, int]
    """The DNS server that answered."""
    qname: str
    """Question name, lower-cased and fully qualified."""
    qtype: int
    """Question type (1 A, 28 AAAA, ...)."""
    ips: tuple[str, ...]
    """A/AAAA addresses of the answer section, in answer order, each once."""
    ttl: int
    """Seconds: the smallest A/AAAA TTL, raised to the minimum TTL."""
    cnames: tuple[str, ...]
    """CNAME targets followed on the way (lower-cased FQDNs)."""
    time: float
    """Unix time the answer arrived."""


FQDNLearner = Callable[[DNSObservation], Awaitable[None]]
"""Called with every allowed answer that carries addresses; the proxy releases the answer to
the client only when the returned awaitable is done (the ipcache then holds the IPs)."""


@dataclass(frozen=True, slots=True)
class QueryDecision:
    """What to do with one query."""

    action: Literal["forward", "answer", "ignore"]
    """forward: send `query.wire` upstream; answer: send `reply` to the client; ignore: nothing."""
    query: DNSQuery | None = None
    """The parsed query (None when it could not be parsed)."""
    reply: bytes | None = None
    """The proxy's own reply when `action` is `answer`."""
    flows: tuple[Flow, ...] = ()
    policies: tuple[PolicyRef, ...] = ()
    """The rule that allowed it (carried into the response flow)."""
    revision: int = 0


@dataclass(frozen=True, slots=True)
class ResponseDecision:
    """What to do with one upstream message."""

    action: Literal["release", "ignore"]
    """release: send `reply` to the client (after the learner); ignore: keep waiting."""
    reply: bytes | None = None
    observation: DNSObservation | None = None
    """Set when the answer carries addresses: learn before releasing."""
    flows: tuple[Flow, ...] = ()


class DNSEnforcer:
    """Stateless per-query decisions; one per DNS listener."""

    def __init__(self, *, reject_rcode: int = REFUSED, min_ttl: int = 0,
                 node_name: str = "") -> None:
        self.reject_rcode: Final = reject_rcode
        self.min_ttl: Final = min_ttl
        self.node_name: Final = node_name

    def on_query(self, wire: bytes, info: ConnectionInfo, policy: ResolvedPolicy | None,
                 now: float) -> QueryDecision:
        """Decide one query message from the client."""
        try:
            query = parse_query(wire)
        except MalformedDNSMessage as exc:
            reply = build_error_reply(exc)
            return QueryDecision("ignore" if reply is None else "answer", reply=reply)
        l7 = None if policy is None else policy.find_l7(info.direction, info.proto,
                                                         info.original_dst[1])
        allowed, cookie = False, None
        if l7 is not None and l7.parser == "dns":
            verdict = l7_check(l7, info.peer_identity, query.qname)
            allowed, cookie = verdict.allowed, verdict.cookie
        refs = policy_refs(policy, cookie)
        revision = policy.revision if policy is not None else 0
        flow_verdict = FlowVerdict.FORWARDED if allowed else FlowVerdict.DROPPED
        if not allowed and policy is not None and policy.audit:
            # Audit mode (netstrata's L7 extension): report the would-be refusal and forward.
            allowed, flow_verdict = True, FlowVerdict.AUDIT
        request = self._flow(info, query, L7FlowType.REQUEST, flow_verdict, now, refs, revision)
        if allowed:
            return QueryDecision("forward", query, flows=(request,), policies=refs,
                                 revision=revision)
        refusal = self._flow(info, query, L7FlowType.RESPONSE, FlowVerdict.DROPPED, now, refs,
                             revision, rcode=self.reject_rcode)
        return QueryDecision("answer", query, build_refusal(query, self.reject_rcode),
                             (request, refusal), refs, revision)

    def on_response(self, decision: QueryDecision, wire: bytes, info: ConnectionInfo,
                    started: float, now: float) -> ResponseDecision:
        """Decide one message the upstream sent back for `decision.query`."""
        query = decision.query
        assert query is not None
        try:
            response = parse_response(wire)
        except MalformedDNSMessage:
            return self.on_failure(decision, info, started, now)
        if response.id != query.id or (response.qname is not None
                                       and response.qname != query.qname):
            return ResponseDecision("ignore")
        observation = self._observe(response, query, info, now)
        flow = self._flow(info, query, L7FlowType.RESPONSE, FlowVerdict.FORWARDED, now,
                          decision.policies, decision.revision, response=response,
                          ttl=observation.ttl if observation else 0,
                          latency=now - started)
        return ResponseDecision("release", wire, observation, (flow,))

    def on_failure(self, decision: QueryDecision, info: ConnectionInfo, started: float,
                   now: float) -> ResponseDecision:
        """The upstream did not answer usefully: SERVFAIL, as Cilium's proxy answers."""
        query = decision.query
        assert query is not None
        flow = self._flow(info, query, L7FlowType.RESPONSE, FlowVerdict.ERROR, now,
                          decision.policies, decision.revision, rcode=SERVFAIL,
                          latency=now - started)
        return ResponseDecision("release", build_refusal(query, SERVFAIL), None, (flow,))

    def _observe(self, response: DNSResponse, query: DNSQuery, info: ConnectionInfo,
                 now: float) -> DNSObservation | None:
        addresses = [a for a in response.answers if a.rtype in (A, AAAA)]
        if response.rcode != 0 or not addresses:
            return None
        ips = tuple(dict.fromkeys(a.value for a in addresses))
        ttl = max(self.min_ttl, min(a.ttl for a in addresses))
        cnames = tuple(dict.fromkeys(a.value for a in response.answers if a.rtype == CNAME))
        return DNSObservation(info.endpoint_id, info.client[0], info.original_dst, query.qname,
                              query.qtype, ips, ttl, cnames, now)

    def _flow(self, info: ConnectionInfo, query: DNSQuery, l7_type: L7FlowType,
              verdict: FlowVerdict, now: float, refs: tuple[PolicyRef, ...], revision: int, *,
              response: DNSResponse | None = None, rcode: int = 0, ttl: int = 0,
              latency: float = 0.0) -> Flow:
        answers = response.answers if response is not None else ()
        packet = Packet(info.client[0], info.original_dst[0], int(info.proto), info.client[1],
                        info.original_dst[1], source=info.source, destination=info.destination)
        rrtypes = tuple(dict.fromkeys({A: "A", AAAA: "AAAA", CNAME: "CNAME"}[a.rtype]
                                      for a in answers))
        return flow_from_l7_dns(
            packet, query=query.qname, qtypes=(query.qtype_name,), l7_type=l7_type,
            verdict=verdict, direction=info.direction, time_ns=int(now * 1e9),
            node_name=self.node_name,
            ips=tuple(a.value for a in answers if a.rtype in (A, AAAA)), ttl=ttl,
            cnames=tuple(a.value for a in answers if a.rtype == CNAME),
            rcode=response.rcode if response is not None else rcode, rrtypes=rrtypes,
            latency_ns=max(0, int(latency * 1e9)), policies=refs, revision=revision)


__all__ = [
    "DNSEnforcer",
    "DNSObservation",
    "FQDNLearner",
    "QueryDecision",
    "ResponseDecision",
]
