"""PeerAuthentication at connection time: STRICT / PERMISSIVE / DISABLE, scopes and ports."""

from __future__ import annotations

import pytest
from meshtestkit import PLAINTEXT, mtls, objects, workload

from netstrata.mesh.peerauth import decide_peer_authentication


def pa(ns: str, name: str, spec: str) -> str:
    return (
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n"
        f"  name: {name}\n  namespace: {ns}\nspec:\n{spec}\n---\n"
    )


MESH_STRICT = pa("istio-system", "default", "  mtls: {mode: STRICT}")
NS_PERMISSIVE = pa("foo", "ns", "  mtls: {mode: PERMISSIVE}")
WL_DISABLE_PORT = pa(
    "foo",
    "wl",
    "  selector: {matchLabels: {app: httpbin}}\n"
    "  mtls: {mode: STRICT}\n  portLevelMtls:\n    9090: {mode: PERMISSIVE}",
)
WL = workload(ports=((8000, "http"), (9090, "http")))


@pytest.mark.parametrize(
    "docs,port,peer,accepted,mode",
    [
        ("", 8000, PLAINTEXT, True, "PERMISSIVE"),  # nothing set: PERMISSIVE
        (MESH_STRICT, 8000, PLAINTEXT, False, "STRICT"),
        (MESH_STRICT, 8000, mtls(), True, "STRICT"),
        (MESH_STRICT + NS_PERMISSIVE, 8000, PLAINTEXT, True, "PERMISSIVE"),  # namespace overrides
        (NS_PERMISSIVE + WL_DISABLE_PORT, 8000, PLAINTEXT, False, "STRICT"),  # workload overrides
        (NS_PERMISSIVE + WL_DISABLE_PORT, 9090, PLAINTEXT, True, "PERMISSIVE"),  # port overrides
    ],
)
def test_mode_and_admission(docs, port, peer, accepted, mode) -> None:
    got = decide_peer_authentication(objects(docs) if docs else [], WL, port, peer)
    assert (got.accepted, got.mode) == (accepted, mode), got.reason


def test_disable_keeps_the_tunnel_but_drops_the_identity() -> None:
    docs = objects(pa("foo", "disabled", "  mtls: {mode: DISABLE}"))
    got = decide_peer_authentication(docs, WL, 8000, mtls())
    assert got.accepted and not got.peer.mtls and got.peer.principal is None
    assert decide_peer_authentication(docs, WL, 8000, PLAINTEXT).accepted


def test_root_namespace_policy_with_selector_is_ignored() -> None:
    docs = objects(
        pa(
            "istio-system",
            "sel",
            "  selector: {matchLabels: {app: httpbin}}\n  mtls: {mode: STRICT}",
        )
    )
    assert decide_peer_authentication(docs, WL, 8000, PLAINTEXT).accepted
