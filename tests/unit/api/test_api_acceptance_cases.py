"""Every policy manifest in the shared acceptance suites parses; the one scenario whose
`expect_apply.result` is `rejected` is rejected with the expected error text."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from apitestkit import shared_acceptance

from netstrata.api import parse_documents
from netstrata.api._yaml import Located
from netstrata.errors import ManifestError

ACCEPTANCE = shared_acceptance()
pytestmark = pytest.mark.skipif(ACCEPTANCE is None, reason="shared acceptance cases not found "
                                "(a shared/ folder beside the checkout, or NETSTRATA_SHARED)")
HAVE_ISTIO = importlib.util.find_spec("netstrata.api.istio") is not None
_IPBLOCK = re.compile(r"\{([a-z])/([a-z])\}/(\d+)")


def _cases(suite: str) -> list[dict[str, Any]]:
    if ACCEPTANCE is None:
        return []
    return yaml.safe_load((ACCEPTANCE / suite / "cases.yaml").read_text(encoding="utf-8"))


def _pod_ip(ns: str, pod: str) -> str:
    return f"10.{ord(ns) - ord('a')}.{ord(pod) - ord('a')}.7"


def _substitute(obj: Any) -> Any:
    """k8s-netpol writes ipBlocks as `{ns/pod}/N`: that pod's IP masked to N bits, canonical."""
    if isinstance(obj, dict):
        return {k: _substitute(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v) for v in obj]
    m = _IPBLOCK.fullmatch(obj) if isinstance(obj, str) else None
    if m:
        ip = _pod_ip(m.group(1), m.group(2))
        return str(ipaddress.ip_network(f"{ip}/{m.group(3)}", strict=False))
    return obj


def _docs(manifests: list[dict[str, Any]], source: str) -> list[Located]:
    """Round-trip through YAML text so problems carry lines, as from a file."""
    from netstrata.api._yaml import load_documents

    return load_documents(yaml.safe_dump_all(manifests, sort_keys=False), source)


K8S = _cases("k8s-netpol")
SCENARIOS = _cases("scenarios")


@pytest.mark.parametrize("case", K8S, ids=[str(c["id"]) for c in K8S])
def test_k8s_netpol_manifests_parse(case: dict[str, Any]) -> None:
    manifests = list(case.get("policies") or [])
    for step in case.get("steps") or []:
        manifests += step.get("apply_policies") or []
    ms = parse_documents(_docs(_substitute(manifests), case["id"]))
    assert len(ms.network_policies) == len(manifests)
    for pol, raw in zip(ms.network_policies, manifests, strict=True):
        assert (pol.namespace, pol.name) == (raw["metadata"]["namespace"], raw["metadata"]["name"])


def _kinds(manifests: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(m.get("kind")) for m in manifests)


@pytest.mark.parametrize("case", SCENARIOS, ids=[str(c["name"]) for c in SCENARIOS])
def test_scenario_manifests_parse(case: dict[str, Any]) -> None:
    manifests = [m for m in case.get("policies") or []
                 if HAVE_ISTIO or not str(m.get("apiVersion", "")).startswith("security.istio.io/")]
    expect = case.get("expect_apply") or {}
    if expect.get("result") == "rejected":
        with pytest.raises(ManifestError) as info:
            parse_documents(_docs(manifests, case["name"]))
        assert expect["error"] in str(info.value)
        return
    ms = parse_documents(_docs(manifests, case["name"]))
    kinds = _kinds(manifests)
    assert len(ms.cilium_policies) == kinds["CiliumNetworkPolicy"] + kinds[
        "CiliumClusterwideNetworkPolicy"]
    assert len(ms.network_policies) == kinds["NetworkPolicy"]
    assert len(ms.cidr_groups) == kinds["CiliumCIDRGroup"]


def test_the_rejected_scenario_exists() -> None:
    rejected = [c for c in SCENARIOS if (c.get("expect_apply") or {}).get("result") == "rejected"]
    assert rejected, "the scenarios suite should hold at least one rejected manifest"


def test_cases_were_found() -> None:
    assert isinstance(ACCEPTANCE, Path) and K8S and SCENARIOS
