"""YAML loading that remembers where every node came from.

Documents are loaded with PyYAML's safe constructors, but every mapping and sequence is recorded
with the line and column of each of its values, so a validator can turn a field path such as
`("spec", "ingress", 0, "toPorts")` into `file:14:7`. Plain dicts and lists come out; the
locations live in a side table (`Located.where`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netstrata.errors import ManifestError, ManifestProblem

FieldPath = tuple[str | int, ...]


@dataclass(slots=True)
class Located:
    """One YAML document: its data and the 1-based (line, column) of every node by field path."""

    data: Any
    source: str
    """File name or `<stdin>`."""
    marks: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: FieldPath) -> tuple[int | None, int | None]:
        """Location of `path`, or of its nearest located ancestor."""
        p = tuple(path)
        while True:
            if p in self.marks:
                return self.marks[p]
            if not p:
                return (None, None)
            p = p[:-1]

    def problem(self, path: FieldPath, expected: str, found: str) -> ManifestProblem:
        line, col = self.where(path)
        return ManifestProblem(self.source, line, col, render_path(path), expected, found)


def render_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def brief(value: Any, limit: int = 60) -> str:
    """A short rendering of a found value for error messages."""
    if isinstance(value, str):
        text = repr(value) if value else '""'
        text = '"' + value + '"' if "'" not in value and '"' not in value else text
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "a mapping" if value else "{}"
    elif isinstance(value, list):
        text = "a list" if value else "[]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _walk(node: yaml.Node, path: FieldPath, marks: dict[FieldPath, tuple[int, int]]) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                _walk(value_node, (*path, key_node.value), marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), marks)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent overwrite hides typos in policies)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(text: str, source: str) -> list[Located]:
    """Parse every document of a (multi-document) YAML text.

    Raises:
        ManifestError: the text is not valid YAML; names the line and column.
    """
    docs: list[Located] = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None:
                continue
            loader = _Loader("")
            data = loader.construct_document(node)
            marks: dict[FieldPath, tuple[int, int]] = {}
            _walk(node, (), marks)
            docs.append(Located(data, source, marks))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or "valid YAML"
        raise ManifestError(
            [ManifestProblem(source, line, col, "", "valid YAML", problem)]
        ) from exc
    except yaml.YAMLError as exc:
        raise ManifestError([ManifestProblem(source, None, None, "", "valid YAML", str(exc))]) from exc
    return docs


def iter_manifest_files(paths: list[str | Path]) -> Iterator[Path]:
    """Expand files and directories (recursively, `*.yaml`/`*.yml`/`*.json`, sorted)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_file() and child.suffix in {".yaml", ".yml", ".json"}:
                    yield child
        else:
            yield p


def read_sources(paths: list[str | Path]) -> list[Located]:
    """Load every document from files, directories and `-` (stdin).

    Collects YAML errors from every file and raises them together.
    """
    docs: list[Located] = []
    problems: list[ManifestProblem] = []
    for p in paths:
        if str(p) == "-":
            try:
                docs.extend(load_documents(sys.stdin.read(), "<stdin>"))
            except ManifestError as exc:
                problems.extend(exc.problems)
            continue
        for file in iter_manifest_files([p]):
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as exc:
                problems.append(
                    ManifestProblem(str(file), None, None, "", "a readable file", exc.strerror or str(exc))
                )
                continue
            try:
                docs.extend(load_documents(text, str(file)))
            except ManifestError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return docs
