"""HTTP L7 rules (`toPorts[].rules.http[]`, Cilium reference §1.5.1), matched as Envoy does.

Shared by the reference datapath (`policy trace`, `policy check`) and the node proxy, so both
give the same verdict for the same request. Pure: no sockets, no clock.

How Cilium turns one `rules.http[]` entry into Envoy matchers (pkg/envoy `getHTTPRule`), and
so what `CompiledHTTPRule` does:
- `path`, `method`, `host`: RE2 regexes matched against the *whole* `:path` (query included),
  `:method` and `:authority` (see `_regex.py`). Method is case-sensitive (`GET` is not `get`);
  `.` in host is a metacharacter (`foo.bar.com` matches `fooXbar.com`). The authority is
  matched verbatim, port included, as Envoy does: `host: api.example.com` does not match a
  request to `api.example.com:8080`; write `api\\.example\\.com(:8080)?` for that.
- `headers` strings: split at the first space; the name loses trailing `:` and the value must
  be exactly equal. A string without a space is a bare name: the header must be present (the
  name is kept verbatim, so `X-Foo:` with no value names a header `x-foo:` that never exists,
  as in Cilium).
- `headerMatches`: `{name, value?, secret?, mismatch?}`. The value comes from the Secret when
  it resolves, else from `value`; a Secret that resolves to nothing with no `value` to fall
  back on makes the whole rule fail closed (Cilium installs a never-matching matcher). No
  value at all means presence. Without `mismatch` a mismatch fails the rule; with
  LOG/ADD/DELETE/REPLACE the rule still matches and a `HeaderAction` reports what the proxy
  must do (cilium-envoy `HeaderMatch::allowed`).
Header names compare case-insensitively; a header sent several times is compared as its
values joined by `,` (Envoy `getAllOfHeaderAsString`). `:path`, `:method` and `:authority`
name the request's own fields. Unlike Envoy, where HTTP/1 `Host` becomes `:authority`, a rule
naming `host` is looked up among the plain headers the caller supplies.

A rule list is OR-ed (`http_allowed`); an empty entry `{}` matches every request, and an empty
list means no L7 restriction. When no rule has header actions the first match decides;
otherwise every rule is evaluated, each one's actions applied before the next is checked, as
Envoy does (Envoy sorts the rules first; we keep policy order).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Final, Literal, NamedTuple, cast

from netstrata.api.types import HeaderMatch, HTTPRule
from netstrata.policy.l7._regex import (
    Engine,
    FirstMatch,
    WholeRegex,
    compile_first_match,
    compile_whole,
)

MismatchAction = Literal["LOG", "ADD", "DELETE", "REPLACE"]
MISMATCH_ACTIONS: Final[frozenset[str]] = frozenset({"LOG", "ADD", "DELETE", "REPLACE"})

SecretResolver = Callable[[str, str], str | None]
"""(namespace, name) of a Secret -> its value, or None when it cannot be read. An empty
namespace means the policy's own namespace; resolving that is the caller's job."""

Headers = tuple[tuple[str, str], ...]

_PSEUDO: Final = {":path": "path", ":method": "method", ":authority": "host"}


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """What an HTTP rule looks at in one request."""

    method: str
    """The method token as sent (case-sensitive)."""
    path: str
    """Envoy's `:path`: the request target as on the wire, query string included."""
    host: str | None = None
    """`:authority` (HTTP/2) or the Host header (HTTP/1.1), verbatim with any port; None when
    the request carries neither."""
    headers: Headers = ()
    """(name, value) pairs in wire order; names in any case, values trimmed."""

    def header_value(self, name: str) -> str | None:
        """All values of `name` joined with `,` (Envoy's view), or None when absent."""
        wanted = name.lower()
        if wanted in _PSEUDO:
            value: str | None = getattr(self, _PSEUDO[wanted])
            return value
        values = [v for k, v in self.headers if k.lower() == wanted]
        return ",".join(values) if values else None


