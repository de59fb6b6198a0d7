"""`load_manifests`: files, directories, multi-document YAML, JSON, stdin; all-or-nothing errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from netstrata.api import ManifestSet, load_manifests
from netstrata.errors import ManifestError

NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n"
CNP = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: %s, namespace: default}
spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports:
      - port: %s
"""


def load_error(paths: list[str | Path]) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifests(paths)
    return info.value


def test_files_directories_and_multi_document(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(NS % "a" + "---\n" + NS % "b" + "---\n")
    sub = tmp_path / "nested" / "deeper"
    sub.mkdir(parents=True)
    (sub / "c.yml").write_text(CNP % ("web", '"80"'))
    (sub / "d.json").write_text(json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": "d"}}))
    (sub / "notes.txt").write_text("not a manifest: {")
    ms = load_manifests([tmp_path])
    assert [n.name for n in ms.namespaces] == ["a", "b", "d"]
    assert [p.name for p in ms.cilium_policies] == ["web"]
    assert ms.cilium_policies[0].source.path == str(sub / "c.yml")
    single = load_manifests([str(tmp_path / "a.yaml")])
    assert len(single.namespaces) == 2


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(NS % "from-stdin"))
    ms = load_manifests(["-"])
    assert ms.namespaces[0].name == "from-stdin"


def test_stdin_errors_are_located(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(CNP % ("p", '"0x1_"')))
    err = load_error(["-"])
    assert str(err).startswith("<stdin>:9:15: spec.ingress[0].toPorts[0].ports[0].port: expected ")


def test_empty_directory_loads_nothing(tmp_path: Path) -> None:
    assert load_manifests([tmp_path]) == ManifestSet()


def test_every_file_every_problem_nothing_returned(tmp_path: Path) -> None:
    """YAML syntax errors, unreadable files and schema errors are reported together."""
    (tmp_path / "1-good.yaml").write_text(NS % "ok")
    (tmp_path / "2-syntax.yaml").write_text("kind: [unclosed\n")
    (tmp_path / "3-schema.yaml").write_text(CNP % ("x", "70000") + "---\n" + CNP % ("y", '"-1"'))
    (tmp_path / "4-binary.yaml").write_bytes(b"kind: \xff\xfe\n")
    err = load_error([tmp_path, tmp_path / "missing.yaml"])
    rendered = str(err).splitlines()
    assert len(rendered) == 5, rendered
    by_file = [p.path.rsplit("/", 1)[-1] for p in err.problems]
    assert by_file == ["2-syntax.yaml", "3-schema.yaml", "3-schema.yaml", "4-binary.yaml",
                       "missing.yaml"]
    schema = [p for p in err.problems if p.path.endswith("3-schema.yaml")]
    assert [p.line for p in schema] == [9, 19]
    assert schema[0].found == "70000" and "quote it" in schema[0].expected
    assert err.problems[0].expected == "valid YAML"
    assert err.problems[3].expected == "UTF-8 text"
    assert err.problems[4].expected == "a readable file"


def test_problems_are_sorted_by_line(tmp_path: Path) -> None:
    text = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: 1}}
  egress:
  - toEntities: [world]
    toCIDR: [1.1.1.1]
  ingress:
  - fromEntities: [bogus]
"""
    f = tmp_path / "p.yaml"
    f.write_text(text)
    err = load_error([f])
    assert [p.line for p in err.problems] == [5, 10]
    assert [p.field for p in err.problems] == ["spec.endpointSelector.matchLabels.app",
                                               "spec.ingress[0].fromEntities[0]"]


def test_recursive_yaml_alias_is_a_manifest_error(tmp_path: Path) -> None:
    f = tmp_path / "loop.yaml"
    f.write_text("apiVersion: v1\nkind: Namespace\nmetadata: &m {name: a, x: [*m]}\n")
    err = load_error([f])
    assert [p.path for p in err.problems] == [str(f)]
    assert "recursive" in str(err)


def test_public_exports() -> None:
    import netstrata.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None
    with pytest.raises(AttributeError):
        api.no_such_name  # noqa: B018


def test_domain_types_do_not_load_pydantic() -> None:
    """Packages below api/ import `api.types`; the schema stays unloaded until first use."""
    import subprocess

    code = ("import sys, netstrata.api, netstrata.api.types; "
            "assert 'pydantic' not in sys.modules, 'pydantic loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)
