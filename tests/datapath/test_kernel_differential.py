"""Differential test: the kernel's policy lookup against the reference datapath.

Hypothesis draws random MapStates (allow/deny, identities incl. "any", protocols incl. "any",
port blocks of every prefix length, ICMP types, precedences, redirects) and random packets.
Each MapState is applied with `apply_policy()` (so successive examples also exercise the
diffing), each packet goes through the real program with BPF_PROG_TEST_RUN, and the verdict,
drop reason, deciding cookie, match type and proxy port must equal
`datapath.reference._lookup.policy_lookup` on the same MapState (DESIGN.md: they must never
disagree). `HYPOTHESIS_PROFILE=deep` runs ten times more examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces")

from datapathkit import EP_A, ICMP, ID_A, SCTP, TCP, UDP, resolved  # noqa: E402

from netstrata.datapath.kernel import KernelDatapath  # noqa: E402
from netstrata.datapath.loader import packets as pk  # noqa: E402
from netstrata.datapath.maps import EventType, Verdict, is_exact  # noqa: E402
from netstrata.datapath.reference._lookup import LookupResult, policy_lookup  # noqa: E402
from netstrata.netns import create_netns, delete_netns, in_netns  # noqa: E402
from netstrata.policy.resolve import Resolver  # noqa: E402
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey, MatchType  # noqa: E402

EXAMPLES = {"deep": 1000}.get(os.environ.get("HYPOTHESIS_PROFILE", ""), 100)
A = "10.1.0.1"
PEERS = {1002: "10.9.0.1", 16777217: "10.9.0.2", 3333: "10.9.0.3", 2: "192.0.2.7"}
"""Peer identity -> an address the ipcache maps to it (2, world, is an ipcache miss)."""
OTHER_PROTO = 47  # GRE: no ports, matches only port-wildcarded entries
PORTS = (0, 53, 80, 443, 8080, 8081, 8443, 65535)


Shape = tuple[int, int, int]
"""(proto, port, port prefix) of a key; keys share a few shapes so lookups A and B collide."""


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    proto = draw(st.sampled_from([0, TCP, UDP, SCTP, ICMP, OTHER_PROTO]))
    if proto == 0:
        return (0, 0, 0)
    if proto == ICMP:
        prefix = draw(st.sampled_from([0, 8, 8, 16]))
        return (proto, draw(st.sampled_from([0, 3, 8, 11])) << 8 if prefix else 0, prefix)
    prefix = draw(st.sampled_from([0, 4, 8, 12, 13, 15, 16, 16, 16]))
    base = draw(st.sampled_from(PORTS) | st.integers(0, 0xFFFF))
    return (proto, base & ~((1 << (16 - prefix)) - 1) & 0xFFFF, prefix)


@st.composite
def map_states(draw: st.DrawFn) -> dict[MapStateKey, MapStateEntry]:
    pool = draw(st.lists(shapes(), min_size=1, max_size=4))
    out: dict[MapStateKey, MapStateEntry] = {}
    for _ in range(draw(st.integers(0, 14))):
        proto, port, prefix = draw(st.sampled_from(pool))
        key = MapStateKey(draw(st.sampled_from(list(Direction))),
                          draw(st.sampled_from([0, *PEERS])), proto, port, prefix)
        deny = draw(st.integers(0, 3)) == 0
        out[key] = MapStateEntry(
            deny=deny,
            proxy_port=0 if deny else draw(st.sampled_from([0, 0, 15001])),
            precedence=255 if deny else draw(st.sampled_from([0, 1, 1, 100])),
            cookie=len(out) + 1,
        )
    return out


Probe = tuple[Direction, int, int, int, int]
"""(direction, peer identity, proto, destination port, ICMP type)."""


@st.composite
def probes_for(draw: st.DrawFn, entries: dict[MapStateKey, MapStateEntry]) -> Probe:
    """A packet, usually aimed at one of the entries (inside its port block), else random."""
    direction = draw(st.sampled_from(list(Direction)))
    peer = draw(st.sampled_from(list(PEERS)))
    if entries and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(entries)))
        direction = key.direction
        peer = key.identity or peer
        proto = key.proto or draw(st.sampled_from([TCP, UDP, SCTP, ICMP, OTHER_PROTO]))
        span = (1 << (16 - key.port_prefix)) - 1
        port = key.port + draw(st.integers(0, span))
        return (direction, peer, proto, port & 0xFFFF, (port >> 8) & 0xFF)
    proto = draw(st.sampled_from([TCP, UDP, SCTP, ICMP, OTHER_PROTO]))
    port = draw(st.sampled_from(PORTS) | st.integers(1, 0xFFFF))
    return (direction, peer, proto, port, draw(st.sampled_from([0, 3, 8, 11, 13])))


@pytest.fixture
def kernel(tag: str, pin_dir: Path) -> Iterator[tuple[KernelDatapath, str]]:
    netns = f"nst{tag}-diff"
    create_netns(netns)
    try:
        dp = KernelDatapath(pin_dir, netns=netns)
        try:
            dp.register_endpoint(A, EP_A, ID_A, 1, 3)
            dp.sync_ipcache({f"{ip}/32": ident for ident, ip in PEERS.items() if ident != 2})
            yield dp, netns
        finally:
            dp.teardown()
    finally:
        delete_netns(netns)


def _frame(direction: Direction, peer_ip: str, proto: int, port: int, icmp_type: int,
           sport: int) -> bytes:
    src, dst = (A, peer_ip) if direction == Direction.EGRESS else (peer_ip, A)
    return pk.frame(src, dst, proto, sport=sport, dport=port, icmp_type=icmp_type)


TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7


def _tc_action(allowed: bool, proxy_port: int, direction: Direction) -> int:
    """What the program returns for a NEW packet (docs/proxy-redirect.md): a redirect at
    ingress is bounced to the veth's ingress (bpf_redirect) to be assigned to the proxy there;
    at egress it is assigned to the proxy's socket directly, and this namespace has no proxy,
    so it fails closed (PROXY_LOOKUP_FAILED / not supported for the protocol)."""
    if not allowed:
        return TC_ACT_SHOT
    if not proxy_port:
        return TC_ACT_OK
    return TC_ACT_REDIRECT if direction == Direction.INGRESS else TC_ACT_SHOT


def _check_probe(dp: KernelDatapath, netns: str, entries: dict[MapStateKey, MapStateEntry],
                 probe: Probe, sport: int) -> LookupResult:
    """Send one NEW packet through the program and require the reference's verdict, drop
    reason, deciding cookie, match type and proxy port; returns the reference's result."""
    direction, peer, proto, port, icmp_type = probe
    dp.flush_conntrack()  # every probe is a NEW packet (replies are tested elsewhere)
    dp.read_events(0)
    ref_port = icmp_type << 8 if proto == ICMP else port if proto != OTHER_PROTO else 0
    want = policy_lookup(entries, direction, peer, proto, ref_port)
    frame = _frame(direction, PEERS[peer], proto, port, icmp_type, sport=sport)
    with in_netns(netns):
        verdict = dp.test_run("from_pod" if direction == Direction.EGRESS else "to_pod", frame)
    what = f"{direction.name} peer {peer} proto {proto} port {ref_port}: {want}"
    assert verdict == _tc_action(want.allowed, want.proxy_port, direction), what
    verdicts = [e for e in dp.read_events(0) if e.type == EventType.POLICY_VERDICT]
    assert len(verdicts) == 1, what
    got = verdicts[0]
    assert got.drop_reason == (want.drop_reason or 0), what
    assert got.cookie == (want.entry.cookie if want.entry else 0), what
    assert got.match_type == (want.key.match_type() if want.key else MatchType.NONE), what
    assert got.proxy_port == want.proxy_port, what
    expected = (Verdict.DROPPED if not want.allowed else
                Verdict.REDIRECTED if want.proxy_port else Verdict.FORWARDED)
    assert got.verdict == expected, what
    return want


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=map_states(), data=st.data())
def test_kernel_lookup_equals_reference(
    kernel: tuple[KernelDatapath, str], entries: dict[MapStateKey, MapStateEntry],
    data: st.DataObject,
) -> None:
    dp, netns = kernel
    dp.apply_policy(resolved(EP_A, ID_A, entries))
    assert dp.dump_policy(EP_A) == entries
    # the kernel keeps exact ports in a hash and the rest in a trie: say which ones ran
    event(f"maps: exact {any(map(is_exact, entries))}, "
          f"trie {not all(map(is_exact, entries))}")
    probes = data.draw(st.lists(probes_for(entries), min_size=1, max_size=6), label="probes")
    for i, probe in enumerate(probes):
        _check_probe(dp, netns, entries, probe, sport=20000 + i)


