"""Whole-value regular expressions with Envoy's meaning, for `rules.http[].path/method/host`.

Cilium hands these strings to Envoy as `safe_regex` matchers: RE2 syntax, and a match must
cover the whole value (RE2 `FullMatch`), so `/public` never matches `/public?x=1`. A pattern
here must be valid in RE2 *and* in Python's `re`, so that a policy accepted by netstrata would
also load in Cilium and means the same on either engine.

Engines. When the `re2` module (PyPI `google-re2`, the library Envoy links) is importable it
does the matching: RE2 semantics exactly and time linear in the input, which matters because
the input (a request path) comes from an untrusted peer. Otherwise Python's `re` runs a
translated pattern with `fullmatch` and `re.ASCII`; that engine backtracks, so a pattern such
as `(a+)+b` can be made slow by a crafted path: install google-re2 wherever the proxy runs.
Both engines see only patterns that passed `_Translator`, the RE2-and-Python common subset, so
they agree on everything a conforming HTTP parser can hand them.

What is rejected (valid in one engine only):
  Python-only: lookaround `(?=` `(?!` `(?<=` `(?<!`, atomic `(?>`, conditionals `(?(`,
  comments `(?#`, flags `x a L u`, named back-references `(?P=`, numeric back-references
  `\\1`-`\\9` (3-digit octal `\\123` is allowed, both read it as octal), possessive
  quantifiers `*+ ++ ?+ {n}+`, `\\Z`, `\\u \\U \\N{}`, `[\\b]`, unknown `[[:name:]]`,
  repetition counts over 1000.
  RE2-only: `\\Q...\\E`, `\\x{...}`, `\\p{..}`/`\\P{..}`/`\\pN`, `\\C`, `(?<name>`, `(?U)`,
  flags set in the middle of a pattern (`a(?i)b`; write `a(?i:b)`), negated POSIX classes
  `[[:^alpha:]]`, a quantifier on `^`/`$`/`\\b`.
What is translated for Python (both accept it, with different meanings):
  `[[:alpha:]]` and the other POSIX classes (Python reads `[:alph` as a set), `{,n}` (a
  literal in RE2, a repetition in Python), `\\z` (Python spells it `\\Z`) and `\\B` (Python's
  never matches an empty string).
Remaining differences with the Python engine, unreachable from a conforming parser: `\\s`
also matches `\\v`, `$` also matches before a final `\\n`, and `(?i)` folds only ASCII letters.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Final, Literal


def _load_re2() -> ModuleType | None:
    """google-re2 (module `re2`) if installed; it is optional."""
    try:
        return importlib.import_module("re2")
    except ImportError:  # pragma: no cover - depends on the environment
        return None


_re2: Final = _load_re2()

Engine = Literal["auto", "python", "re2"]

HAS_RE2: Final = _re2 is not None
"""True when google-re2 is installed and `engine="auto"` uses it."""

RE2_MAX_REPEAT: Final = 1000
"""RE2 rejects `{n}` counts above 1000 (`invalid repetition size`)."""

_POSIX_CLASSES: Final = {
    "alnum": r"0-9A-Za-z", "alpha": r"A-Za-z", "ascii": r"\x00-\x7f",
    "blank": r"\t ", "cntrl": r"\x00-\x1f\x7f", "digit": r"0-9", "graph": r"\x21-\x7e",
    "lower": r"a-z", "print": r"\x20-\x7e", "punct": r"\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e",
    "space": r"\t\n\v\f\r ", "upper": r"A-Z", "word": r"0-9A-Za-z_", "xdigit": r"0-9A-Fa-f",
}  # fmt: skip
"""RE2's ASCII POSIX classes, as Python character-class contents."""

_SIMPLE_ESCAPES: Final = frozenset("afnrtv")
_CLASS_ESCAPES: Final = frozenset("dDsSwW")
_ASSERT_ESCAPES: Final = frozenset("bA")
_OCTAL: Final = frozenset("01234567")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_FLAG_GROUP = re.compile(r"\(\?([ims]*(?:-[ims]*)?)([:)])")
_NAMED_GROUP = re.compile(r"\(\?P<([A-Za-z_][A-Za-z0-9_]*)>")
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_LOOSE_REPEAT = re.compile(r"\{,\d*\}")


