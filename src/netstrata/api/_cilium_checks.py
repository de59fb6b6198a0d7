"""Cilium's structural rules: what a CNP/CCNP rule may combine (reference §1.2, §1.3, §1.5).

These checks look at several fields at once, so they run on a `RuleSpec` that has already passed
the schema, and each yields an `Issue` naming the exact field path. The `expected` text quotes
Cilium's own error message in parentheses (pkg/policy/api/rule_validation.go), so a user can
search for it. They mirror `Rule.Sanitize`, with two deliberate choices from the reference:
any L3 peer kind may be combined with `toPorts` (including `toServices`), and `except` must be a
sub-prefix of its `cidr` rather than merely start inside it. `except` may also accompany a
`cidrGroupRef` (cilium-cli's connectivity tests rely on it); it then applies to the group.
"""

from __future__ import annotations

from collections.abc import Iterator

from netstrata.api._cilium_schema import (
    CIDRRuleSpec,
    EgressElement,
    FQDNSelectorSpec,
    IngressElement,
    PortRuleSpec,
    RuleSpec,
    ServiceSpec,
)
from netstrata.api._problems import Issue
from netstrata.api._schema_base import parse_prefix
from netstrata.api._yaml import FieldPath, brief

_SECTIONS = (
    ("ingress", "ingress", True, False),
    ("ingressDeny", "ingress_deny", True, True),
    ("egress", "egress", False, False),
    ("egressDeny", "egress_deny", False, True),
)
"""(wire name, attribute, is ingress, is deny) for the four element lists."""

_DENY_FORBIDDEN_PORT_FIELDS = (
    ("rules", "rules"), ("serverNames", "server_names"), ("terminatingTLS", "terminating_tls"),
    ("originatingTLS", "originating_tls"), ("listener", "listener"),
)


def check_rule(rule: RuleSpec, kind: str) -> Iterator[Issue]:
    """Every structural problem of one rule; paths are relative to the rule."""
    yield from _selectors(rule, kind)
    yield from _directions(rule)
    host = rule.node_selector is not None
    for wire, attr, ingress, deny in _SECTIONS:
        for i, el in enumerate(getattr(rule, attr) or ()):
            yield from _element(el, (wire, i), ingress=ingress, deny=deny, host=host)


def _selectors(rule: RuleSpec, kind: str) -> Iterator[Issue]:
    if rule.endpoint_selector is None and rule.node_selector is None:
        yield Issue((), "an endpointSelector or a nodeSelector (rule must have one of "
                    "EndpointSelector or NodeSelector)", "neither")
    elif rule.endpoint_selector is not None and rule.node_selector is not None:
        yield Issue(("nodeSelector",), "only one of endpointSelector and nodeSelector (rule "
                    "cannot have both EndpointSelector and NodeSelector)", "both")
    elif rule.node_selector is not None and kind == "CiliumNetworkPolicy":
        yield Issue(("nodeSelector",), "an endpointSelector (nodeSelector is only allowed in a "
                    "CiliumClusterwideNetworkPolicy)", "nodeSelector in a CiliumNetworkPolicy")


def _directions(rule: RuleSpec) -> Iterator[Issue]:
    lists = {wire: getattr(rule, attr) for wire, attr, _, _ in _SECTIONS}
    if any(lists.values()):
        return
    written = [f"{wire}: []" for wire, value in lists.items() if value is not None]
    found = " and ".join(written) if written else "none of them"
    yield Issue((), "at least one non-empty ingress, ingressDeny, egress or egressDeny (rule must "
                "have at least one of Ingress, IngressDeny, Egress, EgressDeny)", found)


