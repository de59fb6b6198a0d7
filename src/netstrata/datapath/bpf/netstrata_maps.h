/* netstrata_maps.h: every struct and enum that crosses the kernel boundary.
 *
 * This header is the source of truth for the layouts shared by the tc programs and userspace.
 * `datapath/maps/_layout.py` declares the same structs field by field (same C names, same
 * order); `tests/unit/datapath/test_layout.py` compares both through the BTF of a compiled
 * probe, and the loader refuses to attach when they disagree.
 *
 * Rules: padding is explicit and always zeroed, every struct has an offset table and a
 * _Static_assert on its size, and fields in network byte order end in `_be`.
 * Numbers in the enums are Cilium's / Hubble's where one exists (reference §3, §4.1, §4.3).
 */
#ifndef NETSTRATA_MAPS_H
#define NETSTRATA_MAPS_H

#include <linux/types.h>

/* ------------------------------------------------------------------------------ enums */

/* Hubble's `verdict` numbers (reference §4.1). */
enum nst_verdict {
	NST_VERDICT_UNKNOWN = 0,
	NST_VERDICT_FORWARDED = 1,
	NST_VERDICT_DROPPED = 2,
	NST_VERDICT_ERROR = 3,
	NST_VERDICT_AUDIT = 4,
	NST_VERDICT_REDIRECTED = 5,
};

/* policy.types.Direction: whose policy decides, seen from the endpoint. */
enum nst_direction {
	NST_DIR_INGRESS = 0,
	NST_DIR_EGRESS = 1,
};

/* Cilium's drop reason numbers (reference §4.3); mirrors datapath/drop_reasons.py. */
enum nst_drop_reason {
	NST_DROP_INVALID_SOURCE_IP = 132,
	NST_DROP_POLICY_DENIED = 133,
	NST_DROP_INVALID_PACKET_DROPPED = 134,
	NST_DROP_CT_TRUNCATED_OR_INVALID_HEADER = 135,
	NST_DROP_UNSUPPORTED_L3_PROTOCOL = 139,
	NST_DROP_STALE_OR_UNROUTABLE_IP = 151,
	NST_DROP_CT_MAP_INSERTION_FAILED = 155,
	NST_DROP_IP_FRAGMENTATION_NOT_SUPPORTED = 157,
	NST_DROP_SERVICE_BACKEND_NOT_FOUND = 158,
	NST_DROP_INVALID_IDENTITY = 171,
	NST_DROP_UNKNOWN_SENDER = 172,
	NST_DROP_PROXY_LOOKUP_FAILED = 178,
	NST_DROP_PROXY_SET_FAILED = 179,
	NST_DROP_PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL = 180,
	NST_DROP_POLICY_DENY = 181,
	NST_DROP_AUTH_REQUIRED = 189,
	NST_DROP_UNENCRYPTED_TRAFFIC = 195,
	NST_DROP_DROP_HOST_NOT_READY = 202,
	NST_DROP_DROP_EP_NOT_READY = 203,
};

/* Hubble's `policy_match_type`; mirrors policy.types.MatchType. */
enum nst_match_type {
	NST_MATCH_NONE = 0,
	NST_MATCH_L3_ONLY = 1,
	NST_MATCH_L3_L4 = 2,
	NST_MATCH_L4_ONLY = 3,
	NST_MATCH_ALL = 4,
	NST_MATCH_L3_PROTO = 5,
	NST_MATCH_PROTO_ONLY = 6,
};

/* Cilium monitor event types (reference §4.3, `event_type.type`). */
enum nst_event_type {
	NST_EVENT_DROP = 1,
	NST_EVENT_DEBUG = 2,
	NST_EVENT_CAPTURE = 3,
	NST_EVENT_TRACE = 4,
	NST_EVENT_POLICY_VERDICT = 5,
};

/* Trace observation points (reference §4.3, trace `sub_type`); only these two are used here. */
enum nst_trace_point {
	NST_TRACE_TO_ENDPOINT = 0,
	NST_TRACE_FROM_ENDPOINT = 5,
};

/* Conntrack verdict of a packet; Hubble's `trace_reason` numbers. */
enum nst_ct_state {
	NST_CT_UNTRACKED = 0,
	NST_CT_NEW = 1,
	NST_CT_ESTABLISHED = 2,
	NST_CT_REPLY = 3,
	NST_CT_RELATED = 4,
};

/* endpoint_info.flags */
enum nst_endpoint_flag {
	NST_EP_INGRESS_ENFORCED = 1,
	NST_EP_EGRESS_ENFORCED = 2,
	NST_EP_AUDIT = 4,
};

