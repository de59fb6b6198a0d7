"""Cilium's resolution semantics, each case written from reference §1.4, §1.8-1.12 and §8."""

from __future__ import annotations

import pytest
from policyworld import HOST, WORLD, cnp, pod_labels, sel, tcp, verdict

from netstrata.api import types as api
from netstrata.datapath.drop_reasons import DropReason
from netstrata.errors import PolicyConflictError
from netstrata.labels import Label, LabelSet, Selector
from netstrata.policy.resolve import PolicyConfig, port_blocks
from netstrata.policy.types import Direction, Proto

A, B, C, OTHER_NS, REMOTE = 1001, 1002, 1003, 1004, 1005


@pytest.fixture
def w(world):
    world.add(A, pod_labels("prod", id="a"))
    world.add(B, pod_labels("prod", id="b"))
    world.add(C, pod_labels("prod", id="c"))
    world.add(OTHER_NS, pod_labels("dev", id="b"))
    world.add(REMOTE, pod_labels("prod", cluster="other", id="b"))
    return world


def subject_a():
    return sel(id="a")


# ---------------------------------------------------------------- §1.4 nil vs empty vs {}


def test_empty_element_denies_all_but_enforces(w):
    pol = w.resolve(A, [cnp("deny", "prod", subject=subject_a(), ingress=(api.PeerRule(),))])
    assert pol.ingress_enforced
    assert not verdict(pol, B).allowed
    assert verdict(pol, B).drop_reason == DropReason.POLICY_DENIED
    assert not verdict(pol, WORLD).allowed


def test_ports_without_l3_is_wildcard_including_world_and_other_namespaces(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(to_ports=tcp(80)),))])
    for peer in (B, OTHER_NS, WORLD, REMOTE):
        assert verdict(pol, peer, 80).allowed, peer
        assert not verdict(pol, peer, 81).allowed


def test_explicit_empty_endpoint_list_selects_nobody(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(), to_ports=tcp(80)),))])
    assert pol.ingress_enforced
    assert not verdict(pol, B, 80).allowed
    assert not verdict(pol, WORLD, 80).allowed


def test_cnp_empty_endpoint_selector_is_own_namespace_and_local_cluster(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(Selector(),)),))])
    assert verdict(pol, B).allowed
    assert not verdict(pol, OTHER_NS).allowed
    assert not verdict(pol, REMOTE).allowed
    assert not verdict(pol, WORLD).allowed


def test_ccnp_empty_endpoint_selector_is_every_namespace_not_world(w):
    pol = w.resolve(A, [cnp("p", None, ccnp=True, subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(Selector(),)),))])
    assert verdict(pol, B).allowed
    assert verdict(pol, OTHER_NS).allowed
    assert not verdict(pol, WORLD).allowed


def test_entity_all_is_a_true_wildcard(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(entities=("all",)),))])
    for peer in (B, OTHER_NS, WORLD, HOST, REMOTE):
        assert verdict(pol, peer, 1234).allowed


def test_direction_without_entries_is_not_enforced(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), egress=(api.PeerRule(),))])
    assert not pol.ingress_enforced
    assert verdict(pol, WORLD, 9999).allowed
    assert not verdict(pol, B, 80, direction=Direction.EGRESS).allowed


def test_port_zero_means_every_port_of_the_protocol(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(0)),))])
    assert verdict(pol, B, 1).allowed and verdict(pol, B, 65535).allowed
    assert not verdict(pol, B, 53, Proto.UDP).allowed


def test_any_protocol_expands_to_tcp_udp_sctp_never_icmp(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(53, proto="ANY")),))])
    for proto in (Proto.TCP, Proto.UDP, Proto.SCTP):
        assert verdict(pol, B, 53, proto).allowed
    assert not verdict(pol, B, 8 << 8, Proto.ICMP).allowed


def test_l3_only_rule_allows_icmp_too(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(endpoints=(sel(id="b"),)),))])
    assert verdict(pol, B, 8 << 8, Proto.ICMP).allowed


def test_icmp_rule_by_type(w):
    icmp = api.PeerRule(endpoints=(sel(id="b"),), icmps=(api.ICMPField("IPv4", 8),))
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(icmp,))])
    assert verdict(pol, B, 8 << 8, Proto.ICMP).allowed
    assert not verdict(pol, B, 13 << 8, Proto.ICMP).allowed
    assert not verdict(pol, B, 80).allowed


# ---------------------------------------------------------------- §1.11 deny precedence


def test_deny_identity_all_ports_beats_allow_on_port(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(80)),),
                            ingress_deny=(api.PeerRule(endpoints=(sel(id="b"),)),))])
    r = verdict(pol, B, 80)
    assert not r.allowed and r.drop_reason == DropReason.POLICY_DENY