class _Translator:
    """One pass over a pattern: rejects what only one engine accepts, rewrites the rest.

    Raises ValueError naming the construct and its position.
    """

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []
        self.atom = False  # whether the last item can take a quantifier

    def run(self) -> str:
        while self.i < len(self.p):
            self._step()
        return "".join(self.out)

    def _fail(self, what: str, at: int | None = None) -> ValueError:
        where = self.i if at is None else at
        return ValueError(f"{what} at position {where} (not valid in both RE2 and Python re)")

    def _step(self) -> None:
        c = self.p[self.i]
        if c == "\\":
            self._escape()
        elif c == "[":
            self._class()
        elif c == "(":
            self._group_open()
        elif c in "*+?":
            self._quantifier(1)
        elif c == "{":
            self._brace()
        else:
            self.out.append(c)
            self.i += 1
            self.atom = c not in "|(^$"

    # -- escapes outside a class
    def _escape(self) -> None:
        text, kind = self._read_escape(in_class=False)
        self.out.append(text)
        self.atom = kind != "assert"

    def _read_escape(self, *, in_class: bool) -> tuple[str, str]:
        """Read `\\x` at self.i; return (python text, kind in {literal, class, assert})."""
        p, i = self.p, self.i
        if i + 1 >= len(p):
            raise self._fail("trailing backslash")
        c = p[i + 1]
        self.i = i + 2
        if c in _SIMPLE_ESCAPES:
            return "\\" + c, "literal"
        if c in _CLASS_ESCAPES:
            return "\\" + c, "class"
        if not in_class and c in _ASSERT_ESCAPES:
            return "\\" + c, "assert"
        if not in_class and c == "z":
            return r"\Z", "assert"
        if not in_class and c == "B":
            # Python's \B never matches in an empty string; RE2's does.
            return r"(?:\B|\A\Z)", "assert"
        if c == "x":
            digits = p[i + 2:i + 4]
            if len(digits) == 2 and all(d in _HEX for d in digits):
                self.i = i + 4
                return "\\x" + digits, "literal"
            raise self._fail("\\x needs exactly two hex digits", i)
        if c in _OCTAL:
            return self._octal(i, c), "literal"
        if c.isascii() and not c.isalnum():
            return "\\" + c, "literal"
        raise self._fail(f"escape \\{c}", i)

    def _octal(self, start: int, first: str) -> str:
        """`\\0`, `\\0d`, `\\0dd` or `\\ddd`: octal in both engines; `\\1`-`\\7` alone are
        back-references in Python and errors in RE2."""
        run = first
        while len(run) < 3 and start + 1 + len(run) < len(self.p) and \
                self.p[start + 1 + len(run)] in _OCTAL:
            run += self.p[start + 1 + len(run)]
        if first != "0" and len(run) < 3:
            raise self._fail(f"back-reference \\{run}", start)
        self.i = start + 1 + len(run)
        return "\\" + run

    # -- character classes
    def _class(self) -> None:
        p = self.p
        self.i += 1
        parts = ["["]
        if self.i < len(p) and p[self.i] == "^":
            parts.append("^")
            self.i += 1
        first = True
        while True:
            if self.i >= len(p):
                raise self._fail("unterminated character class")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\":
                text, _ = self._read_escape(in_class=True)
                parts.append(text)
            elif c == "[" and p.startswith("[:", self.i):
                parts.append(self._posix())
            elif c in "[&~|]":
                # Python warns about (future) set operations on `[`, `&&`, `~~`, `||`.
                parts.append("\\" + c)
                self.i += 1
            else:
                parts.append(c)
                self.i += 1
        parts.append("]")
        self.out.append("".join(parts))
        self.atom = True

    def _posix(self) -> str:
        end = self.p.find(":]", self.i + 2)
        if end == -1:
            raise self._fail("unterminated POSIX class")
        name = self.p[self.i + 2:end]
        if name.startswith("^"):
            raise self._fail(f"negated POSIX class [:{name}:]")
        if name not in _POSIX_CLASSES:
            raise self._fail(f"unknown POSIX class [:{name}:]")
        self.i = end + 2
        return _POSIX_CLASSES[name]

    # -- groups
    def _group_open(self) -> None:
        p, i = self.p, self.i
        if not p.startswith("(?", i):
            self.out.append("(")
            self.i += 1
            self.atom = False
            return
        if p.startswith("(?:", i):
            self.out.append("(?:")
            self.i += 3
        elif m := _NAMED_GROUP.match(p, i):
            self.out.append(m.group(0))
            self.i = m.end()
        elif (m := _FLAG_GROUP.match(p, i)) and m.group(1).strip("-"):
            if m.group(2) == ")" and i != 0:
                raise self._fail("inline flags after the start (use (?flags:...))")
            self.out.append(m.group(0))
            self.i = m.end()
        else:
            raise self._fail("group extension " + p[i:i + 4])
        self.atom = False

    # -- quantifiers
    def _quantifier(self, width: int) -> None:
        if not self.atom:
            raise self._fail("quantifier without an operand")
        self.out.append(self.p[self.i:self.i + width])
        self.i += width
        if self.i < len(self.p) and self.p[self.i] == "?":  # lazy: both engines
            self.out.append("?")
            self.i += 1
        if self.i < len(self.p) and self.p[self.i] in "+*{":
            raise self._fail("possessive or repeated quantifier")
        self.atom = False

    def _brace(self) -> None:
        m = _REPEAT.match(self.p, self.i)
        if m is None:
            # Not a repetition in RE2: a literal `{`. Python agrees except for `{,n}`.
            loose = _LOOSE_REPEAT.match(self.p, self.i)
            self.out.append("\\{" if loose else "{")
            self.i += 1
            self.atom = True
            return
        if any(g and int(g) > RE2_MAX_REPEAT for g in (m.group(1), m.group(3))):
            raise self._fail(f"repetition count over {RE2_MAX_REPEAT}")
        self._quantifier(m.end() - m.start())