/* policy_entry.flags */
enum nst_policy_flag {
	NST_POLICY_DENY = 1,
};

/* ct_entry.flags */
enum nst_ct_flag {
	NST_CT_SEEN_REPLY = 1,
	NST_CT_CLOSING = 2,
	NST_CT_PROXY_REDIRECT = 4,
	NST_CT_PROXY_UPSTREAM = 8, /* opened by the node proxy: replies go to its socket */
};

/* flow_event.flags */
enum nst_event_flag {
	NST_EVENT_AUDITED = 1,
	NST_EVENT_IS_REPLY = 2,
	NST_EVENT_FRAGMENT = 4,
};

/* The transparent redirect to the node proxy (docs/proxy-redirect.md).
 *
 * skb->mark values: the low 16 bits carry a magic in 0x0F00 (Cilium's MARK_MAGIC_* numbers),
 * the high 16 bits a proxy port. Pods cannot set a mark the node sees: crossing the veth from
 * the pod's namespace scrubs it (skb_scrub_packet with xnet), so a mark on a packet at the
 * node side came from the node itself (the programs, or the proxy's own sockets).
 *
 *   TO_PROXY           set by the programs on a packet bound for a proxy socket; the node's
 *                      policy routing (fwmark TO_PROXY/MASK -> table 2004: local 0/0 dev lo)
 *                      delivers it locally, where bpf_sk_assign has already chosen the socket
 *   FROM_INGRESS_PROXY SO_MARK of the ingress listeners' upstream sockets: never redirected
 *                      again, still checked against L3/L4
 *   FROM_EGRESS_PROXY  SO_MARK of the egress listeners' upstream sockets: the destination's
 *                      ingress policy applies in full, an ingress L7 redirect included
 *
 * Listeners: ingress ones bind 127.0.0.1:<proxy port>, egress ones 127.0.0.2:<proxy port>
 * (one port per parser from the policy, two directions told apart by address). Both are
 * loopback addresses, so nothing reaches them from a pod except through the redirect. */
enum nst_proxy {
	NST_PROXY_MARK_MASK = 0x0F00,
	NST_PROXY_MARK_TO_PROXY = 0x0200,
	NST_PROXY_MARK_FROM_INGRESS_PROXY = 0x0A00,
	NST_PROXY_MARK_FROM_EGRESS_PROXY = 0x0B00,
	NST_PROXY_ROUTE_TABLE = 2004,
	NST_PROXY_INGRESS_ADDR = 0x7f000001, /* 127.0.0.1, host order */
	NST_PROXY_EGRESS_ADDR = 0x7f000002,  /* 127.0.0.2, host order */
};

/* The mesh capture (docs/mesh.md, "Kernel capture"): after the L3/L4 verdict, a TCP
 * connection between meshed workloads goes to the node proxy's mesh listeners instead of its
 * destination. Outbound (from_pod of the source) to the egress address's OUTBOUND port, where
 * the source node's proxy opens the mTLS tunnel; inbound (to_pod of the destination) to the
 * ingress address's INBOUND port, where plaintext meets PeerAuthentication. Istio's own
 * ports (15001 outbound, 15006 inbound), clear of the L7 parsers' 150xx ports. */
enum nst_mesh_port {
	NST_MESH_PORT_OUTBOUND = 15001,
	NST_MESH_PORT_INBOUND = 15006,
};

/* mesh_info.flags */
enum nst_mesh_flag {
	NST_MESH_FLAG_ENROLLED = 1,         /* a meshed workload (local or on another node) */
	NST_MESH_FLAG_INBOUND_DEFAULT = 2,  /* a port without a mesh_port entry is captured inbound */
	NST_MESH_FLAG_OUTBOUND_DEFAULT = 4, /* a destination no port/range entry names is captured */
};

/* mesh_path.path: what a port or range entry says (0, no entry, never stored). */
enum nst_mesh_path {
	NST_MESH_PATH_BYPASS = 1,
	NST_MESH_PATH_CAPTURE = 2,
};

/* Policy-map LPM prefix lengths (bits of policy_key after `prefixlen`). */
enum nst_policy_prefix {
	/* endpoint_id (32) + identity (32) + direction (8): always exact */
	NST_POLICY_PREFIX_EXACT = 72,
	/* + proto (8) + dport (16): what every lookup uses */
	NST_POLICY_PREFIX_FULL = 96,
};

/* --------------------------------------------------------------------------- structs */

/* endpoints map key: a local endpoint's IPv4 address.
 *   off size field
 *     0    4 ip_be
 */
struct endpoint_key {
	__be32 ip_be;
};
_Static_assert(sizeof(struct endpoint_key) == 4, "endpoint_key");

