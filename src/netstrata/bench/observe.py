"""`netstrata bench observe`: how many kernel events per second the agent's flow path keeps up with.

Two parts in one run.

Stages (no root): synthetic `struct flow_event` records, encoded with the datapath's own codec
and cycling through drops, policy verdicts and traces between the pods of a small manifest lab,
are pushed through each stage of the agent's path on their own: decode (`decode_flow_event`),
Flow construction (`agent/flows.flow_of`), enrichment (`FlowEnricher.enrich` with the lab's pods,
identities and rule texts), the bounded store (`FlowStore.add`, one follower attached as the API
would have) and metrics (`Metrics.observe_flow`), then the whole path (`flow_of` +
`FlowHub.record`). Each stage reports events/s and µs per event.

Then the bulk path the agent uses: records framed as the ring's mapping holds them, unpacked
in one `struct.iter_unpack` per batch, kept raw by the store and counted per batch
(`FlowHub.record_kernel`), and what a reader pays to build one stored flow.

End to end (root, bpffs, clang): real kernel events. The datapath's `from_pod` program runs
under BPF_PROG_TEST_RUN with `repeat` on a frame its policy denies, so every repetition writes
records into the real `nst_events` ring buffer. A producer process (pinned to its own CPU)
does that at a paced rate; the consumer (pinned to the other CPU) is the agent daemon's loop:
asyncio `add_reader` on the ring's fd, `read_raw_events()` (bulk read of the ring's mapping),
`FlowHub.record_kernel`, and the kernel's loss counter (`nst_events_lost`, summed over CPUs)
into `hubble_lost_events_total`. Losses are shown both ways: written - read (the producer knows
how many repetitions ran) and the kernel counter's rise. Rates climb a ladder; the highest rate
before the lost counter rises is the figure, and the rate drained at overload is the consumer's
ceiling. The same ladder runs with a consumer that only reads (the floor set by the reader) and
with the path before bulk reads (libbpf callback per record, a Flow built and recorded per
event), for the before/after in one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Final, Literal

from netstrata.agent.enrich import FlowEnricher
from netstrata.agent.flowhub import FlowHub
from netstrata.agent.flows import flow_of
from netstrata.datapath.loader.ringbuf_mmap import record_stride
from netstrata.datapath.maps import (
    FLOW_EVENT,
    EventFlag,
    EventType,
    FlowEvent,
    Verdict,
    decode_flow_event,
    encode_flow_event,
)
from netstrata.observe import Flow, FlowStore
from netstrata.observe.metrics import Metrics

Progress = Callable[[str], None]
Consumer = Literal["agent", "read", "agent-eager"]

TARGET_EVENTS_PER_S: Final = 200_000
DEFAULT_RATES: Final = (10_000, 25_000, 50_000, 100_000, 200_000, 400_000)
QUICK_RATES: Final = (10_000, 50_000, 200_000)
BATCH: Final = 256
"""Records per `record_kernel` call in the stage runs (the ring holds up to ~14.5k)."""
TICK_S: Final = 0.001
"""Producer pacing: one BPF_PROG_TEST_RUN batch per millisecond (at 200k/s, 200 records, far
below the ring's ~14k records, so bursts alone never overflow it)."""
NODE: Final = "default/node-1"
CLIENT_EP, SERVER_EP = 11, 12
ENFORCED_BOTH: Final = 3
DENIED_PORT: Final = 9999

_WORKLOADS: Final = """
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: server, namespace: default, labels: {app: server}}
spec: {node: node-1, ports: [{port: 8080, protocol: TCP, name: http}]}
---
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {node: node-1}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
"""


@dataclass(frozen=True, slots=True)
class ObserveBenchConfig:
    stage_events: int = 100_000
    """Synthetic records per stage."""
    rates: tuple[int, ...] = DEFAULT_RATES
    seconds: float = 2.0
    """Producer run per rate."""
    consumer_cpu: int | None = 0
    producer_cpu: int | None = 1
    kernel: bool = True
    """Run the end-to-end part (needs root); stages always run."""

    @classmethod
    def quick(cls) -> ObserveBenchConfig:
        return cls(stage_events=20_000, rates=QUICK_RATES, seconds=0.5)


@dataclass(frozen=True, slots=True)
class StageResult:
    stage: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def us_per_event(self) -> float:
        return self.seconds * 1e6 / self.events if self.events else 0.0


@dataclass(frozen=True, slots=True)
class RateResult:
    consumer: Consumer
    asked: int
    """Events per second the producer aimed at."""
    written: int
    """Records the kernel program emitted (repetitions run x records per run)."""
    read: int
    produce_s: float
    drain_s: float
    """From the producer's start to the consumer having read everything it will get."""
    kernel_lost: int = 0
    """The datapath's own loss counter (`nst_events_lost`) over the run: what the agent
    reports as `hubble_lost_events_total{source="kernel_ring_buffer"}`."""

    @property
    def lost(self) -> int:
        return max(0, self.written - self.read)

    @property
    def achieved(self) -> float:
        """Records written per second of producing."""
        return self.written / self.produce_s if self.produce_s else 0.0

    @property
    def consumed(self) -> float:
        return self.read / self.drain_s if self.drain_s else 0.0


@dataclass(frozen=True, slots=True)
class ObserveReport:
    config: ObserveBenchConfig
    stages: tuple[StageResult, ...]
    rates: tuple[RateResult, ...] = ()
    notes: tuple[str, ...] = ()
    host: str = ""

    def keeps_up(self, consumer: Consumer) -> int | None:
        """The highest asked rate before the lost counter rose (records lost by the kernel's
        own count, or written - read), if any."""
        best: int | None = None
        for r in sorted((r for r in self.rates if r.consumer == consumer), key=lambda r: r.asked):
            if r.lost or r.kernel_lost:
                break
            best = r.asked
        return best

    def ceiling(self, consumer: Consumer) -> float | None:
        """Events/s the consumer drained at the highest rate tried (its throughput)."""
        mine = [r for r in self.rates if r.consumer == consumer]
        return max((r.consumed for r in mine), default=None)

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)


