"""KernelDatapath as the agent uses it: incremental, make-before-break policy updates, the
ipcache sync, pins that survive a restart, refusal of foreign layouts, detaching."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from datapathkit import (  # noqa: E402
    EP_A,
    EP_B,
    ID_A,
    ID_B,
    TCP,
    Pods,
    allow,
    attach_both,
    resolved,
    tcp_echo,
)
from datapathkit import echo_server as server  # noqa: E402

from netstrata.datapath.kernel import Delta, KernelDatapath, policy_change  # noqa: E402
from netstrata.datapath.loader import BpfMap  # noqa: E402
from netstrata.datapath.loader import packets as pk  # noqa: E402
from netstrata.datapath.maps import policy_entry_of, policy_key_of  # noqa: E402
from netstrata.errors import DatapathError  # noqa: E402
from netstrata.netns import create_netns, delete_netns, in_netns, list_bpf  # noqa: E402
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey  # noqa: E402

EG, IN = Direction.EGRESS, Direction.INGRESS
A, B = "10.1.0.1", "10.1.0.2"


@pytest.fixture
def dp(tag: str, pin_dir: Path):  # type: ignore[no-untyped-def]
    netns = f"nst{tag}-fac"
    create_netns(netns)
    try:
        kernel = KernelDatapath(pin_dir, netns=netns)
        try:
            kernel.register_endpoint(A, EP_A, ID_A, 1, 3)
            yield kernel, netns
        finally:
            kernel.teardown()
    finally:
        delete_netns(netns)


def _key(identity: int, port: int, prefix: int = 16) -> MapStateKey:
    return MapStateKey(EG, identity, TCP, port, prefix)


def test_apply_policy_writes_only_the_difference(dp, pin_dir: Path) -> None:  # type: ignore[no-untyped-def]
    kernel, _ = dp
    first = {_key(ID_B, 80): MapStateEntry(cookie=1), _key(ID_B, 443): MapStateEntry(cookie=2),
             _key(0, 53): MapStateEntry(cookie=3, audit=True)}
    assert kernel.apply_policy(resolved(EP_A, ID_A, first)) == Delta(added=3)
    assert kernel.dump_policy(EP_A) == {k: MapStateEntry(cookie=e.cookie) for k, e in first.items()}
    second = {_key(ID_B, 80): MapStateEntry(cookie=1), _key(ID_B, 443): MapStateEntry(cookie=9),
              _key(ID_B, 8080, 13): MapStateEntry(cookie=4)}
    assert kernel.apply_policy(resolved(EP_A, ID_A, second, revision=2)) == Delta(1, 1, 1)
    assert kernel.dump_policy(EP_A) == second
    assert kernel.apply_policy(resolved(EP_A, ID_A, second, revision=3)) == Delta()


def test_a_restarted_datapath_diffs_against_the_kernel(dp, pin_dir: Path) -> None:  # type: ignore[no-untyped-def]
    kernel, netns = dp
    entries = {_key(ID_B, 80): MapStateEntry(cookie=1)}
    kernel.apply_policy(resolved(EP_A, ID_A, entries))
    kernel.sync_ipcache({"10.9.0.0/16": 16777217})
    again = KernelDatapath(pin_dir, netns=netns)  # pins reused, not recreated
    try:
        assert again.dump_policy(EP_A) == entries
        assert again.ipcache() == kernel.ipcache()
        assert again.apply_policy(resolved(EP_A, ID_A, entries, revision=2)) == Delta()
        assert again.sync_ipcache({"10.9.0.0/16": 16777217}) == Delta()
    finally:
        again.close()


def test_make_before_break_updates_before_deletes(dp, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Upserts to both policy maps (exact hash, trie) come before any removal from either."""
    kernel, _ = dp
    calls: list[tuple[str, str, list[object]]] = []
    real_update, real_delete = BpfMap.update_raw, BpfMap.delete_raw

    def decoded(bpf_map: BpfMap, raw: bytes) -> list[object]:  # type: ignore[type-arg]
        size = bpf_map.key.size
        return [bpf_map.key.decode(raw[i:i + size]) for i in range(0, len(raw), size)]

    def update_raw(self: BpfMap, keys: bytes, values: bytes):  # type: ignore[no-untyped-def]
        calls.append(("update", self.name, decoded(self, keys)))
        return real_update(self, keys, values)

    def delete_raw(self: BpfMap, keys: bytes):  # type: ignore[no-untyped-def]
        calls.append(("delete", self.name, decoded(self, keys)))
        return real_delete(self, keys)

    kernel.apply_policy(resolved(EP_A, ID_A, {_key(ID_B, 80): MapStateEntry(cookie=1),
                                              _key(ID_B, 81): MapStateEntry(cookie=2),
                                              _key(ID_B, 96, 11): MapStateEntry(cookie=4)}))
    monkeypatch.setattr(BpfMap, "update_raw", update_raw)
    monkeypatch.setattr(BpfMap, "delete_raw", delete_raw)
    kernel.apply_policy(resolved(EP_A, ID_A, {_key(ID_B, 80): MapStateEntry(cookie=7),
                                              _key(ID_B, 64, 10): MapStateEntry(cookie=3)}))
    kinds = [(kind, name) for kind, name, keys in calls if keys]
    assert kinds == [("update", "nst_policy_exact"), ("update", "nst_policy"),
                     ("delete", "nst_policy_exact"), ("delete", "nst_policy")]
    ports = {(kind, name): {k.dport_be for k in keys}  # type: ignore[attr-defined]
             for kind, name, keys in calls}
    assert ports == {("update", "nst_policy_exact"): {80}, ("update", "nst_policy"): {64},
                     ("delete", "nst_policy_exact"): {81}, ("delete", "nst_policy"): {96}}