def test_port_only_deny_beats_identity_allow_all_ports(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(sel(id="b"),)),),
                            ingress_deny=(api.PeerRule(to_ports=tcp(80)),))])
    assert verdict(pol, B, 80).drop_reason == DropReason.POLICY_DENY
    assert verdict(pol, B, 81).allowed


def test_deny_only_policy_enables_default_deny(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress_deny=(api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(80)),))])
    assert pol.ingress_enforced
    assert verdict(pol, C, 81).drop_reason == DropReason.POLICY_DENIED


DENY_MATRIX = [
    # (deny L4 80, deny L3 client) -> (curl :81, curl :80, ping)
    ((False, False), (True, True, True)),
    ((True, False), (True, False, True)),
    ((False, True), (False, False, False)),
    ((True, True), (False, False, False)),
]


@pytest.mark.parametrize("denies,expected", DENY_MATRIX)
def test_deny_matrix_from_the_docs(w, denies, expected):
    http = api.L7Rules(http=(api.HTTPRule(method="GET", path="/"),))
    client = (sel(id="b"),)
    policies = [
        cnp("http", "prod", subject=subject_a(), ingress=(api.PeerRule(endpoints=client, to_ports=tcp(80, rules=http)),)),
        cnp("l4-80", "prod", subject=subject_a(), ingress=(api.PeerRule(endpoints=client, to_ports=tcp(80)),)),
        cnp("l4-81", "prod", subject=subject_a(), ingress=(api.PeerRule(endpoints=client, to_ports=tcp(81)),)),
        cnp("l3", "prod", subject=subject_a(), ingress=(api.PeerRule(endpoints=client),)),
    ]
    if denies[0]:
        policies.append(cnp("deny-80", "prod", subject=subject_a(), ingress_deny=(api.PeerRule(to_ports=tcp(80)),)))
    if denies[1]:
        policies.append(cnp("deny-l3", "prod", subject=subject_a(), ingress_deny=(api.PeerRule(endpoints=client),)))
    pol = w.resolve(A, policies)
    got = (verdict(pol, B, 81).allowed, verdict(pol, B, 80).allowed, verdict(pol, B, 8 << 8, Proto.ICMP).allowed)
    assert got == expected


def test_deny_matrix_last_column_deny_alone_default_denies(w):
    pol = w.resolve(A, [cnp("deny-80", "prod", subject=subject_a(), ingress_deny=(api.PeerRule(to_ports=tcp(80)),))])
    assert not verdict(pol, B, 81).allowed
    assert not verdict(pol, B, 80).allowed
    assert not verdict(pol, B, 8 << 8, Proto.ICMP).allowed


# ---------------------------------------------------------------- §1.12 L4/L7 merge


HTTP_GET_ROOT = api.L7Rules(http=(api.HTTPRule(method="GET", path="/"),))


def test_l4_only_and_l7_on_same_port_is_proxied_and_widened(w):
    pol = w.resolve(A, [
        cnp("l4", "prod", subject=subject_a(), ingress=(api.PeerRule(to_ports=tcp(80)),)),
        cnp("l7", "prod", subject=subject_a(), ingress=(api.PeerRule(to_ports=tcp(80, rules=HTTP_GET_ROOT)),)),
    ])
    r = verdict(pol, B, 80)
    assert r.allowed and r.proxy_port
    l7 = pol.find_l7(Direction.INGRESS, Proto.TCP, 80)
    assert l7 is not None and l7.parser == "http"
    assert any(e.rules is None for e in l7.entries), "the L4-only allow adds a no-restriction entry"
    assert any(e.rules for e in l7.entries)


def test_identity_l7_plus_wildcard_l4_proxies_only_that_identity(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(
        api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(80, rules=HTTP_GET_ROOT)),
        api.PeerRule(to_ports=tcp(80)),
    ))])
    assert verdict(pol, B, 80).proxy_port
    assert verdict(pol, C, 80).allowed and not verdict(pol, C, 80).proxy_port
    l7 = pol.find_l7(Direction.INGRESS, Proto.TCP, 80)
    assert any(e.rules is None and e.identities is None for e in l7.entries)


def test_disjoint_identities_keep_their_own_l7_rules(w):
    post = api.L7Rules(http=(api.HTTPRule(method="POST", path="/x"),))
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(
        api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(80, rules=HTTP_GET_ROOT)),
        api.PeerRule(endpoints=(sel(id="c"),), to_ports=tcp(80, rules=post)),
    ))])
    l7 = pol.find_l7(Direction.INGRESS, Proto.TCP, 80)
    by_id = {next(iter(e.identities)): e.rules for e in l7.entries}
    assert by_id[B] == HTTP_GET_ROOT.http and by_id[C] == post.http
    assert not verdict(pol, OTHER_NS, 80).allowed


