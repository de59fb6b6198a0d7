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
    mesh = tr.add_argument_group("mesh (Istio) layer")
    mesh.add_argument("--jwt", help="a token to send as `Authorization: Bearer` (checked against "
                      "the RequestAuthentication's JWKS)")
    mesh.add_argument("--request-principal", metavar="ISSUER/SUBJECT",
                      help="trace as if a valid token of ISSUER for SUBJECT were sent (the issuer's "
                      "keys are replaced by a throw-away key; claims, issuer and audiences are still judged)")
    mesh.add_argument("--jwt-claim", action="append", default=[], metavar="NAME=VALUE",
                      help="an extra claim of the --request-principal token (VALUE as JSON, else text)")
    mesh.add_argument("--trust-domain", default="cluster.local",
                      help="meshConfig trustDomain (with several clusters each cluster's CA issues in "
                      "its own name; default: cluster.local)")
    mesh.add_argument("--trust-domain-alias", action="append", default=[], help="meshConfig trustDomainAliases")
    mesh.add_argument("--mesh-root-namespace", default="istio-system")
    tr.add_argument("-o", "--output", choices=["text", "json"], default="text")
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


def _request(args: argparse.Namespace, token: str | None = None):  # type: ignore[no-untyped-def]
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
    if args.http_method or args.http_path or args.jwt or args.request_principal:
        headers = [(h.split(":", 1)[0].strip(), h.split(":", 1)[1].strip()) for h in args.http_header if ":" in h]
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        return Request(int(proto), port, "http",
                       HTTPRequest(args.http_method or "GET", args.http_path or "/", args.http_host,
                                   tuple(headers)))
    if args.dns_query:
        return Request(int(proto), port, "dns", args.dns_query.rstrip(".").lower() + ".")
    if args.kafka_api_key is not None:
        return Request(int(proto), port, "kafka", KafkaRequest(args.kafka_api_key, 0, None, tuple(args.kafka_topic)))
    return Request(int(proto), port)


def _claims(args: argparse.Namespace) -> dict[str, object]:
    import json

    issuer, _, subject = str(args.request_principal).rpartition("/")
    if not issuer or not subject:
        raise NetstrataError(f"--request-principal: expected ISSUER/SUBJECT, found {args.request_principal!r}")
    claims: dict[str, object] = {"iss": issuer, "sub": subject}
    for item in args.jwt_claim:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise NetstrataError(f"--jwt-claim: expected NAME=VALUE, found {item!r}")
        try:
            claims[name] = json.loads(value)
        except ValueError:
            claims[name] = value
    return claims


def _mesh_setup(args: argparse.Namespace, lab) -> str | None:  # type: ignore[no-untyped-def]
    """Mesh settings from the flags; returns the token to send, if any. The clock is read here,
    at the edge: the evaluator takes `now` (JWT exp/nbf)."""
    import time

    from netstrata.mesh.trace import assume_issuer
    from netstrata.mesh.types import MeshConfig

    if args.jwt_claim and not args.request_principal:
        raise NetstrataError("--jwt-claim needs --request-principal")
    if args.jwt and args.request_principal:
        raise NetstrataError("--jwt and --request-principal exclude each other")
    now = time.time()
    lab.mesh.now = now
    lab.mesh.config = MeshConfig(root_namespace=args.mesh_root_namespace, trust_domain=args.trust_domain,
                                 trust_domain_aliases=tuple(args.trust_domain_alias))
    if not args.request_principal:
        return str(args.jwt) if args.jwt else None
    claims = _claims(args)
    token = ""
    for cluster, objects in lab.mesh.objects.items():
        lab.mesh.objects[cluster], token = assume_issuer(objects, str(claims["iss"]), claims, now=now)
    return token


def cmd_trace(args: argparse.Namespace) -> int:
    from netstrata.cli._output import dump_json
    from netstrata.cli.trace_report import render_text, trace_report
    from netstrata.lab.from_manifests import lab_from_manifests

    lab = lab_from_manifests(args.manifests, _config(args))
    token = _mesh_setup(args, lab)
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
    req = _request(args, token)
    out = lab.walk(src, dst_ip, req)
    report = trace_report(lab, src, args.dst, dst_ip, args.port, req, out)
    print(dump_json(report) if args.output == "json" else render_text(report))
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