@dataclass(frozen=True, slots=True)
class HeaderAction:
    """A `headerMatches` entry with a `mismatch` action whose header did not match."""

    rule_index: int
    """Index, in the rule list, of the rule that asks for it."""
    name: str
    """Header name as written in the policy."""
    action: MismatchAction
    """LOG: only log. ADD: append `name: value`. DELETE: remove the header (reported only when
    it was present with a wrong value). REPLACE: set the header to `value`."""
    value: str
    """The value the rule expects ("" for a presence check)."""
    found: str | None
    """The request's value (comma-joined), or None when it was absent."""
    from_secret: bool
    """True when `value` came from a Secret: log it as `[redacted]`."""


class HTTPVerdict(NamedTuple):
    """Result of `http_allowed`: unpacks as (allowed, rule_index, header_actions)."""

    allowed: bool
    rule_index: int | None
    """Index of the first rule that matched; None when denied or when there are no rules."""
    header_actions: tuple[HeaderAction, ...]


@dataclass(frozen=True, slots=True)
class _HeaderCheck:
    """One header condition of a rule: from `headers` or from `headerMatches`."""

    name: str
    value: str | None
    """Expected value; None for a presence check (unless `secret` supplies one)."""
    secret: tuple[str, str] | None = None
    mismatch: MismatchAction | None = None


_UNRESOLVED: Final = object()


def _expected(check: _HeaderCheck, secrets: SecretResolver | None) -> tuple[object, bool]:
    """(expected value or None for presence or _UNRESOLVED, whether it came from a Secret).

    Cilium `getSecretString`: the Secret wins when it yields a value, `value` is the fallback,
    and a Secret with neither fails closed. A Secret resolving to "" counts as unresolved.
    """
    if check.secret is not None:
        resolved = secrets(*check.secret) if secrets is not None else None
        if resolved:
            return resolved, True
        if check.value:
            return check.value, False
        return _UNRESOLVED, False
    return check.value, False


def _header_check_from_string(text: str) -> _HeaderCheck:
    name, sep, value = text.partition(" ")
    if sep:
        return _HeaderCheck(name.rstrip(":"), value)
    return _HeaderCheck(name, None)


def _header_check_from_match(match: HeaderMatch) -> _HeaderCheck:
    if match.mismatch is not None and match.mismatch not in MISMATCH_ACTIONS:
        raise ValueError(f"headerMatches {match.name}: mismatch {match.mismatch!r} is not one "
                         "of LOG, ADD, DELETE, REPLACE")
    mismatch = cast("MismatchAction | None", match.mismatch)
    return _HeaderCheck(match.name, match.value or None, match.secret, mismatch)


@dataclass(frozen=True, slots=True)
class CompiledHTTPRule:
    """One `rules.http[]` entry with its regexes compiled; build with `compile_http_rule`."""

    rule: HTTPRule
    path: WholeRegex | None
    method: WholeRegex | None
    host: WholeRegex | None
    checks: tuple[_HeaderCheck, ...]
    """Conditions that fail the rule: `headers` and `headerMatches` without `mismatch`."""
    actions: tuple[_HeaderCheck, ...]
    """`headerMatches` with a `mismatch` action."""

    @property
    def has_actions(self) -> bool:
        """True when a mismatch can produce a header action (no short-circuiting then)."""
        return bool(self.actions)

    def matches(self, req: HTTPRequest, secrets: SecretResolver | None = None) -> bool:
        """True when the request satisfies this rule (mismatch actions never fail it)."""
        return self.evaluate(req, secrets)[0]

    def evaluate(
        self, req: HTTPRequest, secrets: SecretResolver | None = None, index: int = 0
    ) -> tuple[bool, tuple[HeaderAction, ...]]:
        """(matched, header actions to apply); `index` is recorded in each action."""
        if not self._route_matches(req, secrets):
            return False, ()
        out: list[HeaderAction] = []
        for check in self.actions:
            expected, from_secret = _expected(check, secrets)
            if expected is _UNRESOLVED:
                return False, ()
            action = _mismatch_action(check, expected, from_secret, req, index)
            if action is not None:
                out.append(action)
        return True, tuple(out)

    def _route_matches(
        self, req: HTTPRequest, secrets: SecretResolver | None, path_known: bool = False
    ) -> bool:
        if self.path is not None and not path_known and not self.path.matches(req.path):
            return False
        if self.method is not None and not self.method.matches(req.method):
            return False
        if self.host is not None and (req.host is None or not self.host.matches(req.host)):
            return False
        for check in self.checks:
            expected, _ = _expected(check, secrets)
            found = req.header_value(check.name)
            if expected is _UNRESOLVED or found is None:
                return False
            if expected is not None and found != expected:
                return False
        return True


