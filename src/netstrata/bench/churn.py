"""`netstrata bench churn`: how fast policy reaches the kernel (plans W3 and W4).

Two parts:

* Programming time, no traffic: a full sync of N exact-port policy entries through
  `KernelDatapath.apply_policy` (bulk encoding, one BPF_MAP_UPDATE_BATCH into the exact hash
  `nst_policy_exact`), with the kernel's own floor beside it (the same bytes written from C
  with one BPF_MAP_UPDATE_BATCH, and with N single updates; and, for reference, the same
  entries batched into the LPM trie `nst_policy`, where they all went before the hash); then one changed entry with 1k, 20k and N entries present, handed over
  as the resolver's delta (`apply_change`, the agent's path for a one-line change) and, for
  comparison, as a whole MapState (`apply_policy`, one diff pass over every entry).
* Time to enforce under churn: a server pod whose ingress policy is rewritten `rate` times a
  second by writing a CiliumNetworkPolicy manifest. Each change goes the whole way an agent
  takes it: the manifest file is written, loaded and validated (`api.load_manifests`),
  translated and resolved (the cluster policy engine), and the difference is applied to the
  kernel. Meanwhile a C probe sends UDP datagrams from the client pod to the server at
  `probe_rate`, stamped with their send time; the receiver stamps arrivals. A change's
  time to enforce is from the manifest write to the first datagram with the new verdict
  (the first to arrive after an allow, the first lost after a deny). A datagram sent after a
  deny change was applied and that still arrived is a transient allow and is counted.

The policy cycles allow -> deny (an ingressDeny added over the allow) -> allow -> deny (the
allow removed, the endpoint still enforced by a static background policy), so both ways a
deny can come about are exercised. The bench plays the agent inline (the agent daemon needs a
whole `lab up`): one thread writes the file and then runs the agent's steps, handing the
kernel each endpoint's delta as `NodeAgent.sync` does; a write therefore never waits behind a
slower one, and the achieved rate is reported beside the asked one. The daemon adds only its
wake-up: inotify's IN_CLOSE_WRITE/IN_MOVED_TO, well under a millisecond.
"""

from __future__ import annotations

import bisect
import functools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Final

from netstrata.api import ManifestSet, load_manifests
from netstrata.bench._iptables import synthetic_peers
from netstrata.bench._loadgen import MapFill, ProbeLog, ProbeStream, build, run_mapfill
from netstrata.bench.datapath import BenchError, missing_requirements, run_is_gone
from netstrata.datapath.kernel import (
    KernelDatapath,
    PolicyChange,
    default_pin_dir,
    endpoint_flags,
    policy_change,
)
from netstrata.datapath.maps import POLICY_ENTRY, POLICY_EXACT_KEY, POLICY_KEY, kernel_view
from netstrata.datapath.policy_batch import (
    encode_policy_entries,
    encode_policy_exact_entries,
    encode_policy_exact_keys,
    encode_policy_keys,
)
from netstrata.lab.from_manifests import lab_from_manifests
from netstrata.lab.simulate import ReferenceLab
from netstrata.netns import PodLink, cleanup, list_netns, setup_node, wire_pod
from netstrata.policy.rules import Catalog
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey, ResolvedPolicy

Progress = Callable[[str], None]

NETNS_PREFIX: Final = "nstbc"
CLIENT_IP: Final = IPv4Address("10.202.0.1")
SERVER_IP: Final = IPv4Address("10.202.0.2")
PROBE_PORT: Final = 7000
CLUSTER: Final = "default"
SCRATCH_EP: Final = 7
SCRATCH_ID: Final = 500
SCRATCH_EP_C: Final = 8
"""A second endpoint id for the C floor measurements, so they never touch SCRATCH_EP's keys."""
CHANGE_SIZES: Final = (1000, 20000)

TARGET_SYNC_MS: Final = 100.0
TARGET_CHANGE_MS: Final = 1.0
TARGET_P50_MS: Final = 10.0
TARGET_P99_MS: Final = 100.0


@dataclass(frozen=True, slots=True)
class ChurnConfig:
    sync_entries: int = 100_000
    change_samples: int = 21
    rate: float = 100.0
    """Policy changes per second."""
    seconds: float = 5.0
    probe_rate: float = 5000.0
    """Probe datagrams per second: the resolution of time to enforce is 1/probe_rate."""
    background: int = 100
    """/32 CIDR peers in a static policy of the churned endpoint (each is one map entry)."""
    client_cpu: int | None = 0
    server_cpu: int | None = 1

    @classmethod
    def quick(cls) -> ChurnConfig:
        return cls(change_samples=11, seconds=2.0)


