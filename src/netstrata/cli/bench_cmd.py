"""`netstrata bench ...`: side-by-side measurements that print figures and ratios."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="benchmarks (each prints its figures and the command to record)")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    cp = bsub.add_parser("control-plane", help="policy resolution on a synthetic cluster")
    cp.add_argument("--endpoints", type=int, default=10_000)
    cp.add_argument("--identities", type=int, default=2_000)
    cp.add_argument("--policies", type=int, default=1_000)
    cp.set_defaults(func=cmd_control_plane)
    _register_datapath(bsub)
    _register_churn(bsub)
    _register_proxy(bsub)
    _register_observe_and_mesh(bsub)


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


# ------------------------------------------------------------------ datapath and churn


def _interrupt_on_sigterm() -> None:
    """A terminated bench tears down like an interrupted one (namespaces, programs, servers).

    A run started in the background (`cmd &`, nohup) has SIGINT ignored, so `kill` (SIGTERM)
    is how it gets stopped; by default that would skip every `finally` and leave the lanes up.
    """

    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        if os.getpid() != owner:
            # A forked helper (pyroute2 forks into namespaces) shares this stack: unwinding it
            # there would run the bench's teardown in the child and delete the live lanes.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _progress(msg: str) -> None:
    print(f"... {msg}", file=sys.stderr, flush=True)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("expected non-negative integers")
    return values


def _cpu(text: str) -> int | None:
    return None if text == "none" else int(text)


def _register_datapath(bsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = bsub.add_parser("datapath", help="L3/L4 policy cost vs N: no program, eBPF, iptables, nftables (root)")
    p.add_argument("--entries", type=_int_list, default=None,
                   help="comma-separated N (default 0,1000,5000,10000,20000,100000)")
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 1.5)")
    p.add_argument("--rounds", type=int, default=None, help="measurements per point, median kept (default 3)")
    p.add_argument("--lanes", default=None, help="comma-separated subset of baseline,ebpf,iptables,iptables-est,nftset")
    p.add_argument("--quick", action="store_true", help="N=0,1k,20k, 1 s, one round (about a minute)")
    p.add_argument("--client-cpu", type=_cpu, default=0, help="CPU for the load generator client ('none': unpinned)")
    p.add_argument("--server-cpu", type=_cpu, default=0,
                   help="CPU for the server (default 0: the client's, no cross-CPU wakeup per transaction)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each point wait up to S seconds for other processes to leave the machine idle")
    p.add_argument("--plot", default="netstrata-bench-datapath.png", help="PNG to write (matplotlib)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("-o", "--output", choices=("table", "markdown", "json"), default="table")
    p.set_defaults(func=cmd_datapath)


def cmd_datapath(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from netstrata.bench import _render
    from netstrata.bench.datapath import DatapathBenchConfig, run

    _interrupt_on_sigterm()
    cfg = DatapathBenchConfig.quick() if args.quick else DatapathBenchConfig()
    overrides: dict[str, object] = {"client_cpu": args.client_cpu, "server_cpu": args.server_cpu,
                                    "wait_quiet_s": args.wait_quiet}
    if args.entries is not None:
        overrides["entries"] = args.entries
    if args.duration is not None:
        overrides["duration"] = args.duration
    if args.rounds is not None:
        overrides["rounds"] = max(1, args.rounds)
    if args.lanes:
        overrides["lanes"] = tuple(v.strip() for v in args.lanes.split(",") if v.strip())
    report = run(dataclasses.replace(cfg, **overrides), _progress)  # type: ignore[arg-type]
    if args.output == "json":
        print(json.dumps(_render.datapath_json(report), indent=2))
    elif args.output == "markdown":
        print(_render.datapath_markdown(report))
    else:
        print(_render.datapath_text(report))
    if not args.no_plot:
        try:
            from netstrata.bench.plot import plot_datapath

            _progress(f"plot written to {plot_datapath(report, args.plot)}")
        except ImportError:
            _progress("matplotlib is not installed: no plot (pip install matplotlib)")
    return 0


def _register_churn(bsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = bsub.add_parser("churn", help="programming time and time to enforce under policy churn (root)")
    p.add_argument("--entries", type=int, default=100_000, help="policy entries of the full sync (default 100000)")
    p.add_argument("--rate", type=float, default=100.0, help="policy changes per second (default 100)")
    p.add_argument("--seconds", type=float, default=None, help="churn duration (default 5)")
    p.add_argument("--probe-rate", type=float, default=5000.0, help="probe datagrams per second (default 5000)")
    p.add_argument("--background", type=int, default=100,
                   help="static /32 CIDR peers of the churned endpoint (default 100)")
    p.add_argument("--quick", action="store_true", help="2 s of churn, 11 samples per change size")
    p.add_argument("--skip-sync", action="store_true", help="only the time-to-enforce part")
    p.add_argument("--skip-enforce", action="store_true", help="only the programming-time part")
    p.add_argument("-o", "--output", choices=("table", "markdown", "json"), default="table")
    p.set_defaults(func=cmd_churn)


def cmd_churn(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from netstrata.bench import _render
    from netstrata.bench.churn import ChurnConfig, run

    _interrupt_on_sigterm()
    cfg = ChurnConfig.quick() if args.quick else ChurnConfig()
    cfg = dataclasses.replace(cfg, sync_entries=args.entries, rate=args.rate, probe_rate=args.probe_rate,
                              background=args.background,
                              seconds=args.seconds if args.seconds is not None else cfg.seconds)
    report = run(cfg, _progress, sync=not args.skip_sync, enforce=not args.skip_enforce)
    if args.output == "json":
        print(json.dumps(_render.churn_json(report), indent=2))
    elif args.output == "markdown":
        print(_render.churn_markdown(report))
    else:
        print(_render.churn_text(report))
    return 0


# ------------------------------------------------------------------ observe and mesh


def _register_observe_and_mesh(bsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = bsub.add_parser("observe", help="events/s the agent's flow path keeps up with (stages; end to end as root)")
    p.add_argument("--events", type=int, default=None, help="synthetic records per stage (default 100000)")
    p.add_argument("--rates", type=_int_list, default=None,
                   help="comma-separated records/s for the end-to-end ladder (default 10k..400k)")
    p.add_argument("--seconds", type=float, default=None, help="producer run per rate (default 2)")
    p.add_argument("--stages-only", action="store_true", help="no kernel producer (no root needed)")
    p.add_argument("--quick", action="store_true", help="20k records per stage, 3 rates of 0.5 s")
    p.add_argument("--consumer-cpu", type=_cpu, default=0, help="CPU of the agent loop ('none': unpinned)")
    p.add_argument("--producer-cpu", type=_cpu, default=1, help="CPU of the kernel event producer")
    p.add_argument("-o", "--output", choices=("table", "markdown", "json"), default="table")
    p.set_defaults(func=cmd_observe)
    m = bsub.add_parser("mesh", help="plaintext vs mTLS vs mTLS+authz through the node-proxy tunnel")
    m.add_argument("--seconds", type=float, default=None, help="seconds per request/response lane (default 2)")
    m.add_argument("--quick", action="store_true", help="0.3 s per lane, fewer handshakes and decisions")
    m.add_argument("--client-cpu", type=_cpu, default=0, help="CPU of the client ('none': unpinned)")
    m.add_argument("--server-cpu", type=_cpu, default=1, help="CPU of the tunnel server and upstream")
    m.add_argument("-o", "--output", choices=("table", "markdown", "json"), default="table")
    m.set_defaults(func=cmd_mesh)


def cmd_observe(args: argparse.Namespace) -> int:
    import dataclasses

    from netstrata.bench import observe

    _interrupt_on_sigterm()
    cfg = observe.ObserveBenchConfig.quick() if args.quick else observe.ObserveBenchConfig()
    cfg = dataclasses.replace(
        cfg, stage_events=args.events or cfg.stage_events, rates=args.rates or cfg.rates,
        seconds=args.seconds or cfg.seconds, kernel=not args.stages_only,
        consumer_cpu=args.consumer_cpu, producer_cpu=args.producer_cpu)
    report = observe.run(cfg, _progress)
    print({"json": observe.as_json, "markdown": observe.render_markdown,
           "table": observe.render_text}[args.output](report))
    return 0


def cmd_mesh(args: argparse.Namespace) -> int:
    import dataclasses

    from netstrata.bench import mesh

    cfg = mesh.MeshBenchConfig.quick() if args.quick else mesh.MeshBenchConfig()
    cfg = dataclasses.replace(cfg, seconds=args.seconds or cfg.seconds,
                              client_cpu=args.client_cpu, server_cpu=args.server_cpu)
    report = mesh.run(cfg, _progress)
    print({"json": mesh.as_json, "markdown": mesh.render_markdown,
           "table": mesh.render_text}[args.output](report))
    return 0


def _register_proxy(bsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = bsub.add_parser("proxy", help="L7 proxy: HTTP/1.1, gRPC, DNS vs direct and nginx (wrk, h2load, nginx)")
    p.add_argument("--quick", action="store_true", help="one 0.5 s round per point (about 30 s)")
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 3)")
    p.add_argument("--rounds", type=int, default=None, help="measurements per point, median kept (default 3)")
    p.add_argument("--client-cpu", type=int, default=0, help="CPU of the clients and upstreams")
    p.add_argument("--middle-cpu", type=int, default=1, help="CPU of nginx's worker and of the proxy")
    p.add_argument("--plot", default="netstrata-bench-proxy.png", help="PNG to write (matplotlib)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("-o", "--output", choices=("table", "markdown", "json"), default="table")
    p.set_defaults(func=cmd_proxy)


def cmd_proxy(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from netstrata.bench import _render_proxy
    from netstrata.bench.proxy import BenchError, ProxyBenchConfig, run

    cfg = ProxyBenchConfig.quick() if args.quick else ProxyBenchConfig()
    cfg = dataclasses.replace(
        cfg, client_cpu=args.client_cpu, middle_cpu=args.middle_cpu,
        duration=cfg.duration if args.duration is None else args.duration,
        rounds=cfg.rounds if args.rounds is None else max(1, args.rounds))
    try:
        report = run(cfg, _progress)
    except BenchError as exc:
        print(f"netstrata bench proxy: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(_render_proxy.proxy_json(report), indent=2))
    elif args.output == "markdown":
        print(_render_proxy.proxy_markdown(report))
    else:
        print(_render_proxy.proxy_text(report))
    if not args.no_plot:
        try:
            from netstrata.bench.plot import plot_proxy

            _progress(f"plot written to {plot_proxy(report, args.plot)}")
        except ImportError:
            _progress("matplotlib is not installed: no plot (pip install matplotlib)")
    return 0
