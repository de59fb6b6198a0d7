/* conntrack.h: connection tracking per endpoint and direction (reference §3.4).
 *
 * An entry is created only for an allowed NEW packet, under the key of the endpoint and the
 * direction whose check allowed it, with the tuple as that endpoint saw it. Another packet of
 * that endpoint is then:
 *   ESTABLISHED  its own tuple is there in its own direction (re-checked against policy on every
 *                packet, so removing an allow cuts established flows, as in Cilium);
 *   REPLY        the reversed tuple is there in the other direction (skips policy);
 *   RELATED      an ICMP error quoting a tuple that is there in the other direction (skips policy).
 * Keying by endpoint keeps the two ends of a pod-to-pod connection apart: a UDP "reply" from a
 * pod whose ingress dropped the request finds no entry of its own and is checked as NEW.
 *
 * ICMP queries have no ports; the identifier stands in: a request (echo, timestamp,
 * information) is keyed (sport=id, dport=0), a reply (sport=0, dport=id), so reversing the reply
 * gives the request's key. Every other ICMP message is UNTRACKED: an error is RELATED when it
 * quotes a tracked flow and otherwise checked against policy, like any other untracked type,
 * and none of them creates an entry (a type-less entry would let any ICMP type back as a
 * "reply").
 */
#ifndef NETSTRATA_CONNTRACK_H
#define NETSTRATA_CONNTRACK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps_def.h"
#include "netstrata_maps.h"
#include "parse.h"

#define NSEC_PER_SEC 1000000000ULL
/* Cilium's defaults (reference §3.4) */
#define CT_LIFETIME_TCP (21600ULL * NSEC_PER_SEC)
#define CT_LIFETIME_SYN (60ULL * NSEC_PER_SEC)
#define CT_LIFETIME_CLOSE (10ULL * NSEC_PER_SEC)
#define CT_LIFETIME_NONTCP (60ULL * NSEC_PER_SEC)

static __always_inline __u8 other_direction(__u8 direction)
{
	return direction == NST_DIR_EGRESS ? NST_DIR_INGRESS : NST_DIR_EGRESS;
}

static __always_inline int icmp_is_query(__u8 type)
{
	return type == ICMP_ECHO || type == ICMP_ECHOREPLY || type == ICMP_TIMESTAMP ||
	       type == ICMP_TIMESTAMPREPLY || type == ICMP_INFO_REQUEST || type == ICMP_INFO_REPLY;
}

static __always_inline void ct_ports(const struct pkt *p, __be16 *sport_be, __be16 *dport_be)
{
	*sport_be = p->sport_be;
	*dport_be = p->dport_be;
	if (p->proto != IPPROTO_ICMP)
		return;
	switch (p->icmp_type) {
	case ICMP_ECHO:
	case ICMP_TIMESTAMP:
	case ICMP_INFO_REQUEST:
		*sport_be = p->icmp_id_be;
		*dport_be = 0;
		break;
	case ICMP_ECHOREPLY:
	case ICMP_TIMESTAMPREPLY:
	case ICMP_INFO_REPLY:
		*sport_be = 0;
		*dport_be = p->icmp_id_be;
		break;
	default:
		*sport_be = 0;
		*dport_be = 0;
	}
}

static __always_inline void ct_key_forward(const struct pkt *p, __u32 endpoint_id, __u8 direction,
					   struct ct_key *k)
{
	k->endpoint_id = endpoint_id;
	k->saddr_be = p->saddr_be;
	k->daddr_be = p->daddr_be;
	ct_ports(p, &k->sport_be, &k->dport_be);
	k->proto = p->proto;
	k->direction = direction;
}

static __always_inline void ct_key_reply(const struct pkt *p, __u32 endpoint_id, __u8 direction,
					 struct ct_key *k)
{
	__be16 sport_be, dport_be;

	ct_ports(p, &sport_be, &dport_be);
	k->endpoint_id = endpoint_id;
	k->saddr_be = p->daddr_be;
	k->daddr_be = p->saddr_be;
	k->sport_be = dport_be;
	k->dport_be = sport_be;
	k->proto = p->proto;
	k->direction = other_direction(direction);
}

/* The quoted packet of an ICMP error is one the erring host received: a forward packet of a
 * connection tracked in the other direction, exactly as quoted. */
