"""`netstrata bench ...`: side-by-side measurements that print figures and ratios."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="benchmarks (each prints its figures and the command to record)")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    cp = bsub.add_parser("control-plane", help="policy resolution on a synthetic cluster")
    cp.add_argument("--endpoints", type=int, default=10_000)
    cp.add_argument("--identities", type=int, default=2_000)
    cp.add_argument("--policies", type=int, default=1_000)
    cp.set_defaults(func=cmd_control_plane)


def cmd_control_plane(args: argparse.Namespace) -> int:
    from netstrata.bench.control_plane import run

    def progress(msg: str) -> None:
        print(f"... {msg}", file=sys.stderr, flush=True)

    r = run(args.endpoints, args.identities, args.policies, progress)
    print(f"synthetic cluster: {args.endpoints} endpoints, {args.identities} identities, {args.policies} policies")
    print(f"  translate policies        {r['translate_s'] * 1000:9.1f} ms")
    print(f"  load identities           {r['identities_s'] * 1000:9.1f} ms")
    print(f"  full resolve              {r['full_resolve_s'] * 1000:9.1f} ms   (target < 2000 ms; "
          f"{r['full_resolve_s'] / 2.0:.2f}x of target)  {int(r['map_entries'])} map entries")
    print(f"  one identity added        {r['incremental_identity_ms']:9.2f} ms   median of 21, max "
          f"{r['incremental_identity_max_ms']:.2f} ms (target < 5 ms; {r['incremental_identity_ms'] / 5:.2f}x; "
          f"{int(r['reresolved_for_identity'])} endpoints' policies updated)")
    print(f"  one policy changed        {r['incremental_policy_ms']:9.2f} ms   median of 21, max "
          f"{r['incremental_policy_max_ms']:.2f} ms (target < 5 ms; {r['incremental_policy_ms'] / 5:.2f}x; "
          f"{int(r['reresolved_for_policy'])} identities re-resolved)")
    print(f"  peak memory (tracemalloc) {r['peak_mib']:9.1f} MiB")
    return 0