def _element(el: IngressElement | EgressElement, path: FieldPath, *, ingress: bool, deny: bool,
             host: bool) -> Iterator[Issue]:
    section = ("ingress" if ingress else "egress") + ("Deny" if deny else "")
    non_empty = [wire for wire, value in el.l3_present() if value]
    for other in non_empty[1:]:
        yield Issue((*path, other), f"one L3 peer kind per element (combining {non_empty[0]} and "
                    f"{other} is not supported)", f"{non_empty[0]} and {other}")
    if el.icmps and el.to_ports:
        yield Issue((*path, "icmps"), "icmps or toPorts, not both (the ICMPs block may only be "
                    "present without ToPorts; define a separate rule to use ToPorts)",
                    "icmps and toPorts in one element")
    if deny:
        yield from _deny_only_fields(el, path, section)
    for j, pr in enumerate(el.to_ports or ()):
        yield from _port_rule(pr, (*path, "toPorts", j), ingress=ingress, deny=deny, host=host,
                              section=section)
    cidr_sets = el.from_cidr_set if isinstance(el, IngressElement) else el.to_cidr_set
    wire = "fromCIDRSet" if isinstance(el, IngressElement) else "toCIDRSet"
    for k, c in enumerate(cidr_sets or ()):
        yield from _cidr_rule(c, (*path, wire, k))
    if isinstance(el, EgressElement):
        for k, f in enumerate(el.to_fqdns or ()):
            yield from _fqdn(f, (*path, "toFQDNs", k))
        for k, s in enumerate(el.to_services or ()):
            yield from _service(s, (*path, "toServices", k))


def _deny_only_fields(el: IngressElement | EgressElement, path: FieldPath,
                      section: str) -> Iterator[Issue]:
    if isinstance(el, EgressElement) and el.to_fqdns is not None:
        yield Issue((*path, "toFQDNs"), f"no toFQDNs in {section} (deny rules cannot select "
                    "FQDNs)", "toFQDNs")
    if el.authentication is not None:
        yield Issue((*path, "authentication"), f"no authentication in {section} (deny rules "
                    "have no authentication mode)", "authentication")
    for j, pr in enumerate(el.to_ports or ()):
        for wire, attr in _DENY_FORBIDDEN_PORT_FIELDS:
            if getattr(pr, attr) is not None:
                yield Issue((*path, "toPorts", j, wire), f"only ports in {section} toPorts (deny "
                            "rules have no L7 rules, TLS or listener)", f"{wire} in {section}")


def _port_rule(pr: PortRuleSpec, path: FieldPath, *, ingress: bool, deny: bool, host: bool,
               section: str) -> Iterator[Issue]:
    yield from _ports(pr, path)
    if deny:
        return  # `_deny_only_fields` already rejected every L7 field
    rules = pr.rules
    has_l7 = rules is not None and not rules.is_empty
    dns = rules.dns if rules is not None else None
    if ingress and dns:
        yield Issue((*path, "rules", "dns"), "DNS rules only on egress (DNS rules are not allowed "
                    "on ingress)", f"{len(dns)} DNS rule(s) in {section}")
    if pr.server_names and has_l7 and pr.terminating_tls is None:
        yield Issue((*path, "serverNames"), "terminatingTLS when serverNames are combined with L7 "
                    "rules (ServerNames are not allowed with L7 rules without TLS termination)",
                    "serverNames and rules without terminatingTLS")
    if pr.listener is not None:
        name = brief(pr.listener.name)
        if ingress:
            yield Issue((*path, "listener"), "a listener only on egress (Listener is not allowed "
                        "on ingress)", f"listener {name} in {section}")
        if has_l7:
            yield Issue((*path, "listener"), "a listener without L7 rules (Listener is not "
                        "allowed with L7 rules)", f"listener {name} and rules")
    if rules is not None and has_l7:
        yield from _l7(pr, path, host=host, ingress=ingress)


