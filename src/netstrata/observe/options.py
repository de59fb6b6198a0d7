"""The whole `hubble observe` command line: filters plus selection and output flags.

`build_filters` handles only filter flags; a CLI wants the rest too. `parse_observe_args`
returns both halves, applying Hubble's rules for the selection flags (`getFlowsRequest`):
`--first` excludes `--last`, `--all` and `--follow`; `--last` excludes `--all`; with no time
window and no `--first`, `--all` means everything and a plain non-follow run shows the last 20;
`--until` is ignored when following; `-o table` cannot follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from netstrata.observe.filters import (
    FILTER_FLAGS,
    NO_VALUE_FLAGS,
    FilterBuilder,
    FlowFilter,
    apply_flag,
    split_flag,
)
from netstrata.observe.render import OUTPUTS, RenderOptions

DEFAULT_LAST: Final = 20
"""`hubble observe` with no selection flags prints the last 20 flows."""

_BOOL_FLAGS: Final = frozenset({"follow", "all", "print-node-name", "print-policy-names",
                                "numeric", "ip-translation"})
_VALUE_FLAGS: Final = frozenset({"output", "time-format", "last", "first"})
_SHORT: Final = {"o": "output", "f": "follow"}
_TRUE: Final = ("", "true", "1", "t", "TRUE", "True")
_FALSE: Final = ("false", "0", "f", "FALSE", "False")


@dataclass(frozen=True, slots=True)
class ObserveArgs:
    """A parsed `observe` invocation."""

    allow: tuple[FlowFilter, ...]
    deny: tuple[FlowFilter, ...]
    first: int = 0
    last: int = 0
    """0 = no limit (after defaults were applied)."""
    follow: bool = False
    render: RenderOptions = RenderOptions()
    everything: bool = False
    """`--all`: with `--follow`, the whole history first, then new flows."""


def _bool(name: str, value: str | None) -> bool:
    if value is None or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"invalid argument {value!r} for --{name}: expected true or false")


def _count(name: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"invalid argument {value!r} for --{name}: expected a number")
    return int(value)


def parse_observe_args(argv: Sequence[str], now_ns: int | None = None) -> ObserveArgs:
    """Parse `hubble observe` arguments (filters, `--last/--first/--all/-f`, `-o`, ...).

    Raises:
        ValueError: unknown flag, bad value, or a combination Hubble refuses.
    """
    builder = FilterBuilder()
    opts: dict[str, object] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and not arg.startswith("--") and arg[1:2] in _SHORT:
            argv = [*argv[:i], "--" + _SHORT[arg[1]] + ("=" + arg[2:] if arg[2:] else ""),
                    *argv[i + 1:]]
        name, value, i = split_flag(argv, i)
        if name in _BOOL_FLAGS:
            opts[name] = _bool(name, value)
            continue
        if name not in FILTER_FLAGS and name not in _VALUE_FLAGS:
            raise ValueError(f"unknown flag: --{name}")
        if value is None and name not in NO_VALUE_FLAGS:
            if i >= len(argv):
                raise ValueError(f"flag needs an argument: --{name}")
            value, i = argv[i], i + 1
        if name in _VALUE_FLAGS:
            opts[name] = value
        else:
            apply_flag(builder, name, value or "", now_ns)
    return _finish(builder, opts)


def _finish(builder: FilterBuilder, opts: dict[str, object]) -> ObserveArgs:
    follow = bool(opts.get("follow", False))
    everything = bool(opts.get("all", False))
    first = _count("first", str(opts["first"])) if "first" in opts else 0
    last = _count("last", str(opts["last"])) if "last" in opts else 0
    if first and last:
        raise ValueError("cannot set both --first and --last")
    if first and everything:
        raise ValueError("cannot set both --first and --all")
    if first and follow:
        raise ValueError("cannot set both --first and --follow")
    if last and everything:
        raise ValueError("cannot set both --last and --all")
    if follow:
        builder.until_ns = None  # Hubble ignores --until when following
    if builder.since_ns is None and builder.until_ns is None and not first and not everything:
        if last == 0 and not follow:
            last = DEFAULT_LAST
    output = str(opts.get("output", "compact"))
    output = {"tab": "table", "JSON": "json"}.get(output, output)
    if output not in OUTPUTS:
        raise ValueError(f"invalid output format: {output}")
    if output == "table" and follow:
        raise ValueError("table output format is not compatible with follow mode")
    numeric = bool(opts.get("numeric", False))
    render = RenderOptions(
        output=output,  # type: ignore[arg-type]
        time_format=str(opts.get("time-format", "StampMilli")),
        print_node_name=bool(opts.get("print-node-name", False)),
        print_policy_names=bool(opts.get("print-policy-names", False)),
        ip_translation=bool(opts.get("ip-translation", True)) and not numeric,
    )
    allow, deny = builder.build()
    return ObserveArgs(tuple(allow), tuple(deny), first, last, follow, render, everything)


__all__ = ["DEFAULT_LAST", "ObserveArgs", "parse_observe_args"]
