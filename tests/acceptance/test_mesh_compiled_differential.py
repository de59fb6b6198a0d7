"""Differential test: the compiled, cached, path-indexed evaluator (`mesh.evaluate`) decides
exactly as the straightforward one (`evaluate_uncompiled`: select, compile and scan every rule
per request) on random requests against the policies of the shared istio-authz cases.

Requests start from a case's own request (so its tokens, workload and peer stay realistic)
and get a path, method, host, port, source address, extra headers and peer drawn from values
the suite's policies mention, mangled a little (prefixes, suffixes, wildcards filled in).
Whole decisions are compared: outcome, deciding rule, audit, dry-run, statuses, explanation.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netstrata.api.istio import AuthorizationPolicy
from netstrata.mesh import MeshRequest, Peer
from netstrata.mesh.authz import evaluate, evaluate_uncompiled
from netstrata.mesh.casefile import DEFAULT_NOW, MeshCase, load_cases


@pytest.fixture(scope="module")
def cases(acceptance):
    return load_cases(acceptance / "istio-authz" / "cases.yaml")


def _fill(value: str) -> list[str]:
    """Concrete strings near a policy value: wildcards filled, a prefix and a suffix added."""
    filled = value.replace("{**}", "a/b").replace("{*}", "seg").replace("*", "x")
    return [filled, filled + "/more", "/pre" + filled, filled[:-1] or "/", value]


@pytest.fixture(scope="module")
def pools(cases):
    paths, hosts, methods, principals, ips = (
        {"/", "/a/../b", "//x", "/%2Fx"},
        set(),
        set(),
        set(),
        set(),
    )
    for case in cases:
        for obj in case.objects:
            if not isinstance(obj, AuthorizationPolicy):
                continue
            for rule in obj.rules:
                for op in (t for t in rule.to):
                    for v in (*op.paths, *op.not_paths):
                        paths.update(_fill(v))
                    hosts.update(h.replace("*", "x") for h in (*op.hosts, *op.not_hosts))
                    methods.update(m.replace("*", "X") for m in (*op.methods, *op.not_methods))
                for src in rule.from_:
                    principals.update(
                        p.replace("*", "x") for p in (*src.principals, *src.not_principals)
                    )
                    ips.update(b.split("/")[0] for b in (*src.ip_blocks, *src.remote_ip_blocks))
        if case.peer.principal:
            principals.add(case.peer.principal)
    own = {
        c.id: sorted(
            {
                f
                for o in c.objects
                if isinstance(o, AuthorizationPolicy)
                for r in o.rules
                for op in r.to
                for v in (*op.paths, *op.not_paths)
                for f in _fill(v)
            }
            or {"/"}
        )
        for c in cases
    }
    return {"own_paths": own} | {
        k: sorted(v)
        for k, v in (
            ("paths", paths),
            ("hosts", hosts | {"x"}),
            ("methods", methods | {"GET", "POST"}),
            ("principals", principals | {"cluster.local/ns/a/sa/b"}),
            ("ips", ips | {"10.0.0.1"}),
        )
    }


def _run(fn, case: MeshCase, request: MeshRequest, peer: Peer):
    return fn(
        case.objects,
        request,
        peer,
        case.mesh,
        now=DEFAULT_NOW,
        ext_authz=lambda p, _r: case.ext_authz.get(p.name),
        jwks_fetcher=lambda uri: case.jwks_by_uri.get(uri, case.default_jwks),
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_compiled_evaluation_equals_the_plain_one(cases, pools, data):
    case = data.draw(st.sampled_from(cases), label="case")
    req = case.request
    ports = [p.port for p in req.workload.ports] or [req.destination_port]
    maybe = lambda pool: st.one_of(st.none(), st.sampled_from(pool))  # noqa: E731
    path = data.draw(
        st.one_of(maybe(pools["paths"]), st.sampled_from(pools["own_paths"][case.id])), label="path"
    )
    host, method = (data.draw(maybe(pools[k])) for k in ("hosts", "methods"))
    port = data.draw(st.sampled_from([*ports, req.destination_port]), label="port")
    ip = data.draw(maybe(pools["ips"]), label="ip")
    xff = data.draw(maybe(pools["ips"]), label="xff")
    request = dataclasses.replace(
        req,
        path=path or req.path,
        host=host or req.host,
        method=method or req.method,
        destination_port=port,
        source_ip=ip or req.source_ip,
        headers=req.headers + ((("x-forwarded-for", xff),) if xff else ()),
    )
    principal = data.draw(maybe(pools["principals"]), label="principal")
    peer = (
        Peer(True, principal, case.peer.sni)
        if principal
        else (Peer(False, None, case.peer.sni) if data.draw(st.booleans()) else case.peer)
    )
    want = _run(evaluate_uncompiled, case, request, peer)
    assert _run(evaluate, case, request, peer) == want
    assert _run(evaluate, case, request, peer) == want  # again, from the cache