# ------------------------------------------------------- exact hash vs trie, same lookup

PEER = 1002
EXACT_80 = MapStateKey(Direction.INGRESS, PEER, TCP, 80, 16)
"""In the exact hash."""
RANGE_64 = MapStateKey(Direction.INGRESS, PEER, TCP, 64, 10)
"""64-127, in the trie."""
ANY_PEER_80 = MapStateKey(Direction.INGRESS, 0, TCP, 80, 16)
ANY_PEER_TCP = MapStateKey(Direction.INGRESS, 0, TCP, 0, 0)
ALLOW = MapStateEntry(cookie=1)
DENY = MapStateEntry(deny=True, precedence=255, cookie=2)


def _probe(port: int, peer: int = PEER) -> Probe:
    return (Direction.INGRESS, peer, TCP, port, 0)


def _apply(dp: KernelDatapath, entries: dict[MapStateKey, MapStateEntry]) -> None:
    dp.apply_policy(resolved(EP_A, ID_A, entries))
    assert dp.dump_policy(EP_A) == entries


def test_exact_deny_in_the_hash_beats_a_shorter_allow_in_the_trie(
    kernel: tuple[KernelDatapath, str],
) -> None:
    dp, netns = kernel
    entries = {EXACT_80: DENY, RANGE_64: ALLOW}
    _apply(dp, entries)
    assert not _check_probe(dp, netns, entries, _probe(80), 30000).allowed  # hash hit: deny
    assert _check_probe(dp, netns, entries, _probe(81), 30001).allowed  # hash miss: trie allow
    # the deny for any peer (lookup B, in the hash) beats the peer's own allow (A, in the trie)
    entries = {ANY_PEER_80: DENY, RANGE_64: ALLOW}
    _apply(dp, entries)
    assert not _check_probe(dp, netns, entries, _probe(80), 30002).allowed
    assert _check_probe(dp, netns, entries, _probe(100), 30003).allowed