@dataclass(frozen=True, slots=True)
class SyncResult:
    entries: int
    full_sync_ms: float
    """`apply_policy` from empty to N entries (Python: diff, codecs, one batched write)."""
    encode_ms: float
    """Of which building and encoding N keys and values with the shared codecs."""
    full_delete_ms: float
    """`apply_policy` from N entries back to none."""
    c_batch: MapFill
    """The same N entries from C into the exact hash (what the sync writes), one
    BPF_MAP_UPDATE_BATCH (and one BPF_MAP_DELETE_BATCH)."""
    c_single: MapFill
    """The same N entries from C into the exact hash, one BPF_MAP_UPDATE_ELEM each."""
    change_ms: dict[int, tuple[float, float]]
    """Entries present -> (median, max) ms of `apply_change` for one changed entry."""
    change_full_ms: dict[int, tuple[float, float]]
    """The same change handed over as a whole MapState (`apply_policy`)."""
    c_one_update_us: float
    """One BPF_MAP_UPDATE_ELEM from C with N entries present (mean of 1,000)."""
    c_batch_lpm: MapFill
    """For reference: the same N entries from C into the LPM trie, one BPF_MAP_UPDATE_BATCH
    (the floor of the sync before exact ports had their hash)."""


@dataclass(frozen=True, slots=True)
class Change:
    written_ns: int
    applied_ns: int
    allowed: bool


@dataclass(frozen=True, slots=True)
class EnforceResult:
    changes: int
    seconds: float
    """Wall time of the churn; changes / seconds is the achieved rate."""
    background_entries: int
    pipeline_ms: tuple[float, ...]
    """Write -> applied in the kernel, per change."""
    enforce_ms: tuple[float, ...]
    """Write -> first datagram with the new verdict, per observed change."""
    enforce_allow_ms: tuple[float, ...]
    enforce_deny_ms: tuple[float, ...]
    unobserved: int
    """Changes no datagram observed before the next change was written."""
    transient_allows: int
    """Datagrams that arrived though sent after a deny change was applied (must be 0)."""
    transient_denies: int
    """Datagrams lost though sent after an allow change was applied."""
    probes_sent: int
    probes_received: int


@dataclass(frozen=True, slots=True)
class ChurnReport:
    config: ChurnConfig
    sync: SyncResult | None
    enforce: EnforceResult | None
    notes: tuple[str, ...] = ()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ------------------------------------------------------------------- programming time


def _entries(n: int, seed: int = 3) -> dict[MapStateKey, MapStateEntry]:
    return {MapStateKey(Direction.INGRESS, p.identity, 6, p.port, 16): MapStateEntry(cookie=5)
            for p in synthetic_peers(n, seed)}


def _encode(endpoint_id: int, entries: dict[MapStateKey, MapStateEntry]) -> tuple[bytes, bytes]:
    """The exact-hash keys and values of `entries` (all exact ports)."""
    return (encode_policy_exact_keys(endpoint_id, list(entries)),
            encode_policy_exact_entries([kernel_view(e) for e in entries.values()]))


def _encode_lpm(endpoint_id: int,
                entries: dict[MapStateKey, MapStateEntry]) -> tuple[bytes, bytes]:
    """The same entries as LPM-trie keys and values (the reference floor)."""
    keys = list(entries)
    return (encode_policy_keys(endpoint_id, keys),
            encode_policy_entries(keys, [kernel_view(e) for e in entries.values()]))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _policy(entries: dict[MapStateKey, MapStateEntry], revision: int) -> ResolvedPolicy:
    return ResolvedPolicy(SCRATCH_EP, SCRATCH_ID, revision, entries, True, True)


def _one_change_ms(dp: KernelDatapath, entries: dict[MapStateKey, MapStateEntry],
                   samples: int, *, whole: bool) -> tuple[float, float]:
    """Median and max ms of applying one flipped entry (allow <-> deny) to `entries`: as the
    delta (`apply_change`) or, `whole`, as the whole MapState (`apply_policy`)."""
    key = next(iter(entries))
    flipped = MapStateEntry(deny=True, precedence=255, cookie=6)
    variants = [_policy(entries, 0), _policy({**entries, key: flipped}, 0)]
    deltas = [PolicyChange(SCRATCH_EP, 0, {key: e}, (), True, True) for e in (entries[key], flipped)]
    times = []
    for i in range(samples):
        if whole:
            call = functools.partial(dp.apply_policy, replace(variants[(i + 1) % 2], revision=100 + i))
        else:
            call = functools.partial(dp.apply_change, replace(deltas[(i + 1) % 2], revision=100 + i))
        times.append(_timed(call))
    dp.apply_policy(variants[0])
    return statistics.median(times), max(times)


