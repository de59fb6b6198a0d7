/* maps_def.h: the maps of the netstrata tc programs.
 *
 * Every map is pinned by name under the per-lab bpffs directory the loader passes as libbpf's
 * pin_root_path, so enforcement (and the conntrack table) survives an agent restart: a new
 * loader reuses the pins instead of creating empty maps. Layouts come from netstrata_maps.h.
 */
#ifndef NETSTRATA_MAPS_DEF_H
#define NETSTRATA_MAPS_DEF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netstrata_maps.h"

/* Local endpoints by IPv4 address. HASH: exact match on one address, O(1); preallocated, so
 * an insert never fails at packet time. 4096: a Kubernetes node runs at most a few hundred
 * pods (110 by default); the rest is headroom for a lab that puts many pods on one node. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_endpoints SEC(".maps");

/* IP prefix -> security identity. LPM_TRIE: CIDR identities need longest-prefix match so a
 * pod /32 always beats a covering CIDR (reference §2.4, §3.5). 512k is Cilium's default
 * ipcache size; LPM tries must be BPF_F_NO_PREALLOC, so only used entries cost memory. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 524288);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_ipcache SEC(".maps");

/* (endpoint, peer identity, direction, proto, port prefix) -> verdict. LPM_TRIE: port ranges
 * are stored as aligned power-of-two blocks and a wildcard protocol as a shorter prefix, so one
 * lookup per identity finds the most specific entry (reference §3.1). One trie shared by all
 * endpoints (endpoint_id is the first, always-exact part of the key) instead of Cilium's map per
 * endpoint: one pin, no map-in-map. 262144 = 16 endpoints at Cilium's default 16k entries each;
 * no preallocation, so the bound costs nothing until used. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_policy SEC(".maps");

/* The policy entries whose protocol and whole port are named (prefix_bits 24, the longest
 * prefix there is), by exact key. HASH: most entries of a real policy are exact ports, and a
 * batch insert into a hash costs a fraction of the trie's (100k entries from C: ~40 ms
 * preallocated, ~92 ms with BPF_F_NO_PREALLOC, ~105 ms into the trie), which is what lets a
 * 100k-entry sync reach the kernel in under 100 ms. Preallocated: 262144 entries (the trie's
 * bound, so either map can hold a whole policy set) cost ~24 MiB of locked memory per map set
 * (one set per node), paid at creation; in exchange inserts are the cheapest and never
 * allocate. policy.h looks here first and only on a miss in the trie. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct policy_exact_key);
	__type(value, struct policy_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_policy_exact SEC(".maps");

/* Connection tracking, keyed per endpoint and direction. LRU_HASH: under pressure the least
 * recently used connection is evicted instead of an insert failing, as Cilium's CT maps do.
 * 65536 entries (about 6 MiB preallocated) suit one lab node; Cilium sizes ~512k TCP + 256k
 * other for production nodes (reference §3.4, §3.6). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_conntrack SEC(".maps");

/* Drop, policy-verdict and trace records for observe/. RINGBUF: one ordered, shared buffer,
 * no per-CPU copies, and the reader sleeps in epoll. 4 MiB holds ~58k records (72 bytes with
 * the ring's header): ~290 ms at 200k events/s, so a reader that keeps up on average also
 * survives being descheduled for a while (bench observe lost records to such stalls with
 * 1 MiB, ~72 ms). When it is full new records are lost, never packets, and counted in
 * nst_events_lost. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_events SEC(".maps");

/* Records lost to a full nst_events (struct events_lost at index 0). PERCPU_ARRAY: each CPU
 * adds to its own slot without atomics; the agent sums the slots into
 * hubble_lost_events_total, the signal that the reader fell behind the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct events_lost);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_events_lost SEC(".maps");

/* Meshed workloads by address, this node's and every other node's (the source side needs to
 * know the destination is meshed). HASH like nst_endpoints; 65536 covers a lab's clusters. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct endpoint_key);
	__type(value, struct mesh_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_mesh SEC(".maps");

/* Ports named by local workloads' capture annotations. HASH: exact port; few per workload. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mesh_port_key);
	__type(value, struct mesh_path);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_mesh_ports SEC(".maps");

/* Outbound IP ranges of local workloads. LPM_TRIE: the most specific range decides (the
 * encoding in datapath/mesh_capture.py keeps Istio's "excluded before included" order). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mesh_range_key);
	__type(value, struct mesh_path);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nst_mesh_ranges SEC(".maps");

#endif /* NETSTRATA_MAPS_DEF_H */