# --------------------------------------------------------------------------- the lab


@dataclass
class _Setting:
    client_ip: IPv4Address
    server_ip: IPv4Address
    client_id: int
    server_id: int
    enricher: FlowEnricher


def _setting() -> _Setting:
    """A two-pod manifest lab: the enricher knows its pods, identities and rule texts."""
    from netstrata.lab.from_manifests import lab_from_manifests

    with tempfile.TemporaryDirectory(prefix="nst-bench-observe-") as tmp:
        (Path(tmp) / "lab.yaml").write_text(_WORKLOADS)
        view = lab_from_manifests([tmp])
    placed = {p.workload.name: p for p in view.topology.workloads.values()}
    client, server = placed["client"], placed["server"]
    cip, sip = IPv4Address(client.ips[0]), IPv4Address(server.ips[0])
    enricher = FlowEnricher()
    rules = {SERVER_EP: ({7: "CiliumNetworkPolicy default/server-ingress ingress[0]"}, 1)}
    enricher.update(view, rules, {str(cip): CLIENT_EP, str(sip): SERVER_EP})
    return _Setting(cip, sip, view.identity_of[client.ref], view.identity_of[server.ref], enricher)


def synthetic_events(s: _Setting, n: int) -> list[bytes]:
    """`n` encoded records cycling through a drop, an allowed policy verdict and a trace."""
    base = dict(
        timestamp_ns=1,
        subtype=0,
        match_type=1,
        flags=0,
        proto=6,
        ct_state=0,
        endpoint_id=SERVER_EP,
        src_identity=s.client_id,
        dst_identity=s.server_id,
        saddr_be=s.client_ip,
        daddr_be=s.server_ip,
        sport_be=40000,
        dport_be=8080,
        drop_reason=0,
        proxy_port=0,
        cookie=7,
        ifindex=5,
        pkt_len=60,
        icmp_type=0,
        icmp_code=0,
        tcp_flags=0x02,
        lookup_step=3,
    )
    kinds: list[dict[str, object]] = [
        dict(
            type=EventType.DROP,
            subtype=133,
            verdict=Verdict.DROPPED,
            direction=0,
            drop_reason=133,
            cookie=0,
            dport_be=DENIED_PORT,
        ),
        dict(type=EventType.POLICY_VERDICT, verdict=Verdict.FORWARDED, direction=0),
        dict(
            type=EventType.TRACE,
            verdict=Verdict.FORWARDED,
            direction=0,
            flags=EventFlag.IS_REPLY,
            tcp_flags=0x12,
        ),
    ]
    out = []
    for i in range(n):
        fields = {
            **base,
            **kinds[i % len(kinds)],
            "timestamp_ns": 1_000 + i,
            "sport_be": 32768 + i % 20000,
        }
        out.append(encode_flow_event(FlowEvent(**fields)))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- stages