def _changes(dp: KernelDatapath, entries: dict[MapStateKey, MapStateEntry],
             samples: int) -> tuple[tuple[float, float], tuple[float, float]]:
    return (_one_change_ms(dp, entries, samples, whole=False),
            _one_change_ms(dp, entries, samples, whole=True))


def measure_sync(config: ChurnConfig, binary: Path, tag: str, progress: Progress) -> SyncResult:
    """Programming time on a scratch map set (nothing attached, no traffic)."""
    n = config.sync_entries
    pin = default_pin_dir(f"churn-{tag}")
    work = Path(tempfile.mkdtemp(prefix="nst-churn-"))
    dp = KernelDatapath(pin)
    try:
        entries = _entries(n)
        start = time.perf_counter()
        keys, values = _encode(SCRATCH_EP_C, entries)
        encode_ms = (time.perf_counter() - start) * 1000
        exact = pin / "nst_policy_exact"
        sizes = {"key_size": POLICY_EXACT_KEY.size, "value_size": POLICY_ENTRY.size}
        c_batch = run_mapfill(binary, exact, keys, values, batch=True, workdir=work, **sizes)
        c_single = run_mapfill(binary, exact, keys, values, batch=False, workdir=work, **sizes)
        lpm_keys, lpm_values = _encode_lpm(SCRATCH_EP_C, entries)
        c_batch_lpm = run_mapfill(binary, pin / "nst_policy", lpm_keys, lpm_values, batch=True,
                                  workdir=work, key_size=POLICY_KEY.size,
                                  value_size=POLICY_ENTRY.size)
        progress(f"C floor: {n} entries batched {c_batch.update_ns / 1e6:.1f} ms, "
                 f"single {c_single.update_ns / 1e6:.1f} ms "
                 f"(LPM trie batched: {c_batch_lpm.update_ns / 1e6:.1f} ms)")
        full_ms = _timed(lambda: dp.apply_policy(_policy(entries, 1)))
        progress(f"Python full sync of {n} entries: {full_ms:.0f} ms")
        changes, whole = {}, {}
        changes[n], whole[n] = _changes(dp, entries, config.change_samples)
        one = run_mapfill(binary, exact, keys[: 1000 * POLICY_EXACT_KEY.size],
                          values[: 1000 * POLICY_ENTRY.size], batch=False, workdir=work, **sizes)
        delete_ms = _timed(lambda: dp.apply_policy(_policy({}, 200)))
        for size in (s for s in CHANGE_SIZES if s < n):
            subset = dict(list(entries.items())[:size])
            dp.apply_policy(_policy(subset, 300))
            changes[size], whole[size] = _changes(dp, subset, config.change_samples)
            dp.apply_policy(_policy({}, 301))
        progress("one change (delta / whole MapState): " + ", ".join(
            f"{k} present {v[0]:.2f} / {whole[k][0]:.2f} ms" for k, v in sorted(changes.items())))
    finally:
        dp.teardown()
        shutil.rmtree(work, ignore_errors=True)
    return SyncResult(n, full_ms, encode_ms, delete_ms, c_batch, c_single, changes, whole,
                      one.update_ns / one.count / 1000, c_batch_lpm)


# -------------------------------------------------------------- time to enforce


_WORKLOADS: Final = """\
apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {node: node-1}
---
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {node: node-1}
"""

_PROBE_HEAD: Final = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: probe, namespace: bench}
spec:
  endpointSelector: {matchLabels: {app: server}}
