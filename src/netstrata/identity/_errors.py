"""The identity package's one error type."""

from __future__ import annotations

from netstrata.errors import NetstrataError


class IdentityAllocationError(NetstrataError):
    """No identity can be allocated: the range is exhausted or the store stays contended.

    The message names the range and the cluster, so an operator can act (release identities,
    reduce identity-relevant labels, check the cluster id).
    """
