"""`netstrata policy trace` and `netstrata policy get`: explain a verdict, show a MapState."""

from __future__ import annotations

import argparse

from netstrata.cli._output import table
from netstrata.errors import NetstrataError


def register(psub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tr = psub.add_parser("trace", help="explain the verdict for one flow, rule by rule")
    tr.add_argument("--manifests", nargs="+", required=True, help="files or directories (or -)")
    tr.add_argument("--from", dest="src", required=True, help="NS/POD or a workload name")
    tr.add_argument("--to", dest="dst", required=True, help="NS/POD, cidr:IP, fqdn:NAME or ip:IP")
    tr.add_argument("--port", required=True, help="PORT/PROTO, e.g. 80/TCP, 53/UDP, 8/ICMP (type)")
    tr.add_argument("--http-method")
    tr.add_argument("--http-path")
    tr.add_argument("--http-host")
    tr.add_argument("--http-header", action="append", default=[], help="Name: value")
    tr.add_argument("--dns-query")
    tr.add_argument("--kafka-api-key", type=int)
    tr.add_argument("--kafka-topic", action="append", default=[])
    _agent_flags(tr)
    tr.set_defaults(func=cmd_trace)

    get = psub.add_parser("get", help="the resolved policy map of an endpoint (like `cilium bpf policy get`)")
    get.add_argument("--manifests", nargs="+", required=True)
    get.add_argument("--endpoint", required=True, help="NS/POD")
    _agent_flags(get)
    get.set_defaults(func=cmd_get)


def _agent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--enable-policy", choices=["default", "always", "never"], default="default",
                   help="policy enforcement mode, as Cilium's agent option (default: default)")
    p.add_argument("--policy-audit-mode", action="store_true",
                   help="report would-be L3/L4 drops as AUDIT and forward them")
    p.add_argument("--cluster-name", default="default")
    p.add_argument("--no-allow-localhost", action="store_true",
                   help="do not implicitly allow ingress from the local host")


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from netstrata.policy.resolve import PolicyConfig

    return PolicyConfig(cluster=args.cluster_name, enforcement=args.enable_policy,
                        audit_mode=args.policy_audit_mode, allow_localhost=not args.no_allow_localhost)


def _find(lab, ref: str):  # type: ignore[no-untyped-def]
    topo = lab.topology
    if ref in topo.workloads:
        return topo.workloads[ref]
    for p in topo.workloads.values():
        if p.workload.name == ref or f"{p.workload.namespace}/{p.workload.name}" == ref:
            return p
    raise NetstrataError(f"no workload {ref!r} in the manifests (known: {', '.join(sorted(topo.workloads))})")


def _request(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from netstrata.lab.simulate import Request
    from netstrata.policy.l7 import HTTPRequest, KafkaRequest
    from netstrata.policy.types import Proto

    try:
        port_s, _, proto_s = args.port.partition("/")
        proto = Proto[(proto_s or "TCP").upper()]
        port = int(port_s)
    except (KeyError, ValueError) as exc:
        raise NetstrataError(f"--port: expected PORT/PROTO like 80/TCP, found {args.port!r}") from exc
    if proto in (Proto.ICMP, Proto.ICMPV6):
        return Request(int(proto), port << 8)
    if args.http_method or args.http_path:
        headers = tuple((h.split(":", 1)[0].strip(), h.split(":", 1)[1].strip()) for h in args.http_header if ":" in h)
        return Request(int(proto), port, "http",
                       HTTPRequest(args.http_method or "GET", args.http_path or "/", args.http_host, headers))
    if args.dns_query:
        return Request(int(proto), port, "dns", args.dns_query.rstrip(".").lower() + ".")
    if args.kafka_api_key is not None:
        return Request(int(proto), port, "kafka", KafkaRequest(args.kafka_api_key, 0, None, tuple(args.kafka_topic)))
    return Request(int(proto), port)


def cmd_trace(args: argparse.Namespace) -> int:
    from netstrata.lab.from_manifests import lab_from_manifests

    lab = lab_from_manifests(args.manifests, _config(args))
    src = _find(lab, args.src)
    kind, _, value = args.dst.partition(":")
    if kind in ("cidr", "ip"):
        dst_ip = value.split("/")[0]
    elif kind == "fqdn":
        ips = lab.topology.dns_records.get(value.rstrip("."), ())
        ext = [p for p in lab.topology.workloads.values() if (p.workload.fqdn or "").rstrip(".") == value.rstrip(".")]
        if not ips and not ext:
            raise NetstrataError(f"--to fqdn:{value}: no external workload with that fqdn in the manifests")
        dst_ip = ips[0] if ips else ext[0].ip
    else:
        dst_ip = _find(lab, args.dst).ip
    req = _request(args)
    out = lab.walk(src, dst_ip, req)
    print(f"Tracing {args.src} -> {args.dst} {args.port}")
    for direction, subject in (("egress", src), ("ingress", lab.topology.owner_of_ip(dst_ip))):
        if subject is None:
            continue
        pol = lab.endpoint_policy(subject)
        ident = lab.identity_of.get(subject.ref)
        if pol is None:
            print(f"\n{direction} of {subject.ref}: not a policy endpoint")
            continue
        enforced = pol.ingress_enforced if direction == "ingress" else pol.egress_enforced
        print(f"\n{direction} of {subject.ref} (identity {ident}): "
              + ("enforced" if enforced else "not enforced (no policy selects it in this direction)"))
        rules = sorted({s for k, srcs in pol.sources.items() if k.direction.name.lower() == direction for s in srcs})
        for r in rules:
            print(f"  considered: {r}")
    print("\nDecisions:")
    for st in out.steps:
        mark = "ALLOW" if st.allowed else "DENY "
        extra = " (audited)" if st.audited else ""
        print(f"  [{st.layer:4} {st.direction:7}] {mark}{extra} {st.detail}; rule: {st.rule or 'none matched'}"
              + (f"; drop reason {st.drop_reason}" if st.drop_reason else ""))
    print(f"\nVerdict: {out.got}" + (f" at {out.direction}" if out.direction and out.got != 'allowed' else "")
          + (f" ({out.drop_reason})" if out.drop_reason else "") + (" via the L7 proxy" if out.proxied else ""))
    return 0 if out.got in ("allowed", "audited") else 1


def cmd_get(args: argparse.Namespace) -> int:
    from netstrata.lab.from_manifests import lab_from_manifests

    lab = lab_from_manifests(args.manifests, _config(args))
    p = _find(lab, args.endpoint)
    pol = lab.endpoint_policy(p)
    if pol is None:
        raise NetstrataError(f"{args.endpoint} is not a policy endpoint")
    rows = []
    for key, entry in pol.entries.items():
        proto = {0: "ANY", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}.get(key.proto, str(key.proto))
        if key.proto in (1, 58):
            port = f"type {key.port >> 8}"
        elif key.port_prefix == 0:
            port = "ANY"
        elif key.port_prefix == 16:
            port = str(key.port)
        else:
            port = f"{key.port}-{key.port + (1 << (16 - key.port_prefix)) - 1}"
        action = "Deny" if entry.deny else ("Redirect" if entry.proxy_port else "Allow")
        rows.append((key.direction.name.capitalize(), "ANY" if key.identity == 0 else key.identity,
                     proto, port, action, entry.proxy_port or "", entry.precedence,
                     "; ".join(pol.sources.get(key, ()))))
    print(table(rows, ["DIRECTION", "IDENTITY", "PROTO", "PORT", "ACTION", "PROXY", "PREC", "DERIVED FROM"]))
    return 0