def _timed(stage: str, n: int, fn: Callable[[], object]) -> StageResult:
    start = time.perf_counter()
    fn()
    return StageResult(stage, n, time.perf_counter() - start)


def _each(fn: Callable[[Flow], None], flows: list[Flow]) -> None:
    for f in flows:
        fn(f)


def run_stages(s: _Setting, n: int) -> list[StageResult]:
    raw = synthetic_events(s, n)
    events = [decode_flow_event(r) for r in raw]
    bare = [f for e in events if (f := flow_of(e, NODE, 0)) is not None]
    rich = [
        s.enricher.enrich(f, endpoint_id=e.endpoint_id, cookie=e.cookie)
        for f, e in zip(bare, events, strict=True)
    ]
    store = FlowStore(4095)
    store.subscribe(maxsize=4095)  # one follower, as an open `observe -f` has
    metrics = Metrics()
    hub = FlowHub(NODE, enricher=s.enricher)

    def whole() -> None:
        for r in raw:
            e = decode_flow_event(r)
            f = flow_of(e, NODE, 0)
            if f is not None:
                hub.record(f, endpoint_id=e.endpoint_id, cookie=e.cookie)

    # The bulk path: records as the ring's mapping holds them (header + payload), unpacked in
    # one call per batch, kept raw by the store, counted per batch; flows built when read.
    framed = b"".join(
        struct.pack("=II", FLOW_EVENT.size, 0)
        + r
        + bytes(record_stride(FLOW_EVENT.size) - 8 - len(r))
        for r in raw
    )
    unpack = struct.Struct(
        f"=8x{FLOW_EVENT.format[1:]}{record_stride(FLOW_EVENT.size) - 8 - FLOW_EVENT.size}x"
    )
    tuples = list(unpack.iter_unpack(framed))
    lazy_hub = FlowHub(NODE, enricher=s.enricher)
    lazy_hub.store.subscribe(maxsize=4095)
    batches = [tuples[i : i + BATCH] for i in range(0, len(tuples), BATCH)]

    def lazy_whole() -> None:
        for i in range(0, len(framed), BATCH * unpack.size):
            lazy_hub.record_kernel(list(unpack.iter_unpack(framed[i : i + BATCH * unpack.size])))

    reader_hub = FlowHub(NODE, enricher=s.enricher)
    reader_hub.record_kernel(tuples[-4095:])

    out = [
        _timed("decode (struct -> FlowEvent)", n, lambda: [decode_flow_event(r) for r in raw]),
        _timed("Flow construction (flow_of)", n, lambda: [flow_of(e, NODE, 0) for e in events]),
        _timed(
            "enrichment (pods, labels, policy)",
            n,
            lambda: [
                s.enricher.enrich(f, endpoint_id=e.endpoint_id, cookie=e.cookie)
                for f, e in zip(bare, events, strict=True)
            ],
        ),
        _timed("store insert (ring + 1 follower)", n, lambda: _each(store.add, rich)),
        _timed("metrics (prometheus counters)", n, lambda: _each(metrics.observe_flow, rich)),
        _timed("whole path (decode..record)", n, whole),
        _timed("bulk decode (iter_unpack)", n, lambda: list(unpack.iter_unpack(framed))),
        _timed(
            "raw store + batched metrics (record_kernel)",
            n,
            lambda: [lazy_hub.record_kernel(b) for b in batches],
        ),
        _timed(f"whole bulk path (unpack..record_kernel, {BATCH}/batch)", n, lazy_whole),
        _timed(
            "reader: build a stored flow (query, follow, export)",
            4095,
            lambda: reader_hub.store.last(4095),
        ),
    ]
    return out


