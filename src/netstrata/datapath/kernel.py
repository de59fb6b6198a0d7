"""The kernel datapath of one node, as one object: maps, programs, endpoints, events.

`KernelDatapath(pin_dir)` loads (or, after a restart, re-opens) the pinned maps under `pin_dir`
and the tc programs, then keeps the kernel in step with the control plane:

* `attach_endpoint()` records a workload's address and identity and attaches the programs to
  the host side of its veth; `detach_endpoint()` undoes it.
* `sync_ipcache()` and `apply_policy()` write only the difference from what the kernel holds,
  make-before-break: new and changed entries first, stale ones last, so a changed key is never
  absent (a packet sees the old entry or the new one, never a miss). `apply_change()` takes
  the delta itself (`policy_change()`), so one changed entry costs the same at any policy
  size; entries go to the kernel in bulk (`policy_batch`, one BPF_MAP_UPDATE_BATCH per map).
  An endpoint's entries live in two maps: exact ports in the hash `nst_policy_exact`, the
  rest in the trie `nst_policy` (`maps.is_exact`; see bpf/policy.h for why the kernel's
  answer is the same as from one trie).
* `read_events()` drains the ring buffer into `FlowEvent`s for observe/.

What the kernel holds is the truth: a fresh object (a restarted agent) reads the pinned maps
back before computing a difference. Every method is a plain synchronous call (bpf(2), netlink);
async callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from itertools import compress
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, TypeVar, final

from netstrata.datapath.loader import (
    BPFFS_ROOT,
    BpfMap,
    BpfObject,
    RingBufferReader,
    _libbpf,
    ensure_bpffs,
)
from netstrata.datapath.loader.ringbuf_mmap import MmapRingReader
from netstrata.datapath.maps import (
    EVENTS_LOST,
    FLOW_EVENT,
    CtEntry,
    CtKey,
    EndpointFlag,
    EndpointInfo,
    EndpointKey,
    FlowEvent,
    IpcacheInfo,
    IpcacheKey,
    MeshInfo,
    MeshPathValue,
    MeshPortKey,
    MeshRangeKey,
    PolicyEntry,
    PolicyExactKey,
    PolicyKey,
    PolicyPrefix,
    decode_flow_event,
    ipcache_key_of,
    is_exact,
    map_state_entry_of,
    map_state_key_of,
    map_state_key_of_exact,
    network_of,
    parse_prefix,
    policy_entry_of,
    policy_exact_key_of,
    policy_key_of,
)
from netstrata.datapath.mesh_capture import MeshCaptureTable
from netstrata.datapath.policy_batch import (
    encode_policy_entries,
    encode_policy_exact_entries,
    encode_policy_exact_keys,
    encode_policy_keys,
    partition,
)
from netstrata.errors import DatapathError
from netstrata.netns import attach_bpf, detach_bpf, ifindex, ifname_of
from netstrata.policy.types import MapStateEntry, MapStateKey, ResolvedPolicy

log = logging.getLogger(__name__)

Program = Literal["from_pod", "to_pod"]
_audit = attrgetter("audit")
PIN_ROOT: Final = BPFFS_ROOT / "netstrata"


def default_pin_dir(lab: str, node: str | None = None) -> Path:
    """`<bpffs>/netstrata/<lab>[/<node>]`: one set of maps per node of a lab."""
    return PIN_ROOT / lab / node if node else PIN_ROOT / lab


def endpoint_flags(ingress_enforced: bool, egress_enforced: bool, audit: bool) -> EndpointFlag:
    flags = EndpointFlag(0)
    if ingress_enforced:
        flags |= EndpointFlag.INGRESS_ENFORCED
    if egress_enforced:
        flags |= EndpointFlag.EGRESS_ENFORCED
    if audit:
        flags |= EndpointFlag.AUDIT
    return flags


@dataclass(frozen=True, slots=True)
class Delta:
    """What one sync changed in a map."""

    added: int = 0
    changed: int = 0
    removed: int = 0


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """The difference between two resolved policies of one endpoint (what `apply_change` writes)."""

    endpoint_id: int
    revision: int
    upserts: Mapping[MapStateKey, MapStateEntry]
    """New and changed entries, as resolved."""
    removals: Collection[MapStateKey]
    """Keys no longer in the policy."""
    ingress_enforced: bool
    egress_enforced: bool
    audit: bool = False

    @property
    def is_empty(self) -> bool:
        return not self.upserts and not self.removals


def policy_change(old: ResolvedPolicy | None, new: ResolvedPolicy) -> PolicyChange:
    """`new` as a change from `old` (None: from nothing) of the same endpoint.

    Entries shared by object (an untouched policy, or an incremental resolver update) cost
    an identity check, not a comparison.
    """
    before: Mapping[MapStateKey, MapStateEntry] = old.entries if old is not None else {}
    after = new.entries
    if before is after:
        upserts: dict[MapStateKey, MapStateEntry] = {}
        removals: list[MapStateKey] = []
    else:
        upserts = {k: e for k, e in after.items() if (o := before.get(k)) is not e and o != e}
        removals = [k for k in before if k not in after]
    return PolicyChange(new.endpoint_id, new.revision, upserts, removals, new.ingress_enforced,
                        new.egress_enforced, new.audit)


def _flags_of(p: ResolvedPolicy | PolicyChange) -> int:
    return int(endpoint_flags(p.ingress_enforced, p.egress_enforced, p.audit))


@dataclass(frozen=True, slots=True)
class DatapathStatistics:
    endpoints: int
    events_read: int
    undecodable_events: int
    policy_writes: int
    policy_deletes: int


K = TypeVar("K")
V = TypeVar("V")


def _sync_map(bpf_map: BpfMap[K, V], want: Mapping[K, V]) -> Delta:
    """Make a hash or LPM map hold exactly `want`, writing only the difference."""
    have = dict(bpf_map.items())
    upserts = [(k, v) for k, v in want.items() if have.get(k) != v]
    stale = [k for k in have if k not in want]
    bpf_map.update_many(upserts)
    bpf_map.delete_many(stale)
    added = sum(1 for k, _ in upserts if k not in have)
    return Delta(added, len(upserts) - added, len(stale))


@final
class KernelDatapath:
    """Pinned maps + tc programs of one node. Host veths live in `netns` (None: ours)."""

    def __init__(self, pin_dir: Path | str, *, netns: str | None = None) -> None:
        ensure_bpffs()
        self.pin_dir = Path(pin_dir)
        self.netns = netns
        self._obj = BpfObject(self.pin_dir)
        maps = self._obj.maps
        self._endpoints: BpfMap[EndpointKey, EndpointInfo] = maps["nst_endpoints"]  # type: ignore[assignment]
        self._ipcache_map: BpfMap[IpcacheKey, IpcacheInfo] = maps["nst_ipcache"]  # type: ignore[assignment]
        self._policy: BpfMap[PolicyKey, PolicyEntry] = maps["nst_policy"]  # type: ignore[assignment]
        self._policy_exact: BpfMap[PolicyExactKey, PolicyEntry] = maps["nst_policy_exact"]  # type: ignore[assignment]
        self._ct: BpfMap[CtKey, CtEntry] = maps["nst_conntrack"]  # type: ignore[assignment]
        self._mesh: BpfMap[EndpointKey, MeshInfo] = maps["nst_mesh"]  # type: ignore[assignment]
        self._mesh_ports: BpfMap[MeshPortKey, MeshPathValue] = maps["nst_mesh_ports"]  # type: ignore[assignment]
        self._mesh_ranges: BpfMap[MeshRangeKey, MeshPathValue] = maps["nst_mesh_ranges"]  # type: ignore[assignment]
        self._events = RingBufferReader(self._obj.map_fd("nst_events"), decode_flow_event,
                                        name="nst_events")
        # The same ring read in bulk from its mapping (`read_raw_events`); both readers move
        # the one consumer position the kernel keeps, so either may be used at any time.
        self._raw_events: MmapRingReader | None = None
        self._policies: dict[int, dict[MapStateKey, MapStateEntry]] = {}
        self._ipcache: dict[IPv4Network, int] | None = None
        self._flags: dict[int, int] = {}
        """Endpoint id -> enforcement flags we last wrote to all its endpoint entries."""
        self._events_read = 0
        self._policy_writes = 0
        self._policy_deletes = 0

    # ------------------------------------------------------------------------ endpoints

    def attach_endpoint(self, ifname: str, endpoint_id: int, ip: IPv4Address | str,
                        identity: int, flags: EndpointFlag | int = 0) -> None:
        """Record endpoint `ip` and attach the programs to its host veth `ifname`.

        The map entry is written before the programs are attached, so the first packet the
        programs see already has its endpoint. Attaching again replaces the programs in place.
        """
        try:
            index = ifindex(ifname, self.netns)
        except LookupError as exc:
            raise DatapathError(f"cannot attach endpoint {endpoint_id}: {exc}", obj=ifname) from exc
        key = self.register_endpoint(ip, endpoint_id, identity, index, flags)
        try:
            attach_bpf(ifname, self._obj.programs["from_pod"], "ingress", name="from_pod",
                       netns=self.netns)
            attach_bpf(ifname, self._obj.programs["to_pod"], "egress", name="to_pod",
                       netns=self.netns)
        except Exception as exc:
            self._endpoints.delete(key)
            raise DatapathError(f"attaching to {ifname} failed: {exc}", obj=ifname) from exc
        log.info("endpoint %d (%s, identity %d) attached to %s", endpoint_id, ip, identity, ifname)

    def register_endpoint(self, ip: IPv4Address | str, endpoint_id: int, identity: int,
                          ifindex: int, flags: EndpointFlag | int = 0) -> EndpointKey:
        """Write the endpoint entry only (no tc attach): for a second address of an attached
        endpoint, or for `test_run()` on the loopback device (ifindex 1)."""
        key = EndpointKey(IPv4Address(ip))
        self._flags.pop(endpoint_id, None)
        self._endpoints.update(key, EndpointInfo(endpoint_id, identity, ifindex, int(flags)))
        return key

    def endpoints(self) -> dict[IPv4Address, EndpointInfo]:
        """Every endpoint the kernel knows, by address."""
        return {k.ip_be: v for k, v in self._endpoints.items()}

    def detach_endpoint(self, endpoint_id: int) -> None:
        """Detach the programs from the endpoint's veth (if it still exists) and forget it:
        its endpoint entries, policy entries and conntrack entries."""
        for ip, info in self.endpoints().items():
            if info.endpoint_id != endpoint_id:
                continue
            ifname = ifname_of(info.ifindex, self.netns)
            if ifname is not None:
                detach_bpf(ifname, "ingress", netns=self.netns)
                detach_bpf(ifname, "egress", netns=self.netns)
            self._endpoints.delete(EndpointKey(ip))
        self._delete_policy(endpoint_id, list(self.dump_policy(endpoint_id)))
        self._policies.pop(endpoint_id, None)
        self._flags.pop(endpoint_id, None)
        self.flush_conntrack(endpoint_id)
        log.info("endpoint %d detached", endpoint_id)

    def _set_endpoint_flags(self, endpoint_id: int, flags: int) -> None:
        if self._flags.get(endpoint_id) == flags:
            return  # written by us and not touched since: no walk of the endpoint map
        self._flags.pop(endpoint_id, None)
        for ip, info in self.endpoints().items():
            if info.endpoint_id == endpoint_id and info.flags != flags:
                self._endpoints.update(EndpointKey(ip), EndpointInfo(
                    info.endpoint_id, info.identity, info.ifindex, flags))
        self._flags[endpoint_id] = flags

    # -------------------------------------------------------------------------- ipcache

    def ipcache(self) -> dict[IPv4Network, int]:
        """The kernel's ipcache: prefix -> identity."""
        return {network_of(k): v.identity for k, v in self._ipcache_map.items()}

    def sync_ipcache(self, entries: Mapping[str | IPv4Network | IPv4Address, int]) -> Delta:
        """Make the ipcache equal `entries` (prefix -> identity), writing only the difference.

        IPv6 prefixes are skipped: the datapath is IPv4-only and would never look them up.
        """
        want: dict[IPv4Network, int] = {}
        for prefix, identity in entries.items():
            if ":" in str(prefix):
                continue
            want[parse_prefix(prefix)] = identity
        have = self._ipcache if self._ipcache is not None else self.ipcache()
        upserts = [(ipcache_key_of(p), IpcacheInfo(i)) for p, i in want.items() if have.get(p) != i]
        stale = [ipcache_key_of(p) for p in have if p not in want]
        self._ipcache = None  # re-read from the kernel if anything below fails
        self._ipcache_map.update_many(upserts)
        self._ipcache_map.delete_many(stale)
        self._ipcache = want
        added = sum(1 for k, _ in upserts if network_of(k) not in have)
        return Delta(added, len(upserts) - added, len(stale))

    # ----------------------------------------------------------------------------- mesh

    def sync_mesh(self, workloads: Mapping[str, MeshCaptureTable]) -> Delta:
        """Make the mesh-capture maps hold exactly `workloads` (meshed workload address ->
        its table from `mesh_capture.capture_table`), this node's and other nodes' alike.
        Entries are compared with the kernel's, so only the difference is written."""
        infos: dict[EndpointKey, MeshInfo] = {}
        ports: dict[MeshPortKey, MeshPathValue] = {}
        ranges: dict[MeshRangeKey, MeshPathValue] = {}
        for raw_ip, table in workloads.items():
            ip = IPv4Address(raw_ip)
            infos[EndpointKey(ip)] = MeshInfo(int(table.flags))
            for (direction, port), path in table.ports.items():
                ports[MeshPortKey(ip, int(direction), port)] = MeshPathValue(int(path))
            for net, path in table.ranges.items():
                ranges[MeshRangeKey(32 + net.prefixlen, ip, net.network_address)] = (
                    MeshPathValue(int(path)))
        # workload entries go first on the way out and last on the way in, so the kernel never
        # holds a workload without the port and range entries that narrow its defaults
        gone = [k for k, _ in self._mesh.items() if k not in infos]
        self._mesh.delete_many(gone)
        deltas = (_sync_map(self._mesh_ports, ports), _sync_map(self._mesh_ranges, ranges),
                  _sync_map(self._mesh, infos))
        return Delta(sum(d.added for d in deltas), sum(d.changed for d in deltas),
                     len(gone) + sum(d.removed for d in deltas))

    def mesh(self) -> dict[IPv4Address, MeshInfo]:
        """The meshed workloads the kernel knows, by address."""
        return {k.ip_be: v for k, v in self._mesh.items()}

    # --------------------------------------------------------------------------- policy

    def dump_policy(self, endpoint_id: int) -> dict[MapStateKey, MapStateEntry]:
        """The endpoint's policy entries as the kernel holds them (both maps), decoded."""
        return self._dump_policy(endpoint_id)[0]

    def _dump_policy(self, ep: int) -> tuple[dict[MapStateKey, MapStateEntry], list[MapStateKey]]:
        """(`dump_policy`, the exact keys found in the trie instead of the hash)."""
        out: dict[MapStateKey, MapStateEntry] = {}
        for xk, pe in self._policy_exact.items():
            if xk.endpoint_id == ep:
                out[map_state_key_of_exact(xk)[1]] = map_state_entry_of(pe)
        misplaced = []
        for pk, pe in self._policy.items():
            if pk.endpoint_id == ep:
                key = map_state_key_of(pk)[1]
                out[key] = map_state_entry_of(pe)
                if pk.prefixlen == PolicyPrefix.FULL:
                    misplaced.append(key)
        return out, misplaced

    def apply_policy(self, resolved: ResolvedPolicy) -> Delta:
        """Bring the endpoint's policy entries and enforcement flags to `resolved`.

        The whole MapState is compared with what was last applied (one pass over its entries,
        no kernel reads after the first), and only the difference is written, as
        `apply_change` does. A caller that knows the delta should hand over that instead: its
        cost does not grow with the size of the policy.
        """
        ep = resolved.endpoint_id
        old = self._held(ep)
        # dict(dict) copies the stored hashes: 100k keys are not hashed again (their
        # dataclass __hash__ is a Python call each); only audit entries are replaced
        new = dict(resolved.entries)
        for k in list(compress(new, map(_audit, new.values()))):
            new[k] = replace(new[k], audit=False)
        if old:
            pairs = [(k, e) for k, e in new.items() if (o := old.get(k)) is not e and o != e]
            upserts, values = [k for k, _ in pairs], [e for _, e in pairs]
            stale = [k for k in old if k not in new]
        else:
            upserts, values, stale = list(new), list(new.values()), []
        delta = self._write_policy(ep, old, upserts, values, stale, _flags_of(resolved))
        self._policies[ep] = new
        self._log_applied(ep, resolved.revision, delta)
        return delta

    def apply_change(self, change: PolicyChange) -> Delta:
        """Write one endpoint's policy delta: upserts, then the enforcement flags, then removals.

        The cost is that of the delta alone (the entries of `change`), whatever the size of
        the endpoint's policy: what was last applied is kept per endpoint and updated in
        place. Make-before-break as `apply_policy`. Entries already held as they are and
        removals of keys not held are skipped.
        """
        ep = change.endpoint_id
        held = self._held(ep)
        want = {k: (replace(e, audit=False) if e.audit else e) for k, e in change.upserts.items()}
        upserts = [k for k, e in want.items() if (o := held.get(k)) is not e and o != e]
        stale = [k for k in change.removals if k in held and k not in want]
        delta = self._write_policy(ep, held, upserts, [want[k] for k in upserts], stale,
                                   _flags_of(change))
        for k in upserts:
            held[k] = want[k]
        for k in stale:
            del held[k]
        self._policies[ep] = held
        self._log_applied(ep, change.revision, delta)
        return delta

    def _held(self, ep: int) -> dict[MapStateKey, MapStateEntry]:
        """What was last applied to `ep` (read back from the kernel once, after a restart).

        Taken out of the cache while a write is under way, so a failed write makes the next
        call read the kernel again instead of trusting a half-applied copy.
        """
        held = self._policies.pop(ep, None)
        if held is None:
            held, misplaced = self._dump_policy(ep)
            if misplaced:
                self._move_exact_out_of_trie(ep, held, misplaced)
        return held

    def _move_exact_out_of_trie(self, ep: int, held: Mapping[MapStateKey, MapStateEntry],
                                keys: list[MapStateKey]) -> None:
        """Maps pinned before the exact hash existed hold exact ports in the trie; a later
        removal would only look in the hash and leave them enforcing. Move them (hash first,
        then out of the trie: the hash hit shadows the trie entry, so no packet sees a miss)."""
        self._policy_exact.update_raw(encode_policy_exact_keys(ep, keys),
                                      encode_policy_exact_entries([held[k] for k in keys]))
        self._policy.delete_raw(encode_policy_keys(ep, keys))
        log.info("endpoint %d: moved %d exact-port entries from the policy trie to its hash",
                 ep, len(keys))

    def _write_policy(self, ep: int, held: Mapping[MapStateKey, MapStateEntry],
                      upserts: list[MapStateKey], values: list[MapStateEntry],
                      stale: list[MapStateKey], flags: int) -> Delta:
        """Make-before-break: upsert new/changed entries (`values[i]` for `upserts[i]`; one
        batch per map), then set the enforcement flags, then delete stale entries (one batch
        per map). On a failed upsert the entries written so far are rolled back to the
        previous policy (best effort) and DatapathError is raised; the endpoint's held state
        is then re-read from the kernel on the next call."""
        added = len(upserts) if not held else sum(1 for k in upserts if k not in held)
        if upserts:
            (exact, exact_values), (trie, trie_values) = partition(upserts, values)
            try:
                if exact:
                    self._policy_exact.update_raw(encode_policy_exact_keys(ep, exact),
                                                  encode_policy_exact_entries(exact_values))
                if trie:
                    self._policy.update_raw(encode_policy_keys(ep, trie),
                                            encode_policy_entries(trie, trie_values))
            except DatapathError:
                self._rollback(ep, held, upserts)
                raise
        self._set_endpoint_flags(ep, flags)
        if stale:
            self._delete_policy(ep, stale)
        self._policy_writes += len(upserts)
        self._policy_deletes += len(stale)
        return Delta(added, len(upserts) - added, len(stale))

    def _delete_policy(self, ep: int, keys: list[MapStateKey]) -> None:
        """Delete `ep`'s entries of `keys` from whichever map holds each."""
        (exact, _), (trie, _) = partition(keys, keys)
        if exact:
            self._policy_exact.delete_raw(encode_policy_exact_keys(ep, exact))
        if trie:
            self._policy.delete_raw(encode_policy_keys(ep, trie))

    def _log_applied(self, ep: int, revision: int, delta: Delta) -> None:
        log.info("endpoint %d policy revision %d applied (+%d ~%d -%d)", ep, revision,
                  delta.added, delta.changed, delta.removed)

    def _rollback(self, ep: int, old: Mapping[MapStateKey, MapStateEntry],
                  touched: list[MapStateKey]) -> None:
        try:
            for k in touched:
                if is_exact(k):
                    xk = policy_exact_key_of(ep, k)
                    if k in old:
                        self._policy_exact.update(xk, policy_entry_of(k, old[k]))
                    else:
                        self._policy_exact.delete(xk)
                elif k in old:
                    self._policy.update(policy_key_of(ep, k), policy_entry_of(k, old[k]))
                else:
                    self._policy.delete(policy_key_of(ep, k))
        except DatapathError:
            log.error("endpoint %d: rolling back a failed policy update failed too", ep)

    # ----------------------------------------------------------------- conntrack, events

    def conntrack(self) -> list[tuple[CtKey, CtEntry]]:
        return self._ct.items()

    def flush_conntrack(self, endpoint_id: int | None = None) -> int:
        """Delete conntrack entries (of one endpoint, or all); returns how many."""
        if endpoint_id is None:
            return self._ct.clear()
        return self._ct.delete_many([k for k in self._ct.keys() if k.endpoint_id == endpoint_id])

    def read_events(self, timeout_ms: int = 0) -> list[FlowEvent]:
        """Events waiting in the ring buffer, waiting up to `timeout_ms` for the first."""
        events = self._events.poll(timeout_ms)
        self._events_read += len(events)
        return events

    def read_raw_events(self, limit: int = 0) -> list[tuple[object, ...]]:
        """Events waiting in the ring buffer as raw `struct flow_event` value tuples (field
        order of `FLOW_EVENT`, network-order fields as stored), read in bulk from the ring's
        mapping; `FLOW_EVENT.from_values` turns one into a `FlowEvent`. Never waits."""
        if self._raw_events is None:
            self._raw_events = MmapRingReader(self._obj.map_fd("nst_events"), FLOW_EVENT.struct,
                                              name="nst_events")
        events = self._raw_events.read(limit)
        self._events_read += len(events)
        return events

    def events_lost(self) -> int:
        """Records the programs could not write because the ring buffer was full, since the
        map was pinned (the kernel's per-CPU counts of `nst_events_lost`, summed)."""
        lib = _libbpf.lib()
        ncpus = lib.libbpf_num_possible_cpus()
        if ncpus <= 0:
            raise DatapathError("cannot count possible CPUs", errno_name=_libbpf.errno_name(ncpus))
        stride = (EVENTS_LOST.size + 7) & ~7  # the kernel copies per-CPU values 8-aligned
        value = ctypes.create_string_buffer(stride * ncpus)
        key = ctypes.c_uint32(0)
        fd = self._obj.map_fd("nst_events_lost")
        ret = lib.bpf_map_lookup_elem(fd, ctypes.byref(key), value)
        if ret < 0:
            raise DatapathError("reading nst_events_lost failed", obj="nst_events_lost",
                                errno_name=_libbpf.errno_name(ret))
        raw = value.raw
        return sum(EVENTS_LOST.decode(raw[i * stride:i * stride + EVENTS_LOST.size]).records
                   for i in range(ncpus))

    def events_fileno(self) -> int:
        """Readable when events wait (for `loop.add_reader`, then `read_events(0)`)."""
        return self._events.fileno()

    def test_run(self, program: Program, frame: bytes, *, ifindex: int = 0,
                 repeat: int = 1) -> int:
        """The tc verdict (0 TC_ACT_OK, 2 TC_ACT_SHOT) of `program` for one crafted frame.

        Runs in the kernel with the live maps, without sending anything (BPF_PROG_TEST_RUN);
        events and conntrack entries are produced as for a real packet.
        """
        return self._obj.test_run(program, frame, ifindex=ifindex, repeat=repeat)

    def program_run_stats(self) -> dict[str, tuple[int, int]]:
        """Program name -> (run_time_ns, run_cnt), counted while `enable_run_stats()` is on."""
        return {name: self._obj.run_stats(name) for name in self._obj.programs}

    def statistics(self) -> DatapathStatistics:
        return DatapathStatistics(
            endpoints=len(self._endpoints.keys()),
            events_read=self._events_read,
            undecodable_events=self._events.undecodable
            + (self._raw_events.undecodable if self._raw_events else 0),
            policy_writes=self._policy_writes,
            policy_deletes=self._policy_deletes,
        )

    # ---------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Release our handles; pinned maps and attached programs keep enforcing."""
        if self._raw_events is not None:
            self._raw_events.close()
        self._events.close()
        self._obj.close()

    def teardown(self) -> None:
        """Detach every endpoint, close, and remove the pins (`lab down`)."""
        for endpoint_id in {info.endpoint_id for info in self.endpoints().values()}:
            self.detach_endpoint(endpoint_id)
        self.close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)

    def __enter__(self) -> KernelDatapath:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
