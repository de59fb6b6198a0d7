"""PeerAuthentication at connection time: may this connection reach the workload, and what
does authorization learn about its peer?

The mode comes from `mesh.selection.mtls_mode` (Istio's `ComposePeerAuthentication`: mesh-wide
in the root namespace, then namespace-wide, then a selector in the workload's namespace, each
overriding the one before unless UNSET, and `portLevelMtls` of the workload-level policy last;
PERMISSIVE when nothing is set). What each mode does with the two ways a connection arrives at
the destination node proxy (reference istio-authz-semantics §14):

    mode        mTLS tunnel                          plaintext
    STRICT      accepted, principal known            refused (connection closed)
    PERMISSIVE  accepted, principal known            accepted, no principal
    DISABLE     accepted, principal dropped          accepted, no principal

DISABLE keeps tunnelled connections working (a sidecar under DISABLE simply does not terminate
mTLS, and its clients fall back to plaintext; our source proxy always tunnels) but, as in the
evaluator's own connection step, the peer then carries no identity, so `principals` rules do
not match. Pure; the tunnel adapter calls it once per connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from netstrata.api.istio import IstioObject, MTLSMode
from netstrata.mesh.selection import mtls_mode
from netstrata.mesh.types import MeshConfig, Peer, Workload

REFUSED_STRICT: Final = "mtls:strict"
"""`decided_by` of a plaintext connection refused under STRICT (as the evaluator names it)."""


@dataclass(frozen=True, slots=True)
class PeerAuthDecision:
    """Whether a connection is admitted, and the peer authorization will see."""

    accepted: bool
    mode: MTLSMode
    source: str
    """Where the mode came from: `default`, `mesh ns/name`, `namespace ...`, `workload ...`,
    `port <p> of ns/name`."""
    peer: Peer
    """The peer handed to `mesh.evaluate` (identity removed under DISABLE)."""
    reason: str
    """One line for logs and flow records."""


def decide_peer_authentication(
    objects: Iterable[IstioObject],
    workload: Workload,
    port: int,
    peer: Peer,
    mesh: MeshConfig | None = None,
) -> PeerAuthDecision:
    """Admit or refuse one connection to `workload` on target port `port`.

    Args:
        objects: every Istio object known (PeerAuthentication is picked out here).
        workload: the destination workload.
        port: the workload (target) port the connection is for.
        peer: what the handshake proved; `Peer(mtls=False)` for plaintext.
        mesh: meshConfig (root namespace); Istio's defaults when None.
    """
    resolution = mtls_mode(objects, workload, port, mesh or MeshConfig())
    mode, source = resolution.mode, resolution.source
    if not peer.mtls:
        if mode == "STRICT":
            return PeerAuthDecision(
                False, mode, source, peer, f"plaintext refused: STRICT mTLS ({source})"
            )
        return PeerAuthDecision(True, mode, source, peer, f"plaintext accepted: {mode} ({source})")
    if mode == "DISABLE":
        return PeerAuthDecision(
            True,
            mode,
            source,
            Peer(False, None, peer.sni),
            f"mTLS peer {peer.principal} treated as plaintext: DISABLE ({source})",
        )
    return PeerAuthDecision(
        True, mode, source, peer, f"mTLS peer {peer.principal}: {mode} ({source})"
    )


__all__ = ["REFUSED_STRICT", "PeerAuthDecision", "decide_peer_authentication"]