def _mismatch_action(
    check: _HeaderCheck, expected: object, from_secret: bool, req: HTTPRequest, index: int
) -> HeaderAction | None:
    """The action for one `headerMatches` entry, or None when it matched or needs nothing."""
    assert check.mismatch is not None
    found = req.header_value(check.name)
    wanted = expected if isinstance(expected, str) else None
    if found is not None and (wanted is None or found == wanted):
        return None
    if check.mismatch == "DELETE" and (wanted is None or found is None):
        return None  # a failed presence check or an absent header: nothing to remove
    return HeaderAction(index, check.name, check.mismatch, wanted or "", found, from_secret)


@functools.lru_cache(maxsize=4096)
def compile_http_rule(rule: HTTPRule, engine: Engine = "auto") -> CompiledHTTPRule:
    """Compile (and cache) one HTTP rule.

    Raises:
        ValueError: a regex is not valid in both RE2 and Python (message names the field), or
            a `mismatch` value is unknown.
    """
    regexes: dict[str, WholeRegex | None] = {}
    for field_name in ("path", "method", "host"):
        text = getattr(rule, field_name)
        try:
            regexes[field_name] = compile_whole(text, engine) if text else None
        except ValueError as exc:
            raise ValueError(f"{field_name} {text!r}: {exc}") from exc
    checks = [_header_check_from_string(h) for h in rule.headers]
    actions: list[_HeaderCheck] = []
    for match in rule.header_matches:
        check = _header_check_from_match(match)
        (actions if check.mismatch else checks).append(check)
    return CompiledHTTPRule(rule, regexes["path"], regexes["method"], regexes["host"],
                            tuple(checks), tuple(actions))


def http_rule_matches(
    rule: HTTPRule, req: HTTPRequest, secrets: SecretResolver | None = None
) -> bool:
    """True when `req` satisfies the single rule `rule` (compiled once, then cached)."""
    return compile_http_rule(rule).matches(req, secrets)


def apply_header_actions(headers: Headers, actions: Iterable[HeaderAction]) -> Headers:
    """The request headers after the proxy carries out `actions`, in order."""
    out = list(headers)
    for act in actions:
        wanted = act.name.lower()
        if act.action == "ADD":
            out.append((act.name, act.value))
        elif act.action in ("DELETE", "REPLACE"):
            out = [(k, v) for k, v in out if k.lower() != wanted]
            if act.action == "REPLACE":
                out.append((act.name, act.value))
    return tuple(out)