def test_apply_change_writes_only_the_delta_whatever_the_policy_size(  # type: ignore[no-untyped-def]
    dp, pin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel, netns = dp
    big = {_key(ID_B + i, 80): MapStateEntry(cookie=1) for i in range(2000)}
    first = resolved(EP_A, ID_A, big)
    kernel.apply_change(policy_change(None, first))
    assert kernel.dump_policy(EP_A) == big
    written: list[int] = []
    real_update = BpfMap.update_raw

    def update_raw(self: BpfMap, keys: bytes, values: bytes):  # type: ignore[no-untyped-def]
        written.append(len(keys) // self.key.size)
        return real_update(self, keys, values)

    monkeypatch.setattr(BpfMap, "update_raw", update_raw)
    flipped = {**big, _key(ID_B, 80): MapStateEntry(deny=True, cookie=2)}
    del flipped[_key(ID_B + 1, 80)]
    flipped[_key(ID_B, 64, 10)] = MapStateEntry(cookie=3)
    second = resolved(EP_A, ID_A, flipped, revision=2)
    change = policy_change(first, second)
    assert set(change.upserts) == {_key(ID_B, 80), _key(ID_B, 64, 10)}
    assert list(change.removals) == [_key(ID_B + 1, 80)]
    assert kernel.apply_change(change) == Delta(1, 1, 1)
    assert written == [1, 1]  # one entry to each map: the exact port, the port range
    assert kernel.dump_policy(EP_A) == flipped
    assert kernel.apply_change(change) == Delta()  # already held: nothing written
    again = KernelDatapath(pin_dir, netns=netns)  # a restarted agent diffs against the kernel
    try:
        assert again.apply_change(policy_change(None, second)) == Delta()
        assert again.apply_policy(first) == Delta(1, 1, 1)
        assert again.dump_policy(EP_A) == big
    finally:
        again.close()


def test_exact_ports_left_in_the_trie_by_older_pins_move_to_the_hash(  # type: ignore[no-untyped-def]
    dp, pin_dir: Path
) -> None:
    """Maps pinned before `nst_policy_exact` held exact ports in the trie. A restarted agent
    adopting them moves them to the hash, so a later removal (which asks the hash) removes them."""
    kernel, netns = dp
    exact, wide = _key(ID_B, 80), _key(ID_B, 64, 10)
    kernel.apply_policy(resolved(EP_A, ID_A, {wide: MapStateEntry(cookie=2)}))
    # written the old way, behind the datapath's back: an exact port in the trie
    kernel._policy.update(policy_key_of(EP_A, exact), policy_entry_of(exact, MapStateEntry(cookie=1)))
    again = KernelDatapath(pin_dir, netns=netns)
    try:
        assert again.apply_policy(resolved(EP_A, ID_A, {wide: MapStateEntry(cookie=2)})) == Delta(
            0, 0, 1)
        assert again.dump_policy(EP_A) == {wide: MapStateEntry(cookie=2)}
        assert [k.prefixlen for k in again._policy.keys()] == [72 + 8 + 10]
        assert again._policy_exact.keys() == []
    finally:
        again.close()


def test_no_packet_sees_a_changing_entry_missing(dp) -> None:  # type: ignore[no-untyped-def]
    """While the entry that allows a packet is swapped for another key covering it, a
    concurrent stream of that packet through the program is never dropped."""
    kernel, netns = dp
    narrow = {_key(ID_B, 80): MapStateEntry(cookie=1)}
    wide = {_key(ID_B, 64, 10): MapStateEntry(cookie=2)}
    kernel.register_endpoint(B, EP_B, ID_B, 1, 3)
    kernel.apply_policy(resolved(EP_A, ID_A, narrow))
    frame = pk.frame(A, B, TCP, dport=80)
    verdicts: list[int] = []
    stop = threading.Event()

    def probe() -> None:
        with in_netns(netns):
            while not stop.is_set():
                kernel.flush_conntrack(EP_A)
                verdicts.append(kernel.test_run("from_pod", frame))

    worker = threading.Thread(target=probe)
    worker.start()
    try:
        for revision in range(200):
            kernel.apply_policy(resolved(EP_A, ID_A, wide if revision % 2 else narrow,
                                         revision=revision))
    finally:
        stop.set()
        worker.join()
    assert verdicts and set(verdicts) == {0}


def test_sync_ipcache_writes_only_the_difference(dp) -> None:  # type: ignore[no-untyped-def]
    kernel, _ = dp
    assert kernel.sync_ipcache({"10.9.0.0/16": 300, "10.9.1.1": 301}) == Delta(added=2)
    assert kernel.sync_ipcache({"10.9.0.0/16": 302, "10.8.0.0/24": 303}) == Delta(1, 1, 1)
    assert {str(k): v for k, v in kernel.ipcache().items()} == {"10.9.0.0/16": 302,
                                                                "10.8.0.0/24": 303}


def test_a_foreign_pinned_layout_is_refused(tag: str, pin_dir: Path) -> None:
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    if not Path(bpftool).exists():
        pytest.skip("bpftool is needed to pin a map with another layout")
    pin_dir.mkdir(parents=True)
    subprocess.run([bpftool, "map", "create", str(pin_dir / "nst_policy"), "type", "lpm_trie",
                    "key", "16", "value", "8", "entries", "16", "name", "nst_policy",
                    "flags", "1"], check=True, capture_output=True)
    with pytest.raises(DatapathError, match=r"nst_policy \(value struct policy_entry\)"):
        KernelDatapath(pin_dir)


def test_attach_to_a_missing_interface_is_a_datapath_error(dp) -> None:  # type: ignore[no-untyped-def]
    kernel, _ = dp
    with pytest.raises(DatapathError, match="nstmissing"):
        kernel.attach_endpoint("nstmissing", 9, "10.1.0.9", 1009)


def test_restart_keeps_enforcing_and_shares_the_maps(pods: Pods, pin_dir: Path) -> None:
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080)))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080)))
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) == b"ping"
        pods.dp.close()  # the agent goes away: programs stay attached, maps stay pinned
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) == b"ping"
        pods.dp = KernelDatapath(pin_dir, netns=pods.node)
        pods.dp.apply_policy(resolved(EP_A, ID_A, {}, revision=2))  # seen by the old programs
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) is None
        attach_both(pods.dp, pods)  # new programs replace the old in place
        pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080), revision=3))
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) == b"ping"


