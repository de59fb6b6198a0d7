"""Loading manifests: YAML documents in, checked `api.types` objects out, or one ManifestError.

Each document is dispatched on `apiVersion` + `kind` (`kind: List` is expanded item by item),
checked against its schema and structural rules, and converted. Every problem in every document
is collected and raised together, sorted by file and line; when there is any, nothing is
returned, so a caller never applies half of a change (STYLE.md "Errors a user can act on").

Istio kinds (`security.istio.io/*`) are handed to `netstrata.api.istio.parse_istio_document`
when that module exists, and kept as plain mappings otherwise.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from netstrata.api import _convert as convert
from netstrata.api import types as t
from netstrata.api._cilium_checks import check_rule
from netstrata.api._cilium_schema import CIDRGroupDoc, CiliumPolicyDoc, RuleSpec
from netstrata.api._k8s_checks import check_network_policy, check_workload
from netstrata.api._k8s_schema import (
    NamespaceDoc,
    NetworkPolicyDoc,
    PodDoc,
    ServiceDoc,
    WorkloadDoc,
)
from netstrata.api._problems import Collector
from netstrata.api._yaml import FieldPath, Located, brief, iter_manifest_files, read_sources
from netstrata.errors import ManifestError, ManifestProblem


@dataclass(frozen=True, slots=True)
class ManifestSet:
    """Everything one load produced, by kind, in input order."""

    cilium_policies: tuple[t.CiliumPolicy, ...] = ()
    network_policies: tuple[t.NetworkPolicy, ...] = ()
    namespaces: tuple[t.Namespace, ...] = ()
    workloads: tuple[t.Workload, ...] = ()
    """Pods and compact `netstrata.io/v1alpha1` Workload entries."""
    services: tuple[t.Service, ...] = ()
    cidr_groups: tuple[t.CIDRGroup, ...] = ()
    istio: tuple[object, ...] = ()
    """Istio objects as `api.istio` parses them, or raw mappings when that module is absent."""


@dataclass
class _Builder:
    cilium_policies: list[t.CiliumPolicy] = field(default_factory=list)
    network_policies: list[t.NetworkPolicy] = field(default_factory=list)
    namespaces: list[t.Namespace] = field(default_factory=list)
    workloads: list[t.Workload] = field(default_factory=list)
    services: list[t.Service] = field(default_factory=list)
    cidr_groups: list[t.CIDRGroup] = field(default_factory=list)
    istio: list[object] = field(default_factory=list)

    def build(self) -> ManifestSet:
        return ManifestSet(
            tuple(self.cilium_policies), tuple(self.network_policies), tuple(self.namespaces),
            tuple(self.workloads), tuple(self.services), tuple(self.cidr_groups),
            tuple(self.istio),
        )


Handler = Callable[[Collector, dict[str, Any], _Builder], None]

ISTIO_GROUP: Final = "security.istio.io/"
ISTIO_MODULE: Final = "netstrata.api.istio"


# ---------------------------------------------------------------- per-kind handlers


def _cilium_rules(col: Collector, data: dict[str, Any], kind: str) -> list[tuple[int | None, RuleSpec]]:
    spec, specs = data.get("spec"), data.get("specs")
    rules: list[tuple[int | None, RuleSpec]] = []
    raw: list[tuple[int | None, Any]] = []
    if spec is not None:
        raw.append((None, spec))
    if specs is not None and not isinstance(specs, list):
        col.add(("specs",), "a list of rules", brief(specs))
    elif specs is not None:
        raw.extend(enumerate(specs))
    if not raw and isinstance(specs, list | None):
        col.add((), "at least one rule in spec or specs", "neither")
    for index, body in raw:
        where: FieldPath = ("spec",) if index is None else ("specs", index)
        rule = col.validate(RuleSpec, body, where)
        if rule is not None:
            col.extend(check_rule(rule, kind), where)
            rules.append((index, rule))
    return rules


def _cilium_policy(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    start = len(col.problems)
    doc = col.validate(CiliumPolicyDoc, data)
    kind = data["kind"]
    rules = _cilium_rules(col, data, kind)
    if doc is None or len(col.problems) > start:
        return
    namespace = doc.metadata.namespace if kind == "CiliumNetworkPolicy" else None
    converted = []
    for index, rule in rules:
        where: FieldPath = ("spec",) if index is None else ("specs", index)
        origin = t.RuleOrigin(kind, doc.metadata.name, namespace, index,
                              t.SourceRef(col.doc.source, col.line(where)))
        converted.append(convert.cilium_rule(rule, origin))
    out.cilium_policies.append(t.CiliumPolicy(
        kind, doc.metadata.name, namespace, tuple(converted),
        t.SourceRef(col.doc.source, col.line()),
    ))


def _network_policy(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    doc = col.validate(NetworkPolicyDoc, data)
    if doc is None:
        return
    issues = list(check_network_policy(doc.spec))
    col.extend(issues, ("spec",))
    if not issues:
        source = t.SourceRef(col.doc.source, col.line())
        out.network_policies.append(convert.network_policy(doc, source))


def _namespace(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    doc = col.validate(NamespaceDoc, data)
    if doc is not None:
        out.namespaces.append(convert.namespace(doc))


def _pod(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    doc = col.validate(PodDoc, data)
    if doc is not None:
        out.workloads.append(convert.pod(doc))


def _workload(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    doc = col.validate(WorkloadDoc, data)
    if doc is None:
        return
    issues = list(check_workload(doc))
    col.extend(issues)
    if not issues:
        out.workloads.append(convert.workload(doc))


def _service(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    doc = col.validate(ServiceDoc, data)
    if doc is not None:
        out.services.append(convert.service(doc))


def _cidr_group(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    doc = col.validate(CIDRGroupDoc, data)
    if doc is not None:
        out.cidr_groups.append(convert.cidr_group(doc))


_HANDLERS: Final[dict[tuple[str, str], Handler]] = {
    ("cilium.io/v2", "CiliumNetworkPolicy"): _cilium_policy,
    ("cilium.io/v2", "CiliumClusterwideNetworkPolicy"): _cilium_policy,
    ("cilium.io/v2alpha1", "CiliumCIDRGroup"): _cidr_group,
    ("cilium.io/v2", "CiliumCIDRGroup"): _cidr_group,
    ("networking.k8s.io/v1", "NetworkPolicy"): _network_policy,
    ("v1", "Namespace"): _namespace,
    ("v1", "Pod"): _pod,
    ("v1", "Service"): _service,
    ("netstrata.io/v1alpha1", "Workload"): _workload,
}

SUPPORTED_KINDS: Final = (
    "cilium.io/v2 CiliumNetworkPolicy, cilium.io/v2 CiliumClusterwideNetworkPolicy, "
    "cilium.io/v2alpha1 (or v2) CiliumCIDRGroup, networking.k8s.io/v1 NetworkPolicy, "
    "v1 Namespace, v1 Pod, v1 Service, v1 List, netstrata.io/v1alpha1 Workload, "
    "security.istio.io/* (Istio)"
)
"""What `parse_documents` accepts, as named in its error for anything else."""


# ---------------------------------------------------------------- dispatch


def _reroot(doc: Located, prefix: FieldPath) -> Located:
    """The sub-document at `prefix` as a Located of its own (marks re-keyed, lines kept)."""
    if not prefix:
        return doc
    n = len(prefix)
    marks = {p[n:]: m for p, m in doc.marks.items() if p[:n] == prefix}
    data: Any = doc.data
    for part in prefix:
        data = data[part]
    return Located(data, doc.source, marks)


def _istio(col: Collector, data: dict[str, Any], out: _Builder) -> None:
    try:
        module = importlib.import_module(ISTIO_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != ISTIO_MODULE:
            raise
        out.istio.append(data)
        return
    parse = getattr(module, "parse_istio_document", None)
    if parse is None:
        out.istio.append(data)
        return
    try:
        out.istio.append(parse(_reroot(col.doc, col.prefix)))
    except ManifestError as exc:
        col.problems.extend(exc.problems)


def _unsupported(col: Collector, api_version: str, kind: str) -> None:
    known_kinds = sorted({k for _, k in _HANDLERS} | {"List"})
    if kind in known_kinds:
        versions = sorted(v for v, k in _HANDLERS if k == kind) or ["v1"]
        col.add(("apiVersion",), f"apiVersion {' or '.join(versions)} for kind {kind}",
                brief(api_version))
        return
    found = f"{api_version} {kind}"
    close = difflib.get_close_matches(kind, known_kinds, n=1, cutoff=0.7)
    if close:
        found += f' (did you mean "{close[0]}"?)'
    col.add(("kind",), "a supported apiVersion and kind: " + SUPPORTED_KINDS, found)


def _type_of(col: Collector, data: dict[str, Any]) -> tuple[str, str] | None:
    api_version, kind = data.get("apiVersion"), data.get("kind")
    ok = True
    if not isinstance(api_version, str) or not api_version:
        col.add(("apiVersion",), "an apiVersion such as cilium.io/v2",
                "nothing" if api_version is None else brief(api_version))
        ok = False
    if not isinstance(kind, str) or not kind:
        col.add(("kind",), "a kind such as CiliumNetworkPolicy",
                "nothing" if kind is None else brief(kind))
        ok = False
    return (str(api_version), str(kind)) if ok else None


def _dispatch(doc: Located, data: Any, prefix: FieldPath, out: _Builder,
              problems: list[ManifestProblem]) -> None:
    col = Collector(doc, prefix)
    try:
        if not isinstance(data, dict):
            col.add((), "a Kubernetes object: a mapping with apiVersion and kind", brief(data))
            return
        typed = _type_of(col, data)
        if typed is None:
            return
        api_version, kind = typed
        if (api_version, kind) == ("v1", "List"):
            _list(col, data, out, problems)
        elif api_version.startswith(ISTIO_GROUP):
            _istio(col, data, out)
        elif (api_version, kind) in _HANDLERS:
            _HANDLERS[(api_version, kind)](col, data, out)
        else:
            _unsupported(col, api_version, kind)
    finally:
        problems.extend(col.problems)


def _list(col: Collector, data: dict[str, Any], out: _Builder,
          problems: list[ManifestProblem]) -> None:
    extra = sorted(str(k) for k in data if k not in ("apiVersion", "kind", "items", "metadata"))
    for key in extra:
        col.add((key,), "one of the fields apiVersion, kind, metadata, items",
                f'unknown field "{key}"')
    items = data.get("items")
    if not isinstance(items, list):
        col.add(("items",), "a list of objects", "nothing" if items is None else brief(items))
        return
    for i, item in enumerate(items):
        _dispatch(col.doc, item, (*col.prefix, "items", i), out, problems)


def parse_documents(docs: Sequence[Located]) -> ManifestSet:
    """Check and convert already-loaded YAML documents.

    Raises:
        ManifestError: every problem in every document, sorted by file and line; nothing is
            returned when there is any.
    """
    out = _Builder()
    problems: list[ManifestProblem] = []
    for doc in docs:
        if doc.data is None:
            continue  # an empty document (`---` at the end of a file), as kubectl skips it
        _dispatch(doc, doc.data, (), out, problems)
    if problems:
        raise ManifestError(problems)
    return out.build()


def _name(target: str | Path) -> str:
    return "<stdin>" if str(target) == "-" else str(target)


def load_manifests(paths: Sequence[str | Path]) -> ManifestSet:
    """Load files, directories (recursively: `*.yaml`, `*.yml`, `*.json`) and `-` (stdin).

    Raises:
        ManifestError: unreadable files, YAML syntax errors and every validation problem, all
            together; nothing is returned when there is any.
    """
    docs: list[Located] = []
    problems: list[ManifestProblem] = []
    for p in paths:
        targets: list[str | Path] = ["-"] if str(p) == "-" else list(iter_manifest_files([p]))
        for target in targets:
            try:
                docs.extend(read_sources([target]))
            except ManifestError as exc:
                problems.extend(exc.problems)
            except UnicodeDecodeError as exc:
                problems.append(ManifestProblem(_name(target), None, None, "", "UTF-8 text",
                                                f"undecodable bytes at offset {exc.start}"))
            except RecursionError:
                # An alias used inside its own anchor (`a: &x [*x]`) or absurd nesting.
                problems.append(ManifestProblem(
                    _name(target), None, None, "",
                    "YAML without recursive aliases or extreme nesting", "a recursive document"))
    try:
        result = parse_documents(docs)
    except ManifestError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return result