class CompiledHTTPRuleSet:
    """One rule list compiled for the proxy's hot path; build with `compile_http_rules`.

    Same answers as walking the rules in order (`http_allowed`), found faster when no rule has
    header actions (first match decides): every path regex runs in one RE2 set match, which
    names the first rule whose path fits; only that rule's method, host and header conditions
    are checked, and only if they fail does the walk go on rule by rule from the next one.
    """

    __slots__ = ("rules", "_short_circuit", "_first_pathless", "_first_path", "_path_owner")

    def __init__(self, rules: tuple[CompiledHTTPRule, ...]) -> None:
        self.rules: Final = rules
        self._short_circuit = not any(c.has_actions for c in rules)
        self._first_pathless = next((i for i, c in enumerate(rules) if c.path is None), len(rules))
        with_path = [(i, c.path) for i, c in enumerate(rules) if c.path is not None]
        self._path_owner = tuple(i for i, _ in with_path)
        self._first_path: FirstMatch | None = (
            compile_first_match(tuple(p for _, p in with_path)) if self._short_circuit else None
        )

    def evaluate(self, req: HTTPRequest, secrets: SecretResolver | None = None) -> HTTPVerdict:
        """OR of the rules (see `http_allowed`)."""
        rules = self.rules
        if not rules:
            return HTTPVerdict(True, None, ())
        first_path = self._first_path
        if first_path is None:
            return _walk(rules, 0, req, secrets, self._short_circuit)
        found = first_path(req.path)
        start = self._first_pathless
        path_known = False
        if found is not None and self._path_owner[found] < start:
            start = self._path_owner[found]
            path_known = True  # the set matched this rule's whole-path pattern already
        if start >= len(rules):
            return _DENIED
        if rules[start]._route_matches(req, secrets, path_known):
            return HTTPVerdict(True, start, ())
        return _walk(rules, start + 1, req, secrets, True)


_DENIED: Final = HTTPVerdict(False, None, ())

_RULE_SETS: dict[int, tuple[tuple[HTTPRule | CompiledHTTPRule, ...], CompiledHTTPRuleSet]] = {}
_RULE_SETS_MAX: Final = 4096
"""Rule lists kept compiled; a policy update brings new tuples, so old ones age out by a
clear-all when the table is full (cheap, and the next request recompiles what is live)."""


def compile_http_rules(rules: tuple[HTTPRule | CompiledHTTPRule, ...]) -> CompiledHTTPRuleSet:
    """The compiled form of one rule list, cached by the tuple's identity.

    Resolved policies are immutable, so the tuple an `L7Policy` entry holds is compiled once
    per policy revision rather than hashed (100 rules) on every request; the cache keeps the
    tuple alive so its id cannot be reused while cached.

    Raises:
        ValueError: as `compile_http_rule`.
    """
    hit = _RULE_SETS.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1]
    compiled = CompiledHTTPRuleSet(
        tuple(r if isinstance(r, CompiledHTTPRule) else compile_http_rule(r) for r in rules)
    )
    if len(_RULE_SETS) >= _RULE_SETS_MAX:
        _RULE_SETS.clear()
    _RULE_SETS[id(rules)] = (rules, compiled)
    return compiled


def http_allowed(
    rules: Iterable[HTTPRule | CompiledHTTPRule] | CompiledHTTPRuleSet,
    req: HTTPRequest,
    secrets: SecretResolver | None = None,
) -> HTTPVerdict:
    """OR of the rules, as Envoy's Cilium filter evaluates them.

    Returns:
        (allowed, index of the first matching rule, header actions of every matching rule in
        order). No rules at all: allowed, index None.
    """
    if isinstance(rules, CompiledHTTPRuleSet):
        return rules.evaluate(req, secrets)
    if isinstance(rules, tuple):
        return compile_http_rules(rules).evaluate(req, secrets)
    compiled = [r if isinstance(r, CompiledHTTPRule) else compile_http_rule(r) for r in rules]
    if not compiled:
        return HTTPVerdict(True, None, ())
    short_circuit = not any(c.has_actions for c in compiled)
    return _walk(tuple(compiled), 0, req, secrets, short_circuit)


def _walk(
    compiled: tuple[CompiledHTTPRule, ...],
    start: int,
    req: HTTPRequest,
    secrets: SecretResolver | None,
    short_circuit: bool,
) -> HTTPVerdict:
    """The rules from `start` on, in order: the reference evaluation."""
    first: int | None = None
    actions: list[HeaderAction] = []
    current = req
    for index in range(start, len(compiled)):
        ok, acts = compiled[index].evaluate(current, secrets, index)
        if not ok:
            continue
        if first is None:
            first = index
        if short_circuit:
            break
        if acts:
            actions.extend(acts)
            current = replace(current, headers=apply_header_actions(current.headers, acts))
    return HTTPVerdict(first is not None, first, tuple(actions))