def translate(pattern: str) -> str:
    """The Python `re` text for an RE2 pattern; ValueError if not valid in both engines."""
    return _Translator(pattern).run()


@dataclass(frozen=True, slots=True)
class WholeRegex:
    """A compiled pattern that must match the entire value (Envoy `safe_regex`)."""

    pattern: str
    """The pattern as written in the policy."""
    engine: Literal["python", "re2"]
    """Which engine matches."""
    _fullmatch: Callable[[str], object] = field(repr=False, compare=False)

    def matches(self, value: str) -> bool:
        """True when the whole of `value` matches."""
        return self._fullmatch(value) is not None


def _re2_options() -> object:
    assert _re2 is not None
    options = _re2.Options()
    options.log_errors = False  # errors become ValueError here, not stderr noise
    return options


@functools.lru_cache(maxsize=4096)
def compile_whole(pattern: str, engine: Engine = "auto") -> WholeRegex:
    """Compile a policy regex for whole-value matching.

    Args:
        pattern: RE2 syntax, as written in `rules.http[]`.
        engine: `auto` (google-re2 when installed, else Python), or force one.

    Raises:
        ValueError: the pattern is invalid in RE2 or in Python, or `re2` was asked for and is
            not installed.
    """
    translated = translate(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            compiled = re.compile(translated, re.ASCII)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        except (OverflowError, RecursionError) as exc:
            raise ValueError("regular expression too large") from exc
    use_re2 = engine == "re2" or (engine == "auto" and _re2 is not None)
    literal = _LITERAL_RE.fullmatch(pattern) is not None
    if not use_re2:
        return WholeRegex(pattern, "python", _equals(pattern) if literal else compiled.fullmatch)
    if _re2 is None:
        raise ValueError("engine re2 requested but google-re2 is not installed")
    try:
        compiled2 = _re2.compile(pattern, _re2_options())
    except Exception as exc:  # re2.error carries bytes; normalise the message
        raise ValueError(f"invalid RE2 regular expression: {exc}") from exc
    return WholeRegex(pattern, "re2", _equals(pattern) if literal else compiled2.fullmatch)


_LITERAL_RE: Final = re.compile(r"[A-Za-z0-9_\-/:@=,;!~ ]*")
"""Patterns made only of characters that are literal in RE2 and Python (a method like `GET`,
a fixed path): a whole match is string equality, so they skip the engine (RE2's Python
wrapper costs ≈1.5 µs a call) and are still compiled above, so validity is judged the same."""


def _equals(text: str) -> Callable[[str], object]:
    def fullmatch(value: str) -> object:
        return True if value == text else None

    return fullmatch


FirstMatch = Callable[[str], "int | None"]
"""value -> index of the first pattern that matches the whole value, or None."""


def compile_first_match(patterns: tuple[WholeRegex, ...]) -> FirstMatch | None:
    """One matcher for many whole-value patterns: the index of the first that matches.

    A rule list of N paths then costs one engine call per request instead of N (the proxy's
    hot path). RE2 runs them as one `RE2::Set` anchored at both ends (each pattern keeps its
    own meaning, the engine reports every index that matched, we take the lowest).

    Returns None when the patterns are not all RE2 or RE2 refuses the union: callers then
    match one by one, which gives the same answers.
    """
    if not patterns:
        return None
    engines = {p.engine for p in patterns}
    if engines == {"re2"}:
        assert _re2 is not None
        rset = _re2.Set.FullMatchSet(_re2_options())
        try:
            for p in patterns:
                rset.Add(p.pattern)
            rset.Compile()
        except Exception:  # re2.error: too large for one program; match one by one
            return None
        set_match = rset.Match

        def first_re2(value: str) -> int | None:
            found = set_match(value)
            return min(found) if found else None

        return first_re2
    # Python's `re` could run `(p0)|(p1)|…`, but which alternative matched is only readable
    # from group marks, which backtracking across alternatives can leave stale; the linear
    # walk is cheap on that engine anyway (no per-call wrapper), so it stays one by one.
    return None