# --------------------------------------------------------------------------- end to end


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "the end-to-end part needs root (bpf(2), BPF_PROG_TEST_RUN)"
    if shutil.which("clang") is None:
        return "clang is not installed (the datapath program is compiled at first use)"
    return None


def _pin_dir() -> Path:
    from netstrata.datapath.kernel import default_pin_dir

    return default_pin_dir(f"bench-observe-{os.getpid():x}")


def _denied_frame(s: _Setting) -> bytes:
    from netstrata.datapath.loader import packets as pk

    return pk.frame(s.client_ip, s.server_ip, 6, dport=DENIED_PORT)


def produce(pin_dir: str, frame_hex: str, rate: int, seconds: float, cpu: int | None) -> int:
    """Producer process body: run `from_pod` on the frame `rate` times a second, paced per tick;
    returns the number of repetitions (= records written or lost)."""
    from netstrata.datapath.loader.bpfobject import BpfObject

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    obj = BpfObject(Path(pin_dir))
    frame = bytes.fromhex(frame_hex)
    written, start = 0, time.perf_counter()
    try:
        while (now := time.perf_counter() - start) < seconds:
            due = int(rate * now) - written
            if due > 0:
                obj.test_run("from_pod", frame, repeat=due)
                written += due
            time.sleep(TICK_S)
    finally:
        obj.close()
    return written


def _consume(
    dp: Any,
    hub: FlowHub | None,
    consumer: Consumer,
    producer: subprocess.Popen[str],
    idle_s: float = 0.2,
) -> int:
    """The agent daemon's event loop against the ring until the producer has exited and the
    ring has been idle for `idle_s`; returns records read."""
    read = 0

    def on_events() -> None:
        nonlocal read
        if consumer == "agent-eager":  # the path before bulk reads: libbpf, a flow per event
            events = dp.read_events(0)
            read += len(events)
            assert hub is not None
            for event in events:
                flow = flow_of(event, NODE, 0)
                if flow is not None:
                    hub.record(flow, endpoint_id=event.endpoint_id, cookie=event.cookie)
            return
        records = dp.read_raw_events()
        read += len(records)
        if hub is not None:  # the agent daemon's `_on_events`
            hub.record_kernel(records, 0)
            hub.lost_in_kernel(dp.events_lost())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(dp.events_fileno(), on_events)
        try:
            last = -1
            while producer.poll() is None or read != last:
                last = read
                await asyncio.sleep(idle_s)
        finally:
            loop.remove_reader(dp.events_fileno())
        on_events()

    asyncio.run(main())
    return read