def test_detach_forgets_the_endpoint_everywhere(pods: Pods) -> None:
    attach_both(pods.dp, pods)
    pods.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080)))
    pods.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080)))
    with server(pods.b.pod_netns, pods.b.ip, 8080):
        assert tcp_echo(pods.a.pod_netns, pods.b.ip, 8080) == b"ping"
    assert {f.name for f in list_bpf(pods.a.host_if, netns=pods.node)} == {"from_pod", "to_pod"}
    pods.dp.detach_endpoint(EP_A)
    assert list_bpf(pods.a.host_if, netns=pods.node) == []
    assert [i.endpoint_id for i in pods.dp.endpoints().values()] == [EP_B]
    assert pods.dp.dump_policy(EP_A) == {}
    assert all(k.endpoint_id != EP_A for k, _ in pods.dp.conntrack())


_REJECTED_PROGRAM = """
#include <linux/bpf.h>
#include "maps_def.h"

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	struct endpoint_key k = {};
	struct endpoint_info *ep = bpf_map_lookup_elem(&nst_endpoints, &k);

	return ep->flags; /* no NULL check: the verifier must refuse this */
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	return 0;
}

char LICENSE[] SEC("license") = "Apache-2.0";
"""


def test_a_verifier_rejection_names_program_errno_and_log(
        pin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netstrata.datapath.loader import build

    sources = tmp_path / "bpf"
    shutil.copytree(build.BPF_DIR, sources)
    (sources / build.PROGRAM_SOURCE).write_text(_REJECTED_PROGRAM)
    monkeypatch.setattr(build, "BPF_DIR", sources)
    with pytest.raises(DatapathError) as caught:
        KernelDatapath(pin_dir)
    err = caught.value
    assert (err.program, err.errno_name) == ("from_pod", "EACCES")
    assert err.verifier_log_tail and "map_value_or_null" in err.verifier_log_tail
    assert not [p for p in pin_dir.iterdir()]  # nothing left pinned by a failed load