def _ports(pr: PortRuleSpec, path: FieldPath) -> Iterator[Issue]:
    rules = pr.rules
    has_l7 = rules is not None and not rules.is_empty
    has_dns = rules is not None and bool(rules.dns)
    for k, pp in enumerate(pr.ports or ()):
        here = (*path, "ports", k)
        if pp.port is None and pp.protocol not in ("VRRP", "IGMP"):
            yield Issue((*here, "port"), "a port: 0-65535 or an IANA service name (port must be "
                        "specified)", "nothing")
        if pp.protocol in ("VRRP", "IGMP") and pp.port not in (None, "0"):
            yield Issue((*here, "port"), f"port 0 or no port for protocol {pp.protocol}",
                        brief(pp.port))
        if has_l7 and pp.port == "0":
            yield Issue((*here, "port"), "a non-zero port when L7 rules are present (L7 rules can "
                        "not be used when a port is 0)", '"0"')
        if has_l7 and not has_dns and pp.protocol != "TCP":
            yield Issue((*here, "protocol"), f"TCP (L7 rules can only apply to TCP (not "
                        f"{pp.protocol}) except for DNS rules)", pp.protocol)
        if has_dns and pp.port is not None and pp.port.isdigit() and pp.end_port > int(pp.port):
            yield Issue((*here, "endPort"), "a single port with DNS rules (DNS rules do not "
                        "support port ranges)", str(pp.end_port))


def _l7(pr: PortRuleSpec, path: FieldPath, *, host: bool, ingress: bool) -> Iterator[Issue]:
    rules = pr.rules
    assert rules is not None
    members = rules.members()
    if len(members) > 1:
        yield Issue((*path, "rules", members[1]), "one L7 protocol per toPorts entry (multiple L7 "
                    "protocol rule types specified in single rule)", " and ".join(members))
    if rules.dns is not None and not pr.ports:
        yield Issue((*path, "rules", "dns"), "an explicit port such as 53 for DNS rules (Port 53 "
                    "must be specified for DNS rules)", "no ports")
    if rules.l7 is not None and not rules.l7proto:
        yield Issue((*path, "rules", "l7"), "l7proto together with l7 ('l7' may only be "
                    "specified when a 'l7proto' is also specified)", "l7 without l7proto")
    for k, f in enumerate(rules.dns or ()):
        yield from _fqdn(f, (*path, "rules", "dns", k))
    if host and ingress:
        yield Issue((*path, "rules"), "no L7 rules on host (nodeSelector) ingress (host policies "
                    "do not support L7 rules yet)", " and ".join(members) or "rules")
    elif host and any(m != "dns" for m in members):
        yield Issue((*path, "rules"), "only DNS L7 rules on host (nodeSelector) egress",
                    " and ".join(members))


def _cidr_rule(c: CIDRRuleSpec, path: FieldPath) -> Iterator[Issue]:
    present = [wire for wire, value in (("cidr", c.cidr), ("cidrGroupRef", c.cidr_group_ref),
                                        ("cidrGroupSelector", c.cidr_group_selector))
               if value is not None]
    if len(present) != 1:
        where = (*path, present[1]) if len(present) > 1 else path
        yield Issue(where, "exactly one of cidr, cidrGroupRef or cidrGroupSelector",
                    " and ".join(present) or "none of them")
    if not (c.except_ and c.cidr):
        return
    outer = parse_prefix(c.cidr, allow_address=False)
    for k, text in enumerate(c.except_):
        inner = parse_prefix(text, allow_address=False)
        if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
            yield Issue((*path, "except", k), f"a prefix inside {c.cidr} of the same family "
                        f"(allow CIDR prefix {c.cidr} does not contain exclude CIDR prefix "
                        f"{text})", brief(text))


def _fqdn(f: FQDNSelectorSpec, path: FieldPath) -> Iterator[Issue]:
    if f.match_name and f.match_pattern:
        yield Issue((*path, "matchPattern"), "only one of matchName or matchPattern",
                    "both matchName and matchPattern")
    elif not f.match_name and not f.match_pattern:
        yield Issue(path, "one of matchName or matchPattern (non-empty)", "neither")


def _service(s: ServiceSpec, path: FieldPath) -> Iterator[Issue]:
    if s.k8s_service is not None and s.k8s_service_selector is not None:
        yield Issue((*path, "k8sServiceSelector"), "only one of k8sService or k8sServiceSelector",
                    "both")
    elif s.k8s_service is None and s.k8s_service_selector is None:
        yield Issue(path, "one of k8sService or k8sServiceSelector", "neither")
