/* policy.h: the per-packet policy-map lookup (reference §3.2, Cilium 1.19 semantics).
 *
 * datapath/reference/_lookup.py is the same algorithm in Python; the differential test in
 * tests/datapath/ runs random map states through both and requires identical verdicts.
 */
#ifndef NETSTRATA_POLICY_H
#define NETSTRATA_POLICY_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "maps_def.h"
#include "netstrata_maps.h"

/* What policy_lookup() decided. drop_reason 0 means allowed. */
struct lookup_result {
	__u32 cookie;
	__u16 proxy_port;
	__u16 drop_reason;
	__u8 match_type;
	__u8 step;        /* the numbered step below that returned */
	__u8 prefix_bits; /* of the chosen entry */
	__u8 pad;
};

/* The longest-prefix match for one (endpoint, identity, direction, proto, port) over the union
 * of nst_policy_exact and nst_policy. An exact entry names the protocol and all 16 port bits:
 * 24 bits, the longest prefix any entry can have, and no trie entry has that length (a key's
 * specificity decides its map). So a hit in the hash IS the longest match of the union, and
 * only a miss needs the trie; the precedence below (and datapath/reference/_lookup.py, which
 * sees one MapState) is unchanged by the split. */
static __always_inline struct policy_entry *policy_lpm(__u32 endpoint_id, __u32 identity,
						       __u8 direction, __u8 proto, __u16 port)
{
	struct policy_exact_key exact = {
		.endpoint_id = endpoint_id,
		.identity = identity,
		.direction = direction,
		.proto = proto,
		.dport_be = bpf_htons(port),
	};
	struct policy_key key = {
		.prefixlen = NST_POLICY_PREFIX_FULL,
		.endpoint_id = endpoint_id,
		.identity = identity,
		.direction = direction,
		.proto = proto,
		.dport_be = bpf_htons(port),
	};
	struct policy_entry *e;

	e = bpf_map_lookup_elem(&nst_policy_exact, &exact);
	if (e)
		return e;
	return bpf_map_lookup_elem(&nst_policy, &key);
}

/* Hubble's match type from the chosen key: was it identity-specific, did it name the protocol,
 * did it name ports (prefix_bits = 8 for the protocol + the port prefix). */
static __always_inline __u8 match_type_of(int identity_specific, __u8 prefix_bits)
{
	if (!identity_specific) {
		if (prefix_bits == 0)
			return NST_MATCH_ALL;
		return prefix_bits > 8 ? NST_MATCH_L4_ONLY : NST_MATCH_PROTO_ONLY;
	}
	if (prefix_bits == 0)
		return NST_MATCH_L3_ONLY;
	return prefix_bits > 8 ? NST_MATCH_L3_L4 : NST_MATCH_L3_PROTO;
}

static __always_inline void choose(struct lookup_result *r, const struct policy_entry *e,
				   int identity_specific, __u8 step)
{
	r->step = step;
	r->cookie = e->cookie;
	r->prefix_bits = e->prefix_bits;
	r->match_type = match_type_of(identity_specific, e->prefix_bits);
	if (e->flags & NST_POLICY_DENY) {
		r->drop_reason = NST_DROP_POLICY_DENY;
		r->proxy_port = 0;
	} else {
		r->drop_reason = 0;
		r->proxy_port = e->proxy_port;
	}
}

/* Policy lookup precedence (the same numbered list as datapath/reference/_lookup.py):
 *
 *  1. A = longest-prefix match among entries for the exact peer identity (none for peer 0).
 *  2. B = longest-prefix match among entries for identity 0 (any peer).
 *     (Each is the exact hash first, then the trie: see policy_lpm().)
 *  3. A is a deny -> DENY (A).  B is a deny -> DENY (B).
 *  4. Neither found -> DROP, reason POLICY_DENIED.
 *  5. Only one found -> that one.
 *  6. Both allow: higher precedence wins; then the longer protocol/port prefix; then A.
 *
 * The resolver rewrites every allow covered by a deny into a deny, so step 3 never misses a
 * broader deny hidden behind a longer allow of the same identity.
 * `port` is host order: the destination port, or the ICMP type << 8.
 */
static __always_inline void policy_lookup(__u32 endpoint_id, __u32 identity, __u8 direction,
					  __u8 proto, __u16 port, struct lookup_result *r)
{
	struct policy_entry *a = NULL, *b;

	if (identity)
		a = policy_lpm(endpoint_id, identity, direction, proto, port); /* 1. */
	b = policy_lpm(endpoint_id, 0, direction, proto, port);                /* 2. */

	if (a && (a->flags & NST_POLICY_DENY)) {
		choose(r, a, 1, 3); /* 3. */
		return;
	}
	if (b && (b->flags & NST_POLICY_DENY)) {
		choose(r, b, 0, 3); /* 3. */
		return;
	}
	if (!a && !b) {
		r->step = 4; /* 4. */
		r->drop_reason = NST_DROP_POLICY_DENIED;
		r->match_type = NST_MATCH_NONE;
		r->cookie = 0;
		r->proxy_port = 0;
		r->prefix_bits = 0;
		return;
	}
	if (!b) {
		choose(r, a, 1, 5); /* 5. */
		return;
	}
	if (!a) {
		choose(r, b, 0, 5); /* 5. */
		return;
	}
	if (a->precedence != b->precedence) {
		if (a->precedence > b->precedence)
			choose(r, a, 1, 6); /* 6. precedence */
		else
			choose(r, b, 0, 6); /* 6. precedence */
		return;
	}
	if (a->prefix_bits != b->prefix_bits) {
		if (a->prefix_bits > b->prefix_bits)
			choose(r, a, 1, 6); /* 6. longer prefix */
		else
			choose(r, b, 0, 6); /* 6. longer prefix */
		return;
	}
	choose(r, a, 1, 6); /* 6. identity-specific */
}

#endif /* NETSTRATA_POLICY_H */