/* endpoints map value.
 *   off size field
 *     0    4 endpoint_id
 *     4    4 identity       security identity of the endpoint
 *     8    4 ifindex        host-side veth; packets from the pod must arrive on it
 *    12    1 flags          enum nst_endpoint_flag
 *    13    3 pad
 */
struct endpoint_info {
	__u32 endpoint_id;
	__u32 identity;
	__u32 ifindex;
	__u8 flags;
	__u8 pad[3];
};
_Static_assert(sizeof(struct endpoint_info) == 16, "endpoint_info");

/* ipcache LPM key (an LPM trie key starts with the prefix length).
 *   off size field
 *     0    4 prefixlen      0..32
 *     4    4 ip_be
 */
struct ipcache_key {
	__u32 prefixlen;
	__be32 ip_be;
};
_Static_assert(sizeof(struct ipcache_key) == 8, "ipcache_key");

/* ipcache value.
 *   off size field
 *     0    4 identity
 *     4    2 cluster_id     0 = local cluster (informational, for clustermesh)
 *     6    1 flags          reserved, 0
 *     7    1 pad
 */
struct ipcache_info {
	__u32 identity;
	__u16 cluster_id;
	__u8 flags;
	__u8 pad;
};
_Static_assert(sizeof(struct ipcache_info) == 8, "ipcache_info");

/* policy LPM key. Stored prefixlen = 72 + (proto ? 8 : 0) + port prefix (0..16);
 * lookups use 96. For ICMP the "port" is the type in the high byte (reference §3.1).
 *   off size field
 *     0    4 prefixlen
 *     4    4 endpoint_id    host order (always matched exactly)
 *     8    4 identity       peer identity, 0 = any
 *    12    1 direction      enum nst_direction
 *    13    1 proto          IANA protocol, 0 = any
 *    14    2 dport_be       destination port, network order (LPM bits run high to low)
 */
struct policy_key {
	__u32 prefixlen;
	__u32 endpoint_id;
	__u32 identity;
	__u8 direction;
	__u8 proto;
	__be16 dport_be;
};
_Static_assert(sizeof(struct policy_key) == 16, "policy_key");

/* policy exact-match key: a policy_key whose protocol and all 16 port bits are named
 * (prefixlen 96), without the prefix length. Such entries live in the hash nst_policy_exact,
 * every other one in the trie nst_policy; a key's specificity decides its map, so it never moves.
 *   off size field
 *     0    4 endpoint_id    host order
 *     4    4 identity       peer identity, 0 = any
 *     8    1 direction      enum nst_direction
 *     9    1 proto          IANA protocol, never 0 here
 *    10    2 dport_be       destination port (or ICMP type << 8), network order
 */
struct policy_exact_key {
	__u32 endpoint_id;
	__u32 identity;
	__u8 direction;
	__u8 proto;
	__be16 dport_be;
};
_Static_assert(sizeof(struct policy_exact_key) == 12, "policy_exact_key");

/* policy value.
 *   off size field
 *     0    2 proxy_port     host order; != 0: redirect to the L7 proxy listener
 *     2    1 flags          enum nst_policy_flag
 *     3    1 prefix_bits    proto+port bits of the key (0..24), the LPM tie-breaker
 *     4    4 precedence     higher wins among allows (policy.types.PRECEDENCE_*)
 *     8    4 cookie         names the deciding rule(s)
 */
struct policy_entry {
	__u16 proxy_port;
	__u8 flags;
	__u8 prefix_bits;
	__u32 precedence;
	__u32 cookie;
};
_Static_assert(sizeof(struct policy_entry) == 12, "policy_entry");

/* conntrack key: the packet's tuple as the endpoint saw it in `direction`. For ICMP echo
 * the identifier stands in for the ports (request: sport_be, reply: dport_be).
 *   off size field
 *     0    4 endpoint_id
 *     4    4 saddr_be
 *     8    4 daddr_be
 *    12    2 sport_be
 *    14    2 dport_be
 *    16    1 proto
 *    17    1 direction      enum nst_direction of the policy check that created it
 *    18    2 pad
 */
struct ct_key {
	__u32 endpoint_id;
	__be32 saddr_be;
	__be32 daddr_be;
	__be16 sport_be;
	__be16 dport_be;
	__u8 proto;
	__u8 direction;
	__u8 pad[2];
};
_Static_assert(sizeof(struct ct_key) == 20, "ct_key");

/* conntrack value.
 *   off size field
 *     0    8 expires_ns     CLOCK_MONOTONIC (bpf_ktime_get_ns) deadline
 *     8    8 packets        both directions
 *    16    8 bytes
 *    24    4 cookie         the rule that allowed the connection
 *    28    2 proxy_port     host order
 *    30    1 flags          enum nst_ct_flag
 *    31    1 pad
 */
