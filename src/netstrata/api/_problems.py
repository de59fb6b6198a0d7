"""Turning validation failures into located `ManifestProblem`s.

Two sources feed one list: pydantic's `ValidationError` (field types, formats, single-field
checks) and the structural checks that look across fields (`_cilium_checks`, `_k8s_checks`).
Both end up as `Issue(path, expected, found)`; `Collector` adds the document's path prefix
(e.g. `items[2]` inside a `kind: List`) and the YAML line/column from `Located`.

Pydantic's own sentences are never shown: each error type is rendered from a table into the
`expected X, found Y` shape of `ManifestProblem` (STYLE.md "Errors a user can act on").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from netstrata.api._schema_base import ERROR_TYPE
from netstrata.api._yaml import FieldPath, Located, brief
from netstrata.errors import ManifestProblem


class Issue(NamedTuple):
    """One problem inside a document, before it is located."""

    path: FieldPath
    expected: str
    found: str


_TYPE_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "none_required": "null",
}


def _literal(err: ErrorDetails) -> tuple[str, str]:
    choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    return "one of " + ", ".join(choices), brief(err.get("input"))


def _bound(word: str, key: str) -> Callable[[ErrorDetails], tuple[str, str]]:
    def render(err: ErrorDetails) -> tuple[str, str]:
        return f"a number {word} {(err.get('ctx') or {}).get(key)}", brief(err.get("input"))

    return render


def _length(word: str, key: str) -> Callable[[ErrorDetails], tuple[str, str]]:
    def render(err: ErrorDetails) -> tuple[str, str]:
        ctx = err.get("ctx") or {}
        return f"{word} {ctx.get(key)} items", f"{ctx.get('actual_length', '?')} items"

    return render


def _custom(err: ErrorDetails) -> tuple[str, str]:
    ctx = err.get("ctx") or {}
    return str(ctx.get("expected", "")), str(ctx.get("found", ""))


_RENDERERS: dict[str, Callable[[ErrorDetails], tuple[str, str]]] = {
    ERROR_TYPE: _custom,
    "missing": lambda err: ("a value for this required field", "nothing"),
    "invalid_key": lambda err: ("a string key", brief(err.get("input"))),
    "recursion_loop": lambda err: ("data without cycles", "a value that contains itself"),
    "literal_error": _literal,
    "too_long": _length("at most", "max_length"),
    "too_short": _length("at least", "min_length"),
    "greater_than_equal": _bound(">=", "ge"),
    "greater_than": _bound(">", "gt"),
    "less_than_equal": _bound("<=", "le"),
    "less_than": _bound("<", "lt"),
}


def _clean_loc(loc: Iterable[str | int]) -> FieldPath:
    """Drop pydantic's synthetic segments (`[key]`, `function-plain[...]`) from a location."""
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def known_fields(model: type[BaseModel] | None, loc: FieldPath) -> list[str]:
    """The field names (aliases) accepted by the model at `loc` below `model`, if any."""
    current = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        fields = {(f.alias or name): f for name, f in current.model_fields.items()}
        if part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    if current is None:
        return []
    return [(f.alias or name) for name, f in current.model_fields.items()]


def _extra(err: ErrorDetails, model: type[BaseModel] | None) -> tuple[str, str]:
    loc = _clean_loc(err["loc"])
    key = str(loc[-1]) if loc else "?"
    known = known_fields(model, loc[:-1])
    found = f'unknown field "{key}"'
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        lower = {k.lower(): k for k in known}
        close = [lower[key.lower()]] if key.lower() in lower else []
    if close:
        found += f' (did you mean "{close[0]}"?)'
    expected = "one of the fields " + ", ".join(known) if known else "only known fields"
    return expected, found


def render_error(err: ErrorDetails, model: type[BaseModel] | None) -> Issue:
    """One pydantic error as an Issue with our wording."""
    kind = err["type"]
    if kind == "extra_forbidden":
        expected, found = _extra(err, model)
    elif kind in _RENDERERS:
        expected, found = _RENDERERS[kind](err)
    elif kind in _TYPE_EXPECTED:
        expected, found = _TYPE_EXPECTED[kind], brief(err.get("input"))
    else:
        # Every type our models can raise is in the tables above; an unforeseen one still
        # gets our shape rather than pydantic's sentence.
        expected, found = "a valid value", brief(err.get("input"))
    return Issue(_clean_loc(err["loc"]), expected, found)


def issues_from(exc: ValidationError, model: type[BaseModel] | None) -> list[Issue]:
    return [render_error(e, model) for e in exc.errors(include_url=False)]


@dataclass
class Collector:
    """Gathers the problems of one document (or one `List` item) with their locations."""

    doc: Located
    prefix: FieldPath = ()
    problems: list[ManifestProblem] = field(default_factory=list)

    def add(self, path: FieldPath, expected: str, found: str) -> None:
        self.problems.append(self.doc.problem((*self.prefix, *path), expected, found))

    def extend(self, issues: Iterable[Issue], under: FieldPath = ()) -> None:
        for issue in issues:
            self.add((*under, *issue.path), issue.expected, issue.found)

    def validate(self, model: type[BaseModel], data: Any, under: FieldPath = ()) -> Any:
        """`model.model_validate(data)`, or None with the errors collected under `under`."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.extend(issues_from(exc, model), under)
            return None

    def line(self, path: FieldPath = ()) -> int | None:
        return self.doc.where((*self.prefix, *path))[0]
