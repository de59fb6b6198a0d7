/* netstrata.c: the tc programs on the host-side veth of every workload.
 *
 *   from_pod  tc ingress of the host veth: traffic leaving the pod, decided by the pod's EGRESS
 *             policy (subject = source endpoint, peer = destination identity);
 *   to_pod    tc egress of the host veth: traffic entering the pod, decided by the pod's INGRESS
 *             policy (subject = destination endpoint, peer = source identity).
 *
 * A pod-to-pod packet on one node passes from_pod of the sender and to_pod of the receiver, so
 * the egress policy of the source and the ingress policy of the destination are both enforced
 * (DESIGN.md, "The kernel datapath"). Anything the programs cannot classify is dropped with a
 * numbered reason and a drop event (fail closed).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "conntrack.h"
#include "maps_def.h"
#include "netstrata_maps.h"
#include "parse.h"
#include "mesh.h"
#include "policy.h"
#include "proxy.h"

#define WORLD_IDENTITY 2 /* reserved:world, what an ipcache miss means (reference §3.5) */

/* Everything an event reports about a decision. */
struct decision {
	__u32 endpoint_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u8 direction;
	__u8 ct_state;
	__u8 flags; /* enum nst_event_flag */
	__u8 verdict;
	struct lookup_result res;
	__u64 now; /* the packet's one clock read, for conntrack and events (0: not read yet) */
};

/* The record is filled in place in the ring (bpf_ringbuf_reserve), not built on the stack and
 * copied in by bpf_ringbuf_output: one 64-byte write instead of two. Reserved memory is not
 * zeroed, so every field, the padding included, is written. */