struct ct_entry {
	__u64 expires_ns;
	__u64 packets;
	__u64 bytes;
	__u32 cookie;
	__u16 proxy_port;
	__u8 flags;
	__u8 pad;
};
_Static_assert(sizeof(struct ct_entry) == 32, "ct_entry");

/* mesh map value, keyed by struct endpoint_key (a meshed workload's address).
 *   off size field
 *     0    1 flags          enum nst_mesh_flag
 *     1    3 pad
 */
struct mesh_info {
	__u8 flags;
	__u8 pad[3];
};
_Static_assert(sizeof(struct mesh_info) == 4, "mesh_info");

/* mesh port-capture key: a port the workload's bypass annotations (or Istio's own proxy ports)
 * name, in the direction they apply to (ingress: the destination's inbound ports, egress: the
 * source's outbound ports).
 *   off size field
 *     0    4 ip_be          the workload whose annotations these are
 *     4    1 direction      enum nst_direction
 *     5    1 pad
 *     6    2 port_be
 */
struct mesh_port_key {
	__be32 ip_be;
	__u8 direction;
	__u8 pad;
	__be16 port_be;
};
_Static_assert(sizeof(struct mesh_port_key) == 8, "mesh_port_key");

/* mesh outbound-range LPM key: a destination CIDR of the source's excludeOutboundIPRanges /
 * includeOutboundIPRanges. Stored prefixlen = 32 (the source, always exact) + CIDR bits.
 *   off size field
 *     0    4 prefixlen
 *     4    4 ip_be          the source workload
 *     8    4 dst_be         destination prefix (host bits zero)
 */
struct mesh_range_key {
	__u32 prefixlen;
	__be32 ip_be;
	__be32 dst_be;
};
_Static_assert(sizeof(struct mesh_range_key) == 12, "mesh_range_key");

/* mesh port-capture and range value.
 *   off size field
 *     0    1 path           enum nst_mesh_path
 *     1    3 pad
 */
struct mesh_path {
	__u8 path;
	__u8 pad[3];
};
_Static_assert(sizeof(struct mesh_path) == 4, "mesh_path");

/* events ring buffer record (drop, policy verdict, trace).
 *   off size field
 *     0    8 timestamp_ns   CLOCK_MONOTONIC
 *     8    1 type           enum nst_event_type
 *     9    1 subtype        drop: drop reason; trace: enum nst_trace_point; else 0
 *    10    1 verdict        enum nst_verdict
 *    11    1 direction      enum nst_direction
 *    12    1 match_type     enum nst_match_type
 *    13    1 flags          enum nst_event_flag
 *    14    1 proto
 *    15    1 ct_state       enum nst_ct_state
 *    16    4 endpoint_id    the endpoint whose policy applied (0: unknown)
 *    20    4 src_identity
 *    24    4 dst_identity
 *    28    4 saddr_be
 *    32    4 daddr_be
 *    36    2 sport_be       0 for ICMP
 *    38    2 dport_be
 *    40    2 drop_reason    enum nst_drop_reason (also for audited verdicts), else 0
 *    42    2 proxy_port     host order
 *    44    4 cookie
 *    48    4 ifindex
 *    52    4 pkt_len
 *    56    1 icmp_type
 *    57    1 icmp_code
 *    58    1 tcp_flags      FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80
 *    59    1 lookup_step    the numbered step of policy_lookup() that decided (0: none)
 *    60    4 pad
 */
struct flow_event {
	__u64 timestamp_ns;
	__u8 type;
	__u8 subtype;
	__u8 verdict;
	__u8 direction;
	__u8 match_type;
	__u8 flags;
	__u8 proto;
	__u8 ct_state;
	__u32 endpoint_id;
	__u32 src_identity;
	__u32 dst_identity;
	__be32 saddr_be;
	__be32 daddr_be;
	__be16 sport_be;
	__be16 dport_be;
	__u16 drop_reason;
	__u16 proxy_port;
	__u32 cookie;
	__u32 ifindex;
	__u32 pkt_len;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;
	__u8 lookup_step;
	__u8 pad[4];
};
_Static_assert(sizeof(struct flow_event) == 64, "flow_event");

/* events_lost map value (per CPU, index 0): flow_event records this CPU could not write
 * because the events ring buffer was full. Never reset; the agent reports increases.
 *   off size field
 *     0    8 records
 */
struct events_lost {
	__u64 records;
};
_Static_assert(sizeof(struct events_lost) == 8, "events_lost");

#endif /* NETSTRATA_MAPS_H */
