"""Helpers for the lab tests: the shared acceptance cases, reference/kernel comparison."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from netstrata.lab.preflight import kernel_lab_missing

ROOT = Path(__file__).resolve().parents[2]

SERVER_CLIENT_OTHER = """
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: server, namespace: default, labels: {app: server}}
spec: {node: node-1, ports: [{port: 8080, protocol: TCP, name: http}]}
---
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {node: node-1}
---
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: other, namespace: default, labels: {app: other}}
spec: {node: node-1}
"""
"""Three pods on one node: `server` serves 8080/TCP, `client` and `other` call it."""

SERVER_ADMITS_CLIENT = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
"""
"""`server` admits `client` on 8080/TCP only, so `other` is dropped."""


@contextmanager
def running_lab(topology: Path, files: Mapping[str, str], prefix: str) -> Iterator[Any]:
    """`netstrata lab up` of `files` written into `topology`, torn down afterwards; skips with
    the reason where no kernel lab can run (module-scoped fixtures run before conftest's
    autouse skip, so they must ask themselves)."""
    missing = kernel_lab_missing()
    if missing:
        pytest.skip(missing)
    from netstrata.lab.control import lab_down, lab_up

    for name, text in files.items():
        (topology / name).write_text(text)
    lab = f"{prefix}{secrets.token_hex(3)}"
    try:
        yield lab_up(topology, name=lab)
    finally:
        lab_down(lab)


def acceptance_dir() -> Path:
    """`shared/acceptance` beside the checkout (or inside it, or $NETSTRATA_SHARED)."""
    env = os.environ.get("NETSTRATA_SHARED")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared", ROOT / "shared"]:
        if (cand / "acceptance").is_dir():
            return cand / "acceptance"
    pytest.skip(
        "shared acceptance cases not found (a shared/ folder beside the checkout, "
        "or NETSTRATA_SHARED)"
    )
    raise AssertionError  # unreachable


def paired(reference: dict[str, Any], kernel: dict[str, Any]):  # type: ignore[no-untyped-def]
    """(case id, reference probe, kernel probe) for every probe of every case, in order."""
    assert [c["id"] for c in reference["cases"]] == [c["id"] for c in kernel["cases"]]
    for rc, kc in zip(reference["cases"], kernel["cases"], strict=True):
        assert len(rc["probes"]) == len(kc["probes"]), rc["id"]
        for rp, kp in zip(rc["probes"], kc["probes"], strict=True):
            assert (rp["from"], rp["to"], rp["port"]) == (kp["from"], kp["to"], kp["port"])
            yield rc["id"], rp, kp


def verdict(p: dict[str, Any]) -> tuple[Any, ...]:
    """What both runs must agree on: the verdict, and for a drop its side and reason."""
    return (p["got"], p.get("direction"), p.get("drop_reason"))



