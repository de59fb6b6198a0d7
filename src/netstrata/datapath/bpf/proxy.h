/* proxy.h: handing a packet to a socket of the node proxy (docs/proxy-redirect.md).
 *
 * Mechanism: bpf_sk_assign at tc ingress of the pod's host veth plus a TO_PROXY mark that the
 * node's policy routing turns into local delivery. The packet keeps its addresses, so the
 * accepted socket's local address is the original destination (no NAT, no lookup table) and
 * its peer is the client's own address, whose identity the proxy reads from the ipcache view.
 *
 * bpf_sk_assign only works at tc ingress. A decision taken at tc egress (to_pod: an ingress
 * redirect, or a reply that belongs to a proxy socket) is carried over by setting the mark and
 * redirecting the packet to the ingress of the same veth, where from_pod sees the mark first
 * and assigns (Cilium's "hairpin" to cilium_host, without a device of its own).
 */
#ifndef NETSTRATA_PROXY_H
#define NETSTRATA_PROXY_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "netstrata_maps.h"
#include "parse.h"

static __always_inline int is_to_proxy_mark(__u32 mark)
{
	return (mark & NST_PROXY_MARK_MASK) == NST_PROXY_MARK_TO_PROXY;
}

static __always_inline __u32 to_proxy_mark(__u16 proxy_port)
{
	return ((__u32)proxy_port << 16) | NST_PROXY_MARK_TO_PROXY;
}

static __always_inline int is_proxy_upstream_mark(__u32 mark)
{
	__u32 magic = mark & NST_PROXY_MARK_MASK;

	return magic == NST_PROXY_MARK_FROM_INGRESS_PROXY || magic == NST_PROXY_MARK_FROM_EGRESS_PROXY;
}

/* The node socket that owns the packet's tuple (an accepted proxy connection, or a proxy
 * upstream connection the packet answers), or NULL. Listeners are not an answer here: a
 * listener on the original port would be some host process, not the proxy.
 *
 * UDP has no connection state: a lookup also finds unconnected sockets, such as the DNS
 * proxy's reply socket bound to a server's address (transparent). Only a socket connected to
 * exactly the packet's source owns it (the DNS proxy's upstream query socket). */
static __always_inline struct bpf_sock *proxy_established(struct __sk_buff *skb,
							  const struct pkt *p)
{
	struct bpf_sock_tuple t = {
		.ipv4 = { .saddr = p->saddr_be, .daddr = p->daddr_be,
			  .sport = p->sport_be, .dport = p->dport_be },
	};
	struct bpf_sock *sk;

	if (p->proto == IPPROTO_UDP) {
		sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (sk && (sk->dst_ip4 != p->saddr_be || sk->dst_port != p->sport_be)) {
			bpf_sk_release(sk);
			return NULL;
		}
		return sk;
	}
	if (p->proto != IPPROTO_TCP)
		return NULL;
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk && sk->state == BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

static __always_inline struct bpf_sock *proxy_listener(struct __sk_buff *skb, const struct pkt *p,
						       __u32 listen_addr, __u16 proxy_port)
{
	struct bpf_sock_tuple t = {
		.ipv4 = { .saddr = p->saddr_be, .daddr = bpf_htonl(listen_addr),
			  .sport = p->sport_be, .dport = bpf_htons(proxy_port) },
	};
	struct bpf_sock *sk;

	if (p->proto == IPPROTO_TCP) {
		sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (sk && sk->state != BPF_TCP_LISTEN) {
			bpf_sk_release(sk);
			return NULL;
		}
		return sk;
	}
	if (p->proto == IPPROTO_UDP)
		return bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	return NULL;
}

/* Deliver the packet to the proxy: the established socket of its connection, else the
 * listener `listen_addr`:`proxy_port` (port 0: an established socket or nothing). Returns 0,
 * or the drop reason (fail closed: with no proxy socket nothing reaches the port). */
static __always_inline __u16 assign_to_proxy(struct __sk_buff *skb, const struct pkt *p,
					     __u32 listen_addr, __u16 proxy_port)
{
	struct bpf_sock *sk;
	long err;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return NST_DROP_PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL;
	sk = proxy_established(skb, p);
	if (!sk && proxy_port)
		sk = proxy_listener(skb, p, listen_addr, proxy_port);
	if (!sk)
		return NST_DROP_PROXY_LOOKUP_FAILED;
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return NST_DROP_PROXY_SET_FAILED;
	skb->mark = to_proxy_mark(proxy_port);
	return 0;
}

/* At tc egress: mark the packet and bounce it to the ingress of the same veth (see above).
 * The frame was addressed to the pod's MAC; received on the veth with that destination it
 * would be PACKET_OTHERHOST, which ip_rcv drops, so the MACs are swapped first (the
 * destination becomes the veth's own address, the source the pod's, as if the pod sent it). */
static __always_inline int hairpin_to_proxy(struct __sk_buff *skb, __u16 proxy_port)
{
	__u8 macs[12], swapped[12];
	int i;

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) < 0)
		return TC_ACT_SHOT;
	for (i = 0; i < 6; i++) {
		swapped[i] = macs[6 + i];
		swapped[6 + i] = macs[i];
	}
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) < 0)
		return TC_ACT_SHOT;
	skb->mark = to_proxy_mark(proxy_port);
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

#endif /* NETSTRATA_PROXY_H */