static __always_inline void ct_key_related(const struct pkt *p, __u32 endpoint_id, __u8 direction,
					   struct ct_key *k)
{
	k->endpoint_id = endpoint_id;
	k->saddr_be = p->inner_saddr_be;
	k->daddr_be = p->inner_daddr_be;
	k->sport_be = p->inner_sport_be;
	k->dport_be = p->inner_dport_be;
	k->proto = p->inner_proto;
	k->direction = other_direction(direction);
}

static __always_inline struct ct_entry *ct_find(struct ct_key *k, __u64 now)
{
	struct ct_entry *e = bpf_map_lookup_elem(&nst_conntrack, k);

	if (e && e->expires_ns < now)
		return NULL; /* expired: as if absent; the next insert overwrites it */
	return e;
}

/* Every packet of a connection comes through here, from both ends' CPUs (a reply is refreshed
 * on the CPU of the side that sent it), so the entry's fields are stored only when they change:
 * the expiry when it shortens or would move by more than CT_REFRESH_SLACK, which no lifetime
 * here is short enough to notice, and the flags when a bit changes.
 *
 * packets and bytes are statistics (nothing decides on them), so they are plain adds, not
 * __sync_fetch_and_add: a locked add on every packet costs a full barrier on top of the cache
 * line the two CPUs already pass back and forth. When both ends of one connection are counted at
 * the same instant on two CPUs one increment can be lost; the counts are approximate in exactly
 * that race and exact otherwise. */
#define CT_REFRESH_SLACK NSEC_PER_SEC
static __always_inline void ct_refresh(struct ct_entry *e, const struct pkt *p, __u64 now, int reply)
{
	__u64 lifetime = CT_LIFETIME_NONTCP, expires;
	__u8 flags = e->flags;

	if (reply)
		flags |= NST_CT_SEEN_REPLY;
	if (p->proto == IPPROTO_TCP) {
		if (!reply && (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
		    (flags & NST_CT_CLOSING))
			flags &= ~(NST_CT_CLOSING | NST_CT_SEEN_REPLY); /* the tuple is reused */
		if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			flags |= NST_CT_CLOSING;
		if (flags & NST_CT_CLOSING)
			lifetime = CT_LIFETIME_CLOSE;
		else if (flags & NST_CT_SEEN_REPLY)
			lifetime = CT_LIFETIME_TCP;
		else
			lifetime = CT_LIFETIME_SYN;
	}
	if (flags != e->flags)
		e->flags = flags;
	expires = now + lifetime;
	if (expires < e->expires_ns || expires - e->expires_ns > CT_REFRESH_SLACK)
		e->expires_ns = expires;
	e->packets += 1;
	e->bytes += p->len;
}

/* Classifies the packet; *entry is the entry it belongs to (NULL for NEW). */
static __always_inline __u8 ct_lookup(const struct pkt *p, __u32 endpoint_id, __u8 direction,
				      __u64 now, struct ct_entry **entry)
{
	struct ct_key k = {};

	*entry = NULL;
	if (p->proto == IPPROTO_ICMP && !icmp_is_query(p->icmp_type)) {
		if (p->icmp_error) {
			ct_key_related(p, endpoint_id, direction, &k);
			*entry = ct_find(&k, now);
			if (*entry)
				return NST_CT_RELATED;
		}
		return NST_CT_UNTRACKED;
	}
	/* forward first: if a tuple is tracked both ways, policy still applies (fail closed) */
	ct_key_forward(p, endpoint_id, direction, &k);
	*entry = ct_find(&k, now);
	if (*entry)
		return NST_CT_ESTABLISHED;
	ct_key_reply(p, endpoint_id, direction, &k);
	*entry = ct_find(&k, now);
	if (*entry)
		return NST_CT_REPLY;
	return NST_CT_NEW;
}

static __always_inline int ct_create(const struct pkt *p, __u32 endpoint_id, __u8 direction,
				     __u64 now, __u32 cookie, __u16 proxy_port, __u8 flags)
{
	struct ct_key k = {};
	struct ct_entry e = {
		.packets = 1,
		.bytes = p->len,
		.cookie = cookie,
		.proxy_port = proxy_port,
		.flags = flags | (proxy_port ? NST_CT_PROXY_REDIRECT : 0),
	};

	if (p->proto == IPPROTO_TCP)
		e.expires_ns = now + CT_LIFETIME_SYN;
	else
		e.expires_ns = now + CT_LIFETIME_NONTCP;
	ct_key_forward(p, endpoint_id, direction, &k);
	return bpf_map_update_elem(&nst_conntrack, &k, &e, BPF_ANY);
}

#endif /* NETSTRATA_CONNTRACK_H */