static __always_inline void emit(struct __sk_buff *skb, const struct pkt *p,
				 const struct decision *d, __u8 type, __u8 subtype)
{
	struct flow_event *ev = bpf_ringbuf_reserve(&nst_events, sizeof(*ev), 0);

	/* a full ring loses the record, never the packet; the loss is counted */
	if (!ev) {
		__u32 slot = 0;
		struct events_lost *lost = bpf_map_lookup_elem(&nst_events_lost, &slot);

		if (lost)
			lost->records++;
		return;
	}
	ev->timestamp_ns = d->now ? d->now : bpf_ktime_get_ns();
	ev->type = type;
	ev->subtype = subtype;
	ev->verdict = d->verdict;
	ev->direction = d->direction;
	ev->match_type = d->res.match_type;
	ev->flags = d->flags | (p->fragment ? NST_EVENT_FRAGMENT : 0);
	ev->proto = p->proto;
	ev->ct_state = d->ct_state;
	ev->endpoint_id = d->endpoint_id;
	ev->src_identity = d->src_identity;
	ev->dst_identity = d->dst_identity;
	ev->saddr_be = p->saddr_be;
	ev->daddr_be = p->daddr_be;
	ev->sport_be = p->sport_be;
	ev->dport_be = p->dport_be;
	ev->drop_reason = d->res.drop_reason;
	ev->proxy_port = d->res.proxy_port;
	ev->cookie = d->res.cookie;
	ev->ifindex = skb->ifindex;
	ev->pkt_len = p->len;
	ev->icmp_type = p->icmp_type;
	ev->icmp_code = p->icmp_code;
	ev->tcp_flags = p->tcp_flags;
	ev->lookup_step = d->res.step;
	__builtin_memset(ev->pad, 0, sizeof(ev->pad));
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline int drop(struct __sk_buff *skb, const struct pkt *p, struct decision *d,
				__u16 reason)
{
	d->verdict = NST_VERDICT_DROPPED;
	d->res.drop_reason = reason;
	emit(skb, p, d, NST_EVENT_DROP, (__u8)reason);
	return TC_ACT_SHOT;
}

static __always_inline struct endpoint_info *endpoint_of(__be32 ip_be)
{
	struct endpoint_key k = { .ip_be = ip_be };

	return bpf_map_lookup_elem(&nst_endpoints, &k);
}

/* A local endpoint's identity comes from the endpoints map, so a pod is known the moment it is
 * attached, before the ipcache sync; anything else from the ipcache; a miss is world. */
static __always_inline __u32 identity_of(__be32 ip_be)
{
	struct ipcache_key k = { .prefixlen = 32, .ip_be = ip_be };
	struct endpoint_info *ep = endpoint_of(ip_be);
	struct ipcache_info *info;

	if (ep)
		return ep->identity;
	info = bpf_map_lookup_elem(&nst_ipcache, &k);
	return info ? info->identity : WORLD_IDENTITY;
}

/* The peer's identity and the decision's source and destination identities. */
static __always_inline __u32 set_identities(const struct pkt *p, struct decision *d,
					    __u32 ep_identity)
{
	__u32 peer = identity_of(d->direction == NST_DIR_EGRESS ? p->daddr_be : p->saddr_be);

	d->src_identity = d->direction == NST_DIR_EGRESS ? ep_identity : peer;
	d->dst_identity = d->direction == NST_DIR_EGRESS ? peer : ep_identity;
	return peer;
}

/* REPLY and RELATED packets skip policy; the first reply and every related packet leave a trace
 * event so observe can show them without one record per packet. The peer's identity is looked
 * up only for that event: the other replies (half of all packets) need no ipcache lookup. */
static __always_inline int pass_tracked(struct __sk_buff *skb, const struct pkt *p,
					struct decision *d, struct ct_entry *ct, __u64 now,
					__u32 ep_identity)
{
	int first_reply = !(ct->flags & NST_CT_SEEN_REPLY);

	ct_refresh(ct, p, now, d->ct_state == NST_CT_REPLY);
	if (d->ct_state == NST_CT_RELATED || first_reply) {
		set_identities(p, d, ep_identity);
		d->verdict = NST_VERDICT_FORWARDED;
		d->flags |= NST_EVENT_IS_REPLY;
		emit(skb, p, d, NST_EVENT_TRACE,
		     d->direction == NST_DIR_EGRESS ? NST_TRACE_FROM_ENDPOINT : NST_TRACE_TO_ENDPOINT);
	}
	return TC_ACT_OK;
}

/* The policy verdict of a NEW or ESTABLISHED packet of an enforced direction. */
static __always_inline void decide(const struct pkt *p, struct decision *d, __u32 peer)
{
	policy_lookup(d->endpoint_id, peer, d->direction, p->proto, p->policy_port, &d->res);
	/* An untracked fragment carries no port (reference §3.2 item 9): only a port-wildcarded
	 * entry may allow it, and when none does the reason says why (as Cilium's
	 * DROP_FRAG_NOSUPPORT). An explicit deny keeps its own reason. */
	if (p->fragment && (d->res.drop_reason == NST_DROP_POLICY_DENIED ||
			    (!d->res.drop_reason && d->res.prefix_bits > 8)))
		d->res.drop_reason = NST_DROP_IP_FRAGMENTATION_NOT_SUPPORTED;
}

/* A packet to_pod bounced to this veth's ingress for the proxy (proxy.h). Only the node sets
 * marks (the veth scrubs the pod's), so the mark is trusted. */
static __always_inline int deliver_bounced(struct __sk_buff *skb, const struct pkt *p,
					   struct decision *d)
{
	__u16 reason = assign_to_proxy(skb, p, NST_PROXY_INGRESS_ADDR, (__u16)(skb->mark >> 16));

	d->direction = NST_DIR_INGRESS;
	return reason ? drop(skb, p, d, reason) : TC_ACT_OK;
}

/* A TCP segment that opens nothing (ACK set), or a UDP datagram, that no conntrack entry
 * knows: if a node socket owns its tuple it answers a proxy upstream connection whose first
 * packets never passed this node's programs (the upstream went to another node, or came from
 * the ingress proxy's accepted socket), and it belongs to that socket, not to the pod. For UDP
 * only a socket connected to the datagram's source owns it (proxy_established). */
static __always_inline int answers_proxy_socket(struct __sk_buff *skb, const struct pkt *p)
{
	struct bpf_sock *sk;

	if (p->proto == IPPROTO_TCP ? !(p->tcp_flags & TCP_FLAG_ACK) : p->proto != IPPROTO_UDP)
		return 0;
	sk = proxy_established(skb, p);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 direction)
{
	struct pkt p = {};
	struct decision d = { .direction = direction };
	struct endpoint_info *ep;
	struct ct_entry *ct = NULL;
	__u32 peer, ep_identity, enforced_flag;
	__u16 proxy_port = 0, reason;
	__u8 ep_flags, ct_flags = 0;
	__u64 now;
	int ret, from_ingress_proxy = 0, mesh_captured = 0;

	ret = parse_packet(skb, &p);
	if (ret == PARSE_PASS)
		return TC_ACT_OK;
	if (ret > 0)
		return drop(skb, &p, &d, ret);

	if (direction == NST_DIR_EGRESS && is_to_proxy_mark(skb->mark))
		return deliver_bounced(skb, &p, &d);
	/* the node proxy's upstream: policy applies, the flag routes the replies back to it */
	if (direction == NST_DIR_INGRESS && is_proxy_upstream_mark(skb->mark)) {
		ct_flags = NST_CT_PROXY_UPSTREAM;
		from_ingress_proxy = (skb->mark & NST_PROXY_MARK_MASK) ==
				     NST_PROXY_MARK_FROM_INGRESS_PROXY;
	}

	/* the endpoint whose policy applies; packets from a pod must carry its own address */
	ep = endpoint_of(direction == NST_DIR_EGRESS ? p.saddr_be : p.daddr_be);
	if (!ep || ep->ifindex != skb->ifindex)
		return drop(skb, &p, &d,
			    direction == NST_DIR_EGRESS ? NST_DROP_INVALID_SOURCE_IP
							: NST_DROP_DROP_EP_NOT_READY);
	d.endpoint_id = ep->endpoint_id;
	ep_identity = ep->identity;
	ep_flags = ep->flags;
	enforced_flag = direction == NST_DIR_EGRESS ? NST_EP_EGRESS_ENFORCED : NST_EP_INGRESS_ENFORCED;

	now = d.now = bpf_ktime_get_ns();
	d.ct_state = p.fragment ? NST_CT_UNTRACKED : ct_lookup(&p, d.endpoint_id, direction, now, &ct);
	if (ct && (d.ct_state == NST_CT_REPLY || d.ct_state == NST_CT_RELATED)) {
		/* a reply to the proxy's upstream connection goes to the proxy's socket */
		if (direction == NST_DIR_EGRESS && d.ct_state == NST_CT_REPLY &&
		    (ct->flags & NST_CT_PROXY_UPSTREAM)) {
			reason = assign_to_proxy(skb, &p, 0, 0);
			if (reason) {
				set_identities(&p, &d, ep_identity);
				return drop(skb, &p, &d, reason);
			}
		}
		return pass_tracked(skb, &p, &d, ct, now, ep_identity);
	}
	peer = set_identities(&p, &d, ep_identity);
	if (direction == NST_DIR_INGRESS && d.ct_state == NST_CT_NEW && !ct_flags &&
	    answers_proxy_socket(skb, &p))
		return hairpin_to_proxy(skb, 0);

	if (ep_flags & enforced_flag) {
		if (peer == 0) /* identity 0 is invalid (reference §2.1): never let it match "any" */
			return drop(skb, &p, &d, NST_DROP_INVALID_IDENTITY);
		decide(&p, &d, peer);
	}

	if (d.res.drop_reason) {
		if (!(ep_flags & NST_EP_AUDIT)) {
			d.verdict = NST_VERDICT_DROPPED;
			emit(skb, &p, &d, NST_EVENT_POLICY_VERDICT, 0);
			return drop(skb, &p, &d, d.res.drop_reason);
		}
		/* audit mode: any policy drop becomes an allow, marked audited (reference §1.10.7) */
		d.verdict = NST_VERDICT_AUDIT;
		d.flags |= NST_EVENT_AUDITED;
	} else if (d.res.proxy_port && !from_ingress_proxy) {
		/* the L7 rules are the proxy's: the packet goes to its listener (proxy.h); the
		 * ingress proxy's own upstream already passed them and is not sent back */
		d.verdict = NST_VERDICT_REDIRECTED;
		proxy_port = d.res.proxy_port;
	} else {
		d.verdict = NST_VERDICT_FORWARDED;
	}
	/* The mesh, a decision of its own after L3/L4 allowed the connection (mesh.h): a meshed
	 * connection goes to the node proxy's mesh listener. Connections the node proxy opened
	 * (an upstream, ct_flags set) already went through it and are not captured again; a port
	 * with Cilium L7 rules stays with the L7 listener (not carried by the mesh, see mesh.md). */
	if (!proxy_port && !ct_flags && mesh_captures(&p, direction)) {
		d.verdict = NST_VERDICT_REDIRECTED;
		proxy_port = direction == NST_DIR_EGRESS ? NST_MESH_PORT_OUTBOUND : NST_MESH_PORT_INBOUND;
		d.res.proxy_port = proxy_port;
		mesh_captured = 1;
	}

	if (d.ct_state == NST_CT_NEW) {
		if (ct_create(&p, d.endpoint_id, direction, now, d.res.cookie, proxy_port, ct_flags) < 0)
			return drop(skb, &p, &d, NST_DROP_CT_MAP_INSERTION_FAILED);
	} else if (ct) {
		ct_refresh(ct, &p, now, 0);
	}
	/* a verdict event for every new connection (and untracked fragment), not every packet;
	 * a mesh capture is reported even where no policy is enforced */
	if (((ep_flags & enforced_flag) || mesh_captured) && d.ct_state != NST_CT_ESTABLISHED)
		emit(skb, &p, &d, NST_EVENT_POLICY_VERDICT, 0);
	if (!proxy_port)
		return TC_ACT_OK;
	if (direction == NST_DIR_INGRESS)
		return hairpin_to_proxy(skb, proxy_port);
	reason = assign_to_proxy(skb, &p, NST_PROXY_EGRESS_ADDR, proxy_port);
	return reason ? drop(skb, &p, &d, reason) : TC_ACT_OK;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	return handle(skb, NST_DIR_EGRESS);
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	return handle(skb, NST_DIR_INGRESS);
}

/* The project's license. No GPL-only helper is used, so the kernel needs no GPL declaration. */
char LICENSE[] SEC("license") = "Apache-2.0";