def test_conflicting_l7_parsers_on_one_port_is_an_error(w):
    kafka = api.L7Rules(kafka=(api.KafkaRule(role="produce"),))
    with pytest.raises(PolicyConflictError, match="conflicting L7 parsers"):
        w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(
            api.PeerRule(to_ports=tcp(80, rules=HTTP_GET_ROOT)),
            api.PeerRule(to_ports=tcp(80, rules=kafka)),
        ))])


# ---------------------------------------------------------------- §1.10 default deny opt-out, localhost


def test_default_deny_opt_out_keeps_denies_and_redirects_only(w):
    rule = api.Rule(
        origin=api.RuleOrigin("CiliumNetworkPolicy", "p", "prod"),
        endpoint_selector=subject_a(),
        ingress=(api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(80, rules=HTTP_GET_ROOT)),),
        ingress_deny=(api.PeerRule(endpoints=(sel(id="c"),)),),
        default_deny_ingress=False,
    )
    pol = w.resolve(A, [api.CiliumPolicy("CiliumNetworkPolicy", "p", "prod", (rule,))])
    assert verdict(pol, WORLD, 9999).allowed
    assert verdict(pol, C, 9999).drop_reason == DropReason.POLICY_DENY
    assert verdict(pol, B, 80).proxy_port
    l7 = pol.find_l7(Direction.INGRESS, Proto.TCP, 80)
    assert any(e.rules is None for e in l7.entries), "opt-out appends a wildcard L7 entry"


def test_without_opt_out_l7_rules_stay_exact(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(
        api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(80, rules=HTTP_GET_ROOT)),))])
    l7 = pol.find_l7(Direction.INGRESS, Proto.TCP, 80)
    assert all(e.rules for e in l7.entries)


def test_allow_localhost_when_ingress_enforced(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(),))])
    r = verdict(pol, HOST, 80)
    assert r.allowed and not r.proxy_port


def test_allow_localhost_off(w):
    w.config = PolicyConfig(allow_localhost=False)
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(),))])
    assert not verdict(pol, HOST, 80).allowed


def test_enforcement_always_and_never(w):
    w.config = PolicyConfig(enforcement="always")
    pol = w.resolve(A)
    assert pol.ingress_enforced and pol.egress_enforced and not verdict(pol, B).allowed
    w.config = PolicyConfig(enforcement="never")
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(),))])
    assert not pol.ingress_enforced and verdict(pol, B).allowed


# ---------------------------------------------------------------- named ports, injection, CIDR


def test_named_port_ingress_resolves_on_the_subject(world):
    world.add(A, pod_labels("prod", id="a"), named={"http-8080": ((8080, int(Proto.TCP)),)})
    world.add(B, pod_labels("prod", id="b"))
    pol = world.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(to_ports=tcp("http-8080")),))])
    assert verdict(pol, B, 8080).allowed
    assert not verdict(pol, B, 80).allowed


def test_named_port_missing_on_the_subject_opens_nothing(world):
    world.add(A, pod_labels("prod", id="a"))
    world.add(B, pod_labels("prod", id="b"))
    pol = world.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(to_ports=tcp("http-8080")),))])
    assert pol.ingress_enforced and not verdict(pol, B, 8080).allowed


def test_named_port_egress_resolves_per_destination(world):
    world.add(A, pod_labels("prod", id="a"))
    world.add(B, pod_labels("prod", id="b"), named={"web": ((8080, int(Proto.TCP)),)})
    world.add(C, pod_labels("prod", id="c"), named={"web": ((9090, int(Proto.TCP)),)})
    pol = world.resolve(A, [cnp("p", "prod", subject=subject_a(),
                                egress=(api.PeerRule(endpoints=(sel(id="b"), sel(id="c")), to_ports=tcp("web")),))])
    eg = Direction.EGRESS
    assert verdict(pol, B, 8080, direction=eg).allowed and not verdict(pol, B, 9090, direction=eg).allowed
    assert verdict(pol, C, 9090, direction=eg).allowed and not verdict(pol, C, 8080, direction=eg).allowed


def test_cnp_subject_gets_its_namespace(w):
    pol_other = w.resolve(OTHER_NS, [cnp("p", "prod", subject=Selector(), ingress=(api.PeerRule(),))])
    assert not pol_other.ingress_enforced, "a CNP in prod never selects a pod in dev"


def test_explicit_namespace_key_allows_cross_namespace(w):
    cross = Selector.from_k8s({"k8s:io.kubernetes.pod.namespace": "dev"})
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(endpoints=(cross,)),))])
    assert verdict(pol, OTHER_NS).allowed and not verdict(pol, B).allowed