"""
_FROM_CLIENT: Final = "  - fromEndpoints: [{matchLabels: {app: client}}]\n"


def _ports(port: int) -> str:
    return f"    toPorts: [{{ports: [{{port: \"{port}\", protocol: UDP}}]}}]\n"


STATES: Final = (
    ("allow", True, _PROBE_HEAD + "  ingress:\n" + _FROM_CLIENT + _ports(PROBE_PORT)),
    ("deny-rule", False, _PROBE_HEAD + "  ingress:\n" + _FROM_CLIENT + _ports(PROBE_PORT)
     + "  ingressDeny:\n" + _FROM_CLIENT + _ports(PROBE_PORT)),
    ("allow", True, _PROBE_HEAD + "  ingress:\n" + _FROM_CLIENT + _ports(PROBE_PORT)),
    ("allow-removed", False, _PROBE_HEAD + "  ingress:\n" + _FROM_CLIENT + _ports(PROBE_PORT + 1)),
)
"""The cycle of the probe policy: (name, probe allowed, manifest)."""


def background_policy(n: int) -> str:
    """A static policy of the server: TCP 9000 from `n` /32 CIDRs (one entry each), which also
    keeps its ingress enforced when the probe's allow is removed."""
    cidrs = "".join(f"    - {IPv4Address(int(IPv4Address('10.250.0.0')) + i)}/32\n"
                    for i in range(max(n, 1)))
    return ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
            "metadata: {name: background, namespace: bench}\nspec:\n"
            "  endpointSelector: {matchLabels: {app: server}}\n  ingress:\n"
            "  - fromCIDR:\n" + cidrs
            + "    toPorts: [{ports: [{port: \"9000\", protocol: TCP}]}]\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class _Agent:
    """The agent's steps for one manifest change, inline (see the module docstring).

    Like a watching agent told which file changed, it re-reads only that file and keeps the
    others' parsed contents; then the engine resolves and the kernel gets the difference.
    """

    lab: ReferenceLab
    datapath: KernelDatapath
    policy_dir: Path
    endpoint_ids: dict[int, int]
    """Engine endpoint id -> kernel endpoint id."""
    parsed: dict[Path, ManifestSet]
    applied: dict[int, ResolvedPolicy] = field(default_factory=dict)
    """Kernel endpoint id -> the policy last applied (the base of the next delta)."""

    def step(self, changed: Path | None = None) -> None:
        for path in [changed] if changed else sorted(self.policy_dir.glob("*.yaml")):
            self.parsed[path] = load_manifests([path])
        sets = list(self.parsed.values())
        cilium = tuple(p for m in sets for p in m.cilium_policies)
        k8s = tuple(p for m in sets for p in m.network_policies)
        self.lab.apply(CLUSTER, cilium, k8s, Catalog())
        engine = self.lab.engine(CLUSTER)
        prefixes: dict[str | IPv4Network | IPv4Address, int] = {
            k: v for k, v in engine.cidr_prefixes().items()}
        self.datapath.sync_ipcache(prefixes)
        for engine_ep, kernel_ep in self.endpoint_ids.items():
            resolved = replace(engine.state.policies[engine_ep], endpoint_id=kernel_ep)
            previous = self.applied.get(kernel_ep)
            if previous is None:
                self.datapath.apply_policy(resolved)
            else:
                self.datapath.apply_change(policy_change(previous, resolved))
            self.applied[kernel_ep] = resolved


def _build_agent(node: str, links: dict[str, PodLink], work: Path, pin: Path,
                 background: int) -> _Agent:
    (work / "workloads.yaml").write_text(_WORKLOADS)
    policy_dir = work / "policy"
    policy_dir.mkdir()
    (policy_dir / "background.yaml").write_text(background_policy(background))
    _write_atomic(policy_dir / "probe.yaml", STATES[0][2])
    lab = lab_from_manifests([work / "workloads.yaml", policy_dir])
    engine = lab.engine(CLUSTER)
    dp = KernelDatapath(pin, netns=node)
    ids: dict[int, int] = {}
    for engine_ep, ep in sorted(engine.endpoints.items()):
        link = links[ep.workload.name]
        resolved = engine.state.policies[engine_ep]
        flags = endpoint_flags(resolved.ingress_enforced, resolved.egress_enforced, resolved.audit)
        dp.attach_endpoint(link.host_if, engine_ep, link.ip, ep.identity, flags)
        ids[engine_ep] = engine_ep
    agent = _Agent(lab, dp, policy_dir, ids, {})
    agent.step()
    return agent


def _churn(agent: _Agent, config: ChurnConfig) -> list[Change]:
    changes: list[Change] = []
    period_ns = int(1e9 / config.rate)
    start = time.monotonic_ns()
    for i in range(int(config.rate * config.seconds)):
        delay = start + i * period_ns - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        _name, allowed, text = STATES[(i + 1) % len(STATES)]
        written = time.monotonic_ns()
        _write_atomic(agent.policy_dir / "probe.yaml", text)
        agent.step(agent.policy_dir / "probe.yaml")
        changes.append(Change(written, time.monotonic_ns(), allowed))
    return changes


