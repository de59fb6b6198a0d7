"""`netstrata bench datapath`: L3/L4 policy cost against N entries (plan W1).

Five lanes, each its own node namespace with a client pod and a server pod wired to it exactly
as the lab wires pods (`netns.setup_node` / `wire_pod`: pod -> host veth -> node routing ->
host veth -> pod), identical except for what filters the forwarded packets:

  baseline      nothing at all (the physical veth + routing path)
  ebpf          netstrata's tc programs on both host veths; the server endpoint's ingress
                policy holds N entries for other identities plus the allow the traffic needs
  iptables      iptables-nft, N rules in a FORWARD sub-chain, the matching rules last
  iptables-est  the same behind an ESTABLISHED,RELATED accept (only first packets walk it)
  nftset        one nftables rule with an `ip saddr . tcp dport` set of N + 1 elements

Because every lane exists for the whole run, lanes are measured interleaved (round-robin,
rotated each round) for each N, so drift of the machine hits all of them alike and every
ratio is taken against a baseline measured minutes apart at most. The load generator is
`_loadgen` (C, pinned; client and server on CPU 0 by default): 1-byte TCP request/response over one connection (RR), connect +
1-byte request/response + RST close (CRR), and one bulk stream.

Everything lives in namespaces named `nstbn<pid>-...` and a pin directory `bench-<pid>`;
`run()` removes them on the way out, and a later run reaps those of a run that was killed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Final, Literal

from netstrata.bench import _iptables as fw
from netstrata.bench._loadgen import ClientResult, Server, build, run_client
from netstrata.datapath.kernel import KernelDatapath, default_pin_dir
from netstrata.datapath.loader.bpfobject import enable_run_stats
from netstrata.errors import NetstrataError
from netstrata.netns import PodLink, cleanup, list_netns, setup_node, wire_pod
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey, ResolvedPolicy

Progress = Callable[[str], None]
Metric = Literal["rr", "crr", "stream"]

LANES: Final = ("baseline", "ebpf", "iptables", "iptables-est", "nftset")
METRICS: Final[tuple[Metric, ...]] = ("rr", "crr", "stream")
DEFAULT_ENTRIES: Final = (0, 1000, 5000, 10000, 20000, 100000)
QUICK_ENTRIES: Final = (0, 1000, 20000)
ECHO_PORT: Final = 5201
SINK_PORT: Final = 5202
CLIENT_IP: Final = IPv4Address("10.201.0.1")
SERVER_IP: Final = IPv4Address("10.201.0.2")
EP_CLIENT, EP_SERVER = 1, 2
ID_CLIENT, ID_SERVER = 1001, 1002
TCP: Final = 6
BOTH_ENFORCED: Final = 3
"""EndpointFlag INGRESS_ENFORCED | EGRESS_ENFORCED."""

TARGET_RR: Final = 0.97
TARGET_CRR: Final = 0.95
TARGET_P99_US: Final = 5.0


class BenchError(NetstrataError):
    """The bench cannot run here (not root, a tool missing) or a lane failed."""


@dataclass(frozen=True, slots=True)
class DatapathBenchConfig:
    entries: tuple[int, ...] = DEFAULT_ENTRIES
    duration: float = 1.5
    """Seconds per measurement."""
    rounds: int = 3
    """Measurements per (lane, N, metric); the median is reported."""
    warmup: float = 0.3
    lanes: tuple[str, ...] = LANES
    client_cpu: int | None = 0
    server_cpu: int | None = 0
    """Client and server share one vCPU, as the reference's ground rules and its veth anchors
    measure it: every transaction stays on one CPU, so no cross-vCPU wakeup (an IPI, a VM exit on
    this machine kind) sits in the round trip. With them on two vCPUs the round trip was 3-4x
    longer and the lanes spread +-15 % between rounds; on one the spread is a few percent."""
    seed: int = 1
    wait_quiet_s: float = 0.0
    """Before each (N, metric), wait up to this long for other processes to leave the machine
    idle (below `BUSY_WARNING`): on a shared 2-vCPU box a neighbour's test run would
    otherwise land in the ratios."""

    @classmethod
    def quick(cls) -> DatapathBenchConfig:
        """About a minute on 2 cores: three N, one 1-second round."""
        return cls(entries=QUICK_ENTRIES, duration=1.0, rounds=1, warmup=0.2)


@dataclass(frozen=True, slots=True)
class Measurement:
    """The median over rounds of one (lane, N, metric)."""

    lane: str
    entries: int
    metric: Metric
    rate: float
    """Transactions (rr) or connections (crr) per second; 0 for stream."""
    gbit: float
    """Stream throughput; 0 for rr/crr."""
    p50_us: float
    p99_us: float
    p999_us: float
    cpu_us: float
    """Busy CPU of the whole machine per transaction/connection (rr, crr) or per MiB (stream)."""
    softirq_us: float
    """The softirq part of `cpu_us` (where tc programs and netfilter run)."""
    spread: float
    """(max - min) / median of the rate or throughput over rounds."""
    errors: int
    runs: int
    foreign: float = 0.0
    """The largest share of the machine other processes took during a kept measurement."""
    prog_ns: float = 0.0
    """eBPF lane: kernel-measured ns per program run (every packet on either host veth, both
    directions), run_time_ns / run_cnt over the kept measurements; immune to machine noise
    except cache effects. 0 for other lanes."""
    prog_runs: float = 0.0
    """eBPF lane: program runs per transaction/connection (warm-up and measured window both
    counted over the client's transactions at the measured rate, so approximate)."""

    @property
    def value(self) -> float:
        return self.gbit if self.metric == "stream" else self.rate


@dataclass(frozen=True, slots=True)
class TargetCheck:
    entries: int
    what: str
    measured: float
    target: str
    met: bool


@dataclass(frozen=True, slots=True)
class DatapathReport:
    config: DatapathBenchConfig
    measurements: tuple[Measurement, ...]
    programming_s: dict[tuple[str, int], float]
    """(lane, N) -> seconds to install that lane's rules/entries for N (from the previous N)."""
    notes: tuple[str, ...] = ()
    host: str = ""
    ratios: dict[tuple[str, int, str], float] = field(default_factory=dict)
    """(lane, N, metric) -> median over rounds of lane / baseline of the same round."""

    def get(self, lane: str, n: int, metric: Metric) -> Measurement | None:
        for m in self.measurements:
            if (m.lane, m.entries, m.metric) == (lane, n, metric):
                return m
        return None

    def ratio(self, lane: str, n: int, metric: Metric) -> float | None:
        """The lane's rate/throughput over the baseline's, same N, same run (per round when the
        report has per-round ratios, else of the medians)."""
        if (lane, n, metric) in self.ratios:
            return self.ratios[(lane, n, metric)]
        m, base = self.get(lane, n, metric), self.get("baseline", n, metric)
        if m is None or base is None or not base.value:
            return None
        return m.value / base.value

    def p99_delta_us(self, lane: str, n: int, metric: Metric = "rr") -> float | None:
        m, base = self.get(lane, n, metric), self.get("baseline", n, metric)
        return None if m is None or base is None else m.p99_us - base.p99_us

    def target_checks(self) -> list[TargetCheck]:
        """W1's targets for the eBPF lane at every N."""
        out: list[TargetCheck] = []
        for n in self.config.entries:
            rr, crr = self.ratio("ebpf", n, "rr"), self.ratio("ebpf", n, "crr")
            p99 = self.p99_delta_us("ebpf", n)
            if rr is not None:
                out.append(TargetCheck(n, "RR ratio", rr, f">= {TARGET_RR}", rr >= TARGET_RR))
            if crr is not None:
                out.append(TargetCheck(n, "CRR ratio", crr, f">= {TARGET_CRR}",
                                       crr >= TARGET_CRR))
            if p99 is not None:
                out.append(TargetCheck(n, "RR p99 delta (us)", p99, f"<= +{TARGET_P99_US}",
                                       p99 <= TARGET_P99_US))
        return out


@dataclass
class _Lane:
    name: str
    node: str
    client: PodLink
    server: PodLink
    server_proc: Server | None = None
    datapath: KernelDatapath | None = None
    """The ebpf lane's."""


@dataclass
class _Run:
    config: DatapathBenchConfig
    binary: Path
    tag: str
    progress: Progress
    lanes: list[_Lane] = field(default_factory=list)
    results: dict[tuple[str, int, str], list[ClientResult]] = field(default_factory=dict)
    """(lane, N, metric) -> one result per round, in round order."""
    foreign: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)
    prog: dict[tuple[str, int, str], list[tuple[int, int]]] = field(default_factory=dict)
    """(lane, N, metric) -> (run_time_ns, run_cnt) of the lane's programs per kept round."""
    programming: dict[tuple[str, int], float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ naming


def _prefix(tag: str) -> str:
    return f"{fw.NETNS_PREFIX}{tag}"


def _own(tag: str) -> str:
    """What every namespace of run `tag` starts with, and nothing of another run: the tag is
    a pid in hex, so `nstbn2fe` alone would also match run 2fe7's `nstbn2fe7-...`."""
    return f"{_prefix(tag)}-"


def _pin_dir(tag: str) -> Path:
    return default_pin_dir(f"bench-{tag}")


STALE_AFTER_S: Final = 6 * 3600
"""A dead run's namespaces are reaped only once they are this old (see `run_is_gone`)."""


def run_is_gone(tag: str, netns: str) -> bool:
    """Whether the bench run `tag` (its pid in hex) that made `netns` has ended.

    Its pid being absent from /proc is not enough: engineers sharing a machine may sit in
    separate pid namespaces over one /run/netns, where a live run elsewhere looks dead here,
    and reaping it would pull its namespaces out from under it mid-measurement. So the
    namespace must also be older than any run lasts (nsfs stamps it at creation).
    """
    try:
        if Path(f"/proc/{int(tag, 16)}").exists():
            return False
        age = time.time() - os.stat(f"/run/netns/{netns}").st_ctime
    except (ValueError, OSError):
        return False
    return age > STALE_AFTER_S


def reap_stale(progress: Progress | None = None) -> list[str]:
    """Remove namespaces and pins of earlier bench runs that were killed (kill -9)."""
    removed: list[str] = []
    for name in list_netns(fw.NETNS_PREFIX):
        tag = name[len(fw.NETNS_PREFIX):].split("-", 1)[0]
        if run_is_gone(tag, name):
            removed += cleanup(_own(tag))
            shutil.rmtree(_pin_dir(tag), ignore_errors=True)
    if removed and progress:
        progress(f"removed {len(removed)} leftovers of an interrupted bench run")
    return removed


def missing_requirements() -> str | None:
    """Why the bench cannot run at all here, or None."""
    if os.geteuid() != 0:
        return "bench datapath needs root (namespaces, tc, bpf(2), netfilter)"
    if shutil.which("taskset") is None:
        return "taskset not found (apt-get install util-linux): the load generator must be pinned"
    return None


# ------------------------------------------------------------------------------ lanes


def _setup_lane(run: _Run, index: int, name: str) -> _Lane:
    prefix = _prefix(run.tag)
    node = f"{prefix}-{index}n"
    setup_node(node)
    client = wire_pod(f"{prefix}-{index}c", CLIENT_IP, f"{prefix}{index}c", node_netns=node)
    server = wire_pod(f"{prefix}-{index}s", SERVER_IP, f"{prefix}{index}s", node_netns=node)
    lane = _Lane(name, node, client, server)
    run.lanes.append(lane)  # registered before anything can fail, so teardown sees it
    if name == "ebpf":
        _attach_ebpf(run, lane)
    lane.server_proc = Server(run.binary, server.pod_netns, ECHO_PORT, SINK_PORT,
                              cpu=run.config.server_cpu)
    return lane


def _attach_ebpf(run: _Run, lane: _Lane) -> None:
    dp = KernelDatapath(_pin_dir(run.tag), netns=lane.node)
    lane.datapath = dp
    dp.attach_endpoint(lane.client.host_if, EP_CLIENT, CLIENT_IP, ID_CLIENT, BOTH_ENFORCED)
    dp.attach_endpoint(lane.server.host_if, EP_SERVER, SERVER_IP, ID_SERVER, BOTH_ENFORCED)
    client_egress = {MapStateKey(Direction.EGRESS, ID_SERVER, TCP): MapStateEntry(cookie=1)}
    dp.apply_policy(ResolvedPolicy(EP_CLIENT, ID_CLIENT, 1, client_egress, True, True))


def server_entries(peers: Sequence[fw.Peer]) -> dict[MapStateKey, MapStateEntry]:
    """The server's ingress MapState: one L3/L4 allow per synthetic peer, plus the allows of the
    benchmark traffic (the client identity on the echo and sink ports)."""
    entries = {MapStateKey(Direction.INGRESS, p.identity, TCP, p.port, 16): MapStateEntry(cookie=7)
               for p in peers}
    for port in (ECHO_PORT, SINK_PORT):
        entries[MapStateKey(Direction.INGRESS, ID_CLIENT, TCP, port, 16)] = MapStateEntry(cookie=2)
    return entries


def _program(run: _Run, lane: _Lane, n: int, peers: Sequence[fw.Peer]) -> float:
    """Install lane's rules for N peers; returns seconds taken (0 for the baseline)."""
    ports = (ECHO_PORT, SINK_PORT)
    if lane.name == "ebpf":
        assert lane.datapath is not None
        policy = ResolvedPolicy(EP_SERVER, ID_SERVER, n + 1, server_entries(peers), True, True)
        start = time.perf_counter()
        lane.datapath.apply_policy(policy)
        return time.perf_counter() - start
    if lane.name in ("iptables", "iptables-est"):
        text = fw.iptables_ruleset(peers, CLIENT_IP, SERVER_IP, ports,
                                   established_first=lane.name == "iptables-est")
        return fw.load_iptables(lane.node, text)
    if lane.name == "nftset":
        return fw.load_nft(lane.node, fw.nft_ruleset(peers, CLIENT_IP, SERVER_IP, ports))
    return 0.0


def _teardown(run: _Run) -> None:
    for lane in run.lanes:
        if lane.server_proc is not None:
            lane.server_proc.stop()
        if lane.datapath is not None:
            lane.datapath.teardown()
    cleanup(_own(run.tag))
    shutil.rmtree(_pin_dir(run.tag), ignore_errors=True)


# --------------------------------------------------------------------------- measuring


def busy_fraction(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over `seconds` (/proc/stat), measured while the bench is idle:
    what other processes take from the machine the ratios are measured on."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle - fields[7], sum(fields) - fields[7]  # steal excluded

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


BUSY_WARNING: Final = 0.10


FOREIGN_LIMIT: Final = 0.05
"""Share of the machine other processes may take during one measurement before it is redone."""
MAX_ATTEMPTS: Final = 4


def _user_tasks() -> dict[tuple[int, int], int]:
    """(pid, start time) -> utime + stime ticks of every user-space process except this one
    and its children (the bench's own client and servers); kernel threads are left out."""
    me, out = os.getpid(), {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        ppid, flags = int(fields[1]), int(fields[6])
        if ppid == me or flags & 0x00200000:  # PF_KTHREAD
            continue
        out[(int(entry.name), int(fields[19]))] = int(fields[11]) + int(fields[12])
    return out


def foreign_share(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int],
                  seconds: float) -> float:
    """Share of the machine other processes used between two `_user_tasks()` snapshots
    (processes that started and ended in between are not seen)."""
    ticks = sum(t - before.get(key, 0) for key, t in after.items())
    capacity = seconds * (os.cpu_count() or 1) * os.sysconf("SC_CLK_TCK")
    return max(0, ticks) / capacity if capacity else 0.0


def _measure_one(run: _Run, lane: _Lane, n: int, metric: Metric) -> None:
    """One measurement, redone (after waiting for quiet) while other processes took more than
    FOREIGN_LIMIT of the machine during it; the last attempt is kept either way."""
    port = SINK_PORT if metric == "stream" else ECHO_PORT
    for attempt in range(1, MAX_ATTEMPTS + 1):
        before, start = _user_tasks(), time.monotonic()
        res, prog = _client_with_prog_stats(run, lane, metric, port)
        foreign = foreign_share(before, _user_tasks(), time.monotonic() - start)
        # Work other processes cause in the kernel (a neighbour's namespaces sending traffic)
        # shows in no process: a busy machine right after the measurement catches most of it.
        after = busy_fraction(0.15)
        if (foreign <= FOREIGN_LIMIT and after <= BUSY_WARNING) or attempt == MAX_ATTEMPTS:
            break
        run.progress(f"{lane.name} N={n} {metric}: other processes took {foreign:.0%} of the "
                     f"machine ({after:.0%} right after); measuring again")
        _wait_quiet(run, f"N={n} {metric}", note=False)
    run.results.setdefault((lane.name, n, metric), []).append(res)
    run.foreign.setdefault((lane.name, n, metric), []).append(foreign)
    if prog is not None:
        run.prog.setdefault((lane.name, n, metric), []).append(prog)


def _prog_totals(dp: KernelDatapath) -> tuple[int, int]:
    stats = dp.program_run_stats().values()
    return sum(t for t, _ in stats), sum(c for _, c in stats)


def _client_with_prog_stats(run: _Run, lane: _Lane, metric: Metric,
                            port: int) -> tuple[ClientResult, tuple[int, int] | None]:
    """One client run; on the eBPF lane, with the kernel counting the programs' run time (on
    only during this lane's runs, so the other lanes pay nothing for it)."""
    cfg = run.config

    def client() -> ClientResult:
        return run_client(run.binary, metric, lane.client.pod_netns, str(SERVER_IP), port,
                          seconds=cfg.duration, warmup=0.0 if metric == "stream" else cfg.warmup,
                          cpu=cfg.client_cpu)

    if lane.datapath is None:
        return client(), None
    with enable_run_stats():
        ns0, cnt0 = _prog_totals(lane.datapath)
        res = client()
        ns1, cnt1 = _prog_totals(lane.datapath)
    return res, (ns1 - ns0, cnt1 - cnt0)


def _wait_quiet(run: _Run, what: str, *, note: bool = True) -> None:
    deadline = time.monotonic() + run.config.wait_quiet_s
    busy = busy_fraction(0.3)
    while busy > BUSY_WARNING and time.monotonic() < deadline:
        run.progress(f"waiting for a quiet machine ({busy:.0%} busy) before {what}")
        time.sleep(2.0)
        busy = busy_fraction(0.3)
    if busy > BUSY_WARNING and note:
        run.notes.append(f"{what}: other processes kept the machine {busy:.0%} busy just before "
                         "it was measured")
        run.progress(run.notes[-1])


def _measure_n(run: _Run, n: int) -> None:
    for metric in METRICS:
        _wait_quiet(run, f"N={n} {metric}")
        for r in range(run.config.rounds):
            k = r % len(run.lanes)
            for lane in run.lanes[k:] + run.lanes[:k]:  # rotate so no lane always goes first
                _measure_one(run, lane, n, metric)
        run.progress(f"N={n} {metric}: " + ", ".join(
            f"{lane.name} {_summary(run, lane.name, n, metric)}" for lane in run.lanes))


def _summary(run: _Run, lane: str, n: int, metric: Metric) -> str:
    m = statistics.median(r.gbit if metric == "stream" else r.rate
                          for r in run.results[(lane, n, metric)])
    ratio = _round_ratio(run, lane, n, metric)
    shown = f"{m:.1f}G" if metric == "stream" else f"{m / 1000:.1f}k"
    return shown + (f" ({ratio:.3f}x)" if ratio is not None else "")


def _round_ratio(run: _Run, lane: str, n: int, metric: Metric) -> float | None:
    """Median over rounds of the lane's value over the baseline's in the same round."""
    mine, base = run.results.get((lane, n, metric)), run.results.get(("baseline", n, metric))
    if not mine or not base:
        return None
    def pick(r: ClientResult) -> float:
        return r.gbit if metric == "stream" else r.rate

    pairs = [pick(a) / pick(b) for a, b in zip(mine, base, strict=False) if pick(b)]
    return statistics.median(pairs) if pairs else None


def _per_op(r: ClientResult, cpu_us: float) -> float:
    """CPU µs per transaction/connection, or per MiB for a stream."""
    ops = r.bytes / 2**20 if r.mode == "stream" else r.count
    return cpu_us / ops if ops else 0.0


def _aggregate(lane: str, n: int, metric: Metric, results: list[ClientResult],
               foreign: list[float], prog: list[tuple[int, int]], warmup: float) -> Measurement:
    values = [r.gbit if metric == "stream" else r.rate for r in results]
    mid = statistics.median(values)

    def med(fn: Callable[[ClientResult], float]) -> float:
        return float(statistics.median(fn(r) for r in results))

    return Measurement(
        lane=lane, entries=n, metric=metric,
        rate=0.0 if metric == "stream" else mid, gbit=mid if metric == "stream" else 0.0,
        p50_us=med(lambda r: r.p50_ns / 1000), p99_us=med(lambda r: r.p99_ns / 1000),
        p999_us=med(lambda r: r.p999_ns / 1000),
        cpu_us=med(lambda r: _per_op(r, r.cpu_busy_us)),
        softirq_us=med(lambda r: _per_op(r, r.cpu_softirq_us)),
        spread=(max(values) - min(values)) / mid if mid else 0.0,
        errors=sum(r.errors for r in results), runs=len(results),
        foreign=max(foreign, default=0.0),
        **_prog_figures(metric, results, prog, warmup),
    )


def _prog_figures(metric: Metric, results: list[ClientResult], prog: list[tuple[int, int]],
                  warmup: float) -> dict[str, float]:
    runs = sum(c for _, c in prog)
    if not runs:
        return {}
    ops = sum(r.rate * (r.seconds + (0.0 if metric == "stream" else warmup)) for r in results)
    return {"prog_ns": sum(t for t, _ in prog) / runs,
            "prog_runs": runs / ops if metric != "stream" and ops else 0.0}


def _host() -> str:
    return f"Linux {os.uname().release}, {os.cpu_count()} CPUs"


def run(config: DatapathBenchConfig, progress: Progress) -> DatapathReport:
    """Build the lanes, measure every (N, metric, lane), tear everything down."""
    why = missing_requirements()
    if why:
        raise BenchError(why)
    lanes = list(config.lanes)
    notes: list[str] = []
    if any(name in ("iptables", "iptables-est", "nftset") for name in lanes):
        missing = fw.missing_tools()
        if missing:
            notes.append(f"netfilter lanes skipped: {missing}")
            lanes = [name for name in lanes if name not in ("iptables", "iptables-est", "nftset")]
    if "baseline" not in lanes:
        lanes.insert(0, "baseline")
    reap_stale(progress)
    run_ = _Run(config, build(), f"{os.getpid():x}", progress, notes=notes)
    notes = run_.notes
    peers_all = fw.synthetic_peers(max(config.entries, default=0), config.seed)
    try:
        for i, name in enumerate(lanes):
            _setup_lane(run_, i, name)
        progress(f"lanes up: {', '.join(lanes)}")
        for n in config.entries:
            for lane in run_.lanes:
                run_.programming[(lane.name, n)] = _program(run_, lane, n, peers_all[:n])
            progress(f"N={n}: programmed " + ", ".join(
                f"{lane} {s:.2f}s" for (lane, k), s in run_.programming.items() if k == n and s))
            _measure_n(run_, n)
    finally:
        _teardown(run_)
    measurements = tuple(_aggregate(lane, n, metric, res, run_.foreign[(lane, n, metric)],  # type: ignore[arg-type]
                                    run_.prog.get((lane, n, metric), []), config.warmup)
                         for (lane, n, metric), res in run_.results.items())
    ratios = {key: r for key in run_.results
              if (r := _round_ratio(run_, *key)) is not None}  # type: ignore[arg-type]
    return DatapathReport(config, measurements, dict(run_.programming), tuple(notes), _host(),
                          ratios)


__all__ = ["LANES", "METRICS", "BenchError", "busy_fraction", "DatapathBenchConfig", "DatapathReport",
           "Measurement", "TargetCheck", "missing_requirements", "reap_stale", "run", "run_is_gone",
           "server_entries"]