def test_explicit_cluster_key_allows_cross_cluster(w):
    any_cluster = Selector.from_k8s({"id": "b"}, [("k8s:io.cilium.k8s.policy.cluster", "Exists", ())])
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), ingress=(api.PeerRule(endpoints=(any_cluster,)),))])
    assert verdict(pol, REMOTE).allowed and verdict(pol, B).allowed


def cidr_world(w):
    w.add(0x01000001, LabelSet([Label("reserved", "world"), Label("cidr", "10.0.0.0/8")]))
    w.add(0x01000002, LabelSet([Label("reserved", "world"), Label("cidr", "10.1.0.0/16")]))
    w.add(0x01000003, LabelSet([Label("reserved", "world"), Label("cidr", "10.2.0.0/16")]))
    return 0x01000001, 0x01000002, 0x01000003


def test_cidr_except_subtracts_within_its_own_entry(w):
    wide, excepted, other = cidr_world(w)
    rule = api.PeerRule(cidrs=(api.CIDRRule("10.0.0.0/8", ("10.1.0.0/16",)),), cidr_kind="CIDRSet")
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), egress=(rule,))])
    eg = Direction.EGRESS
    assert verdict(pol, wide, direction=eg).allowed
    assert verdict(pol, other, direction=eg).allowed
    assert not verdict(pol, excepted, direction=eg).allowed
    assert not verdict(pol, WORLD, direction=eg).allowed
    assert not verdict(pol, B, direction=eg).allowed, "CIDR rules never match pods"


def test_deny_except_is_not_an_allow(w):
    wide, excepted, other = cidr_world(w)
    deny = api.PeerRule(cidrs=(api.CIDRRule("10.0.0.0/8", ("10.1.0.0/16",)),), cidr_kind="CIDRSet")
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), egress_deny=(deny,))])
    eg = Direction.EGRESS
    assert verdict(pol, other, direction=eg).drop_reason == DropReason.POLICY_DENY
    assert verdict(pol, excepted, direction=eg).drop_reason == DropReason.POLICY_DENIED


def test_world_entity_covers_cidr_identities(w):
    wide, _, _ = cidr_world(w)
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(), egress=(api.PeerRule(entities=("world",)),))])
    assert verdict(pol, wide, direction=Direction.EGRESS).allowed
    assert verdict(pol, WORLD, direction=Direction.EGRESS).allowed
    assert not verdict(pol, B, direction=Direction.EGRESS).allowed


# ---------------------------------------------------------------- Kubernetes NetworkPolicy


def netpol(name, ns, ingress=None, types=("Ingress",), pod=None):
    return api.NetworkPolicy(name, ns, pod or Selector(), types, ingress=ingress or ())


def test_k8s_empty_ingress_rule_allows_all(w):
    pol = w.resolve(A, netpols=[netpol("p", "prod", ingress=(api.NetworkPolicyRule(),))])
    for peer in (B, OTHER_NS, WORLD):
        assert verdict(pol, peer, 1234).allowed


def test_k8s_policy_types_ingress_without_rules_denies(w):
    pol = w.resolve(A, netpols=[netpol("p", "prod")])
    assert pol.ingress_enforced and not verdict(pol, B).allowed


def test_k8s_namespace_selector_uses_namespace_labels(w):
    peer = api.NetworkPolicyPeer(namespace_selector=Selector.from_k8s({"kubernetes.io/metadata.name": "dev"}))
    pol = w.resolve(A, netpols=[netpol("p", "prod", ingress=(api.NetworkPolicyRule(peers=(peer,)),))])
    assert verdict(pol, OTHER_NS).allowed and not verdict(pol, B).allowed


# ---------------------------------------------------------------- port ranges


@pytest.mark.parametrize("start,end", [(80, 80), (8080, 8090), (1, 65535), (0, 0), (1024, 2047), (3, 17)])
def test_port_blocks_cover_exactly_the_range(start, end):
    blocks = port_blocks(start, end)
    covered = set()
    for port, prefix in blocks:
        size = 1 << (16 - prefix)
        assert port % size == 0, "blocks are aligned"
        covered |= set(range(port, port + size))
    want = set(range(0, 65536)) if (start, end) == (0, 0) else set(range(start, end + 1))
    assert covered == want


def test_port_range_rule(w):
    pol = w.resolve(A, [cnp("p", "prod", subject=subject_a(),
                            ingress=(api.PeerRule(endpoints=(sel(id="b"),), to_ports=tcp(8080, end=8090)),))])
    assert all(verdict(pol, B, p).allowed for p in range(8080, 8091))
    assert not verdict(pol, B, 8079).allowed and not verdict(pol, B, 8091).allowed