def analyse(changes: Sequence[Change], log: ProbeLog, background: int = 0,
            seconds: float = 0.0) -> EnforceResult:
    """Time to enforce and transient verdicts from the change times and the probe logs."""
    sent = log.sent_ns
    enforce: list[float] = []
    allow_ms: list[float] = []
    deny_ms: list[float] = []
    unobserved = transient_allows = transient_denies = 0
    for i, ch in enumerate(changes):
        end = changes[i + 1].written_ns if i + 1 < len(changes) else None
        lo = bisect.bisect_left(sent, ch.written_ns)
        hi = bisect.bisect_left(sent, end) if end is not None else len(sent)
        first: float | None = None
        for seq in range(lo, hi):
            arrived = log.received.get(seq)
            if first is None and (arrived is not None) == ch.allowed:
                first = ((arrived if arrived is not None else sent[seq]) - ch.written_ns) / 1e6
            if end is None or sent[seq] < ch.applied_ns:
                continue
            if ch.allowed and arrived is None:
                transient_denies += 1
            elif not ch.allowed and arrived is not None:
                transient_allows += 1
        if first is None:
            unobserved += 1
            continue
        enforce.append(first)
        (allow_ms if ch.allowed else deny_ms).append(first)
    return EnforceResult(
        changes=len(changes), seconds=seconds, background_entries=background,
        pipeline_ms=tuple((c.applied_ns - c.written_ns) / 1e6 for c in changes),
        enforce_ms=tuple(enforce), enforce_allow_ms=tuple(allow_ms),
        enforce_deny_ms=tuple(deny_ms), unobserved=unobserved,
        transient_allows=transient_allows, transient_denies=transient_denies,
        probes_sent=len(sent), probes_received=len(log.received))


def measure_enforcement(config: ChurnConfig, binary: Path, tag: str,
                        progress: Progress) -> EnforceResult:
    prefix = f"{NETNS_PREFIX}{tag}"
    pin = default_pin_dir(f"churn-{tag}")
    work = Path(tempfile.mkdtemp(prefix="nst-churn-"))
    agent: _Agent | None = None
    try:
        node = f"{prefix}-n"
        setup_node(node)
        links = {
            "client": wire_pod(f"{prefix}-c", CLIENT_IP, f"{prefix}c", node_netns=node),
            "server": wire_pod(f"{prefix}-s", SERVER_IP, f"{prefix}s", node_netns=node),
        }
        agent = _build_agent(node, links, work, pin, config.background)
        probe = ProbeStream(binary, f"{prefix}-c", f"{prefix}-s", str(SERVER_IP), PROBE_PORT,
                            rate=config.probe_rate, seconds=config.seconds + 1.0, workdir=work,
                            cpu=config.client_cpu)
        try:
            time.sleep(0.3)  # the flow is established (allowed) before the first change
            start = time.monotonic()
            changes = _churn(agent, config)
            took = time.monotonic() - start
        except BaseException:
            probe.abort()
            raise
        log = probe.finish(timeout=config.seconds + 10)
        progress(f"{len(changes)} changes in {took:.2f}s; {len(log.sent_ns)} probes sent, "
                 f"{len(log.received)} received")
        return analyse(changes, log, config.background, took)
    finally:
        if agent is not None:
            agent.datapath.teardown()
        cleanup(f"{prefix}-")  # the run's namespaces only (its tag is a pid: 2fe is a prefix of 2fe7)
        shutil.rmtree(pin, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _reap_stale() -> None:
    for name in list_netns(NETNS_PREFIX):
        tag = name[len(NETNS_PREFIX):].split("-", 1)[0]
        if run_is_gone(tag, name):
            cleanup(f"{NETNS_PREFIX}{tag}-")
            shutil.rmtree(default_pin_dir(f"churn-{tag}"), ignore_errors=True)


def run(config: ChurnConfig, progress: Progress, *, sync: bool = True,
        enforce: bool = True) -> ChurnReport:
    why = missing_requirements()
    if why:
        raise BenchError(why.replace("bench datapath", "bench churn"))
    _reap_stale()
    binary = build()
    tag = f"{os.getpid():x}"
    sync_result = measure_sync(config, binary, tag, progress) if sync else None
    enforce_result = measure_enforcement(config, binary, tag, progress) if enforce else None
    return ChurnReport(config, sync_result, enforce_result)


__all__ = ["STATES", "Change", "ChurnConfig", "ChurnReport", "EnforceResult", "SyncResult",
           "analyse", "background_policy", "measure_enforcement", "measure_sync", "percentile",
           "run"]
