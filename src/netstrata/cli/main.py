"""The `netstrata` command: argument parsing and dispatch only.

Each command group lives in its own module exposing `register(subparsers)`; the handler a
command sets with `set_defaults(func=...)` returns the process exit status. Errors of the
project's own types are printed without a traceback and exit 2; nothing else is caught here, so
a bug shows as a bug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from netstrata import __version__
from netstrata.errors import NetstrataError

# Command-group modules, in the order `--help` lists them. Each has `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = (
    "netstrata.cli.demo_cmd",
    "netstrata.cli.policy_cmd",
    "netstrata.cli.identity_cmd",
    "netstrata.cli.mesh_cmd",
    "netstrata.cli.lab_cmd",
    "netstrata.cli.observe_cmd",
    "netstrata.cli.bench_cmd",
    "netstrata.cli.ui_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netstrata",
        description="Identity-aware network policy in layers: kernel L3/L4, L7 proxy, mesh authz.",
    )
    parser.add_argument("--version", action="version", version=f"netstrata {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except NetstrataError as exc:
        print(f"netstrata: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