def test_range_or_wildcard_deny_in_the_trie_beats_an_exact_allow(
    kernel: tuple[KernelDatapath, str],
) -> None:
    """The longest match alone would pick the exact allow over a covering range deny of the
    same identity; the resolver rewrites such an allow into a deny (`_shadow_denies`), so
    what reaches the kernel denies, in the hash as in the trie. A deny of any peer (lookup B)
    wins by precedence step 3 even without the rewrite."""
    dp, netns = kernel
    raw = {RANGE_64: DENY, EXACT_80: ALLOW}
    # as written, both datapaths take the longer (exact) allow: they agree, and it is why
    # the resolver must rewrite
    _apply(dp, raw)
    assert _check_probe(dp, netns, raw, _probe(80), 30010).allowed
    shadowed = dict(raw)
    Resolver._shadow_denies(shadowed)
    assert shadowed[EXACT_80].deny
    _apply(dp, shadowed)
    assert not _check_probe(dp, netns, shadowed, _probe(80), 30011).allowed
    assert not _check_probe(dp, netns, shadowed, _probe(90), 30012).allowed
    wildcard = {ANY_PEER_TCP: DENY, EXACT_80: ALLOW}
    _apply(dp, wildcard)
    assert not _check_probe(dp, netns, wildcard, _probe(80), 30013).allowed
    assert not _check_probe(dp, netns, wildcard, _probe(80, 16777217), 30014).allowed


def test_adopted_after_restart_from_both_maps(
    kernel: tuple[KernelDatapath, str], pin_dir: Path,
) -> None:
    """A restarted agent reads both pinned maps back and removes from the right one."""
    dp, netns = kernel
    entries = {EXACT_80: ALLOW, RANGE_64: DENY, ANY_PEER_TCP: ALLOW}
    _apply(dp, entries)
    again = KernelDatapath(pin_dir, netns=netns)
    try:
        assert again.dump_policy(EP_A) == entries
        kept = {ANY_PEER_TCP: ALLOW}
        assert again.apply_policy(resolved(EP_A, ID_A, kept)).removed == 2
        assert again.dump_policy(EP_A) == kept
        assert _check_probe(again, netns, kept, _probe(80), 30020).allowed
    finally:
        again.close()