def _run_rate(
    cfg: ObserveBenchConfig, dp: Any, s: _Setting, consumer: Consumer, rate: int, per_run: int
) -> RateResult:
    """`rate` is in records per second; each repetition of the program writes `per_run`."""
    hub = FlowHub(NODE, enricher=s.enricher) if consumer != "read" else None
    dp.read_raw_events()  # start from an empty ring
    lost_before = dp.events_lost()
    if hub is not None:
        hub.lost_in_kernel(lost_before)
    cmd = [
        sys.executable,
        "-c",
        "import sys; from netstrata.bench.observe import produce; "
        "print(produce(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), "
        "None if sys.argv[5] == 'none' else int(sys.argv[5])))",
        str(dp.pin_dir),
        _denied_frame(s).hex(),
        str(rate // per_run),
        str(cfg.seconds),
        "none" if cfg.producer_cpu is None else str(cfg.producer_cpu),
    ]
    start = time.perf_counter()
    producer = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    read = _consume(dp, hub, consumer, producer)
    drained = time.perf_counter() - start
    out, _ = producer.communicate()
    if producer.returncode != 0:
        raise RuntimeError(f"producer failed with status {producer.returncode}")
    written = int(out.strip().splitlines()[-1]) * per_run
    kernel_lost = dp.events_lost() - lost_before
    if hub is not None:
        hub.close()
    return RateResult(consumer, rate, written, read, cfg.seconds, drained - 0.2, kernel_lost)


def measure_ring_read(dp: Any, s: _Setting, runs: int = 5_000) -> tuple[list[StageResult], int]:
    """Reading the records `runs` repetitions left waiting in the ring, three ways, and how
    many records one repetition writes (a denied packet gives a policy verdict and a drop):
    libbpf's per-record callback + `FlowEvent` decode (the path before), libbpf's callback
    copying bytes only, and the bulk read of the ring's mapping into raw tuples."""
    from netstrata.datapath.loader import RingBufferReader

    frame = _denied_frame(s)
    out: list[StageResult] = []
    got = 0
    raw_reader = RingBufferReader(dp._obj.map_fd("nst_events"), bytes, name="bench")
    try:
        dp.read_raw_events()  # maps the ring once, outside the timing
        for what, read in (
            ("ring read + FlowEvent decode (libbpf callback)", lambda: dp.read_events(0)),
            ("ring read, bytes only (libbpf callback)", lambda: raw_reader.poll(0)),
            ("ring read + bulk unpack (mmap)", dp.read_raw_events),
        ):
            dp.read_raw_events()
            dp.test_run("from_pod", frame, repeat=runs)
            start = time.perf_counter()
            got = len(read())
            out.append(StageResult(what, got, time.perf_counter() - start))
    finally:
        raw_reader.close()
    return out, max(1, got // runs)


def run_kernel(
    cfg: ObserveBenchConfig,
    s: _Setting,
    progress: Progress,
) -> tuple[list[StageResult], list[RateResult]]:
    from netstrata.datapath.kernel import KernelDatapath

    pin = _pin_dir()
    dp = KernelDatapath(pin)
    rates: list[RateResult] = []
    try:
        dp.register_endpoint(s.client_ip, CLIENT_EP, s.client_id, 1, ENFORCED_BOTH)
        dp.register_endpoint(s.server_ip, SERVER_EP, s.server_id, 1, ENFORCED_BOTH)
        ring, per_run = measure_ring_read(dp, s)
        dp.events_lost()  # the counter exists (an old pinned object would fail here)
        if cfg.consumer_cpu is not None:
            os.sched_setaffinity(0, {cfg.consumer_cpu})
        consumers: tuple[Consumer, ...] = ("read", "agent", "agent-eager")
        for consumer in consumers:
            for rate in cfg.rates:
                r = _run_rate(cfg, dp, s, consumer, rate, per_run)
                rates.append(r)
                progress(
                    f"{consumer} consumer at {rate / 1000:g}k/s asked: {r.written} written, "
                    f"{r.read} read, {r.lost} lost, kernel counter +{r.kernel_lost}"
                )
    finally:
        if cfg.consumer_cpu is not None:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        dp.teardown()
        shutil.rmtree(pin, ignore_errors=True)
    return ring, rates


def run(cfg: ObserveBenchConfig, progress: Progress) -> ObserveReport:
    s = _setting()
    progress(f"stages: {cfg.stage_events} synthetic records each")
    stages = run_stages(s, cfg.stage_events)
    notes: list[str] = []
    rates: list[RateResult] = []
    why = missing_requirements() if cfg.kernel else "end-to-end part not asked for"
    if why:
        notes.append(f"end to end skipped: {why}")
    else:
        ring, rates = run_kernel(cfg, s, progress)
        stages = [*ring, *stages]
    host = f"Linux {os.uname().release}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    return ObserveReport(cfg, tuple(stages), tuple(rates), tuple(notes), host)


# --------------------------------------------------------------------------- rendering


def _target(rate: float | None) -> str:
    if rate is None:
        return f"(target >= {TARGET_EVENTS_PER_S / 1000:g}k/s: MISSED)"
    mark = "met" if rate >= TARGET_EVENTS_PER_S else "MISSED"
    return (
        f"(target >= {TARGET_EVENTS_PER_S / 1000:g}k/s: {rate / TARGET_EVENTS_PER_S:.2f}x, {mark})"
    )


def summary_lines(report: ObserveReport) -> list[tuple[str, str]]:
    """(measure, result) pairs, in print order."""
    rows = [
        (
            f"stage: {st.stage}",
            f"{st.rate / 1000:8.1f}k events/s  {st.us_per_event:6.2f} us/event {_target(st.rate)}",
        )
        for st in report.stages
    ]
    for consumer, what in (
        ("read", "bulk ring read only"),
        ("agent", "agent path (bulk read, record_kernel)"),
        ("agent-eager", "agent path before (libbpf, flow per event)"),
    ):
        if not any(r.consumer == consumer for r in report.rates):
            continue
        for r in (r for r in report.rates if r.consumer == consumer):
            rows.append(
                (
                    f"end to end, {what}, {r.asked / 1000:g}k/s asked",
                    f"{r.achieved / 1000:.1f}k/s written, {r.read} of {r.written} read, "
                    f"{r.lost} lost ({r.lost / max(1, r.written):.1%}), "
                    f"kernel lost counter +{r.kernel_lost}",
                )
            )
        keeps = report.keeps_up(consumer)  # type: ignore[arg-type]
        ceiling = report.ceiling(consumer)  # type: ignore[arg-type]
        rows.append(
            (
                f"end to end, {what}: highest rate without loss",
                f"{'none' if keeps is None else f'{keeps / 1000:g}k/s'} {_target(keeps)}; "
                f"drained at most {0 if ceiling is None else ceiling / 1000:.1f}k/s",
            )
        )
    return rows


def render_text(report: ObserveReport) -> str:
    rows = summary_lines(report)
    width = max((len(k) for k, _ in rows), default=0)
    head = (
        f"bench observe: {report.host}; consumer on CPU {report.config.consumer_cpu}, "
        f"producer on CPU {report.config.producer_cpu}"
    )
    return "\n".join([head, *(f"{k.ljust(width)}  {v}" for k, v in rows), *report.notes])


def render_markdown(report: ObserveReport) -> str:
    return "\n".join(
        [
            "| measure | result |",
            "|---|---|",
            *(f"| {k} | {' '.join(v.split())} |" for k, v in summary_lines(report)),
        ]
    )


def render_json(report: ObserveReport) -> dict[str, Any]:
    return {
        "host": report.host,
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "stages": [
            {
                "stage": s.stage,
                "events": s.events,
                "seconds": s.seconds,
                "events_per_s": s.rate,
                "us_per_event": s.us_per_event,
                "ratio_to_target": s.rate / TARGET_EVENTS_PER_S,
            }
            for s in report.stages
        ],
        "rates": [
            {
                "consumer": r.consumer,
                "asked": r.asked,
                "written": r.written,
                "read": r.read,
                "lost": r.lost,
                "achieved": r.achieved,
                "consumed": r.consumed,
                "kernel_lost": r.kernel_lost,
            }
            for r in report.rates
        ],
        "keeps_up": {c: report.keeps_up(c) for c in ("read", "agent", "agent-eager")},
        "ceiling": {c: report.ceiling(c) for c in ("read", "agent", "agent-eager")},
        "notes": list(report.notes),
    }


def as_json(report: ObserveReport) -> str:
    return json.dumps(render_json(report), indent=2)


__all__ = [
    "ObserveBenchConfig",
    "ObserveReport",
    "RateResult",
    "StageResult",
    "TARGET_EVENTS_PER_S",
    "missing_requirements",
    "produce",
    "render_json",
    "render_markdown",
    "render_text",
    "run",
    "run_stages",
    "summary_lines",
    "synthetic_events",
]
