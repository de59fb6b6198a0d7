/* parse.h: Ethernet + IPv4 + L4 parsing into the few fields policy and conntrack need.
 *
 * bpf_skb_load_bytes() copies headers out of the skb, so a header split across fragments of a
 * non-linear skb parses the same as a linear one, and every read is bounds-checked by the
 * helper. The datapath is IPv4-only: ARP passes untouched (pods must resolve their gateway),
 * every other non-IPv4 frame is dropped (fail closed).
 */
#ifndef NETSTRATA_PARSE_H
#define NETSTRATA_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "netstrata_maps.h"

#define PARSE_OK 0
#define PARSE_PASS (-1) /* not ours to judge: ARP */

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMP_TIMESTAMP 13
#define ICMP_TIMESTAMPREPLY 14
#define ICMP_INFO_REQUEST 15
#define ICMP_INFO_REPLY 16

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

#define IP_OFFSET_MASK 0x1fff

/* What the programs know about one packet (host-side only, never crosses the boundary). */
struct pkt {
	__be32 saddr_be;
	__be32 daddr_be;
	__be16 sport_be;
	__be16 dport_be;
	__be16 icmp_id_be;
	__u16 policy_port; /* host order: the destination port, or ICMP type << 8 */
	__u32 len;
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 fragment;   /* a non-first IP fragment: no L4 header, port 0 (reference §3.2 item 9) */
	__u8 icmp_error; /* an ICMP error whose quoted header was parsed into inner_* */
	__u8 inner_proto;
	__u8 pad;
	__be32 inner_saddr_be;
	__be32 inner_daddr_be;
	__be16 inner_sport_be;
	__be16 inner_dport_be;
};

struct l4_ports {
	__be16 sport_be;
	__be16 dport_be;
};

struct tcp_head {
	__be16 sport_be;
	__be16 dport_be;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff;
	__u8 flags;
};

struct icmp_head {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be16 id_be;
	__be16 seq_be;
};

static __always_inline int is_icmp_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH || type == ICMP_REDIRECT ||
	       type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/* The header an ICMP error quotes (RFC 792: the IP header plus the first 8 bytes of the datagram
 * that caused it). A quote we cannot read just means the error is not RELATED to anything. */
static __always_inline void parse_icmp_quote(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	struct iphdr ip;
	struct icmp_head ih;
	__u32 l4;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0 || ip.version != 4 || ip.ihl < 5)
		return;
	l4 = off + ip.ihl * 4;
	p->inner_proto = ip.protocol;
	p->inner_saddr_be = ip.saddr;
	p->inner_daddr_be = ip.daddr;
	if (ip.protocol == IPPROTO_ICMP) {
		if (bpf_skb_load_bytes(skb, l4, &ih, sizeof(ih)) < 0)
			return;
		/* conntrack keys ICMP queries by identifier (see conntrack.h) */
		p->inner_sport_be = ih.id_be;
		p->inner_dport_be = 0;
	} else if (bpf_skb_load_bytes(skb, l4, &p->inner_sport_be, 4) < 0) {
		return;
	}
	p->icmp_error = 1;
}

static __always_inline int parse_l4(struct __sk_buff *skb, __u32 l4, struct pkt *p)
{
	struct tcp_head th;
	struct l4_ports ports;
	struct icmp_head ih;

	switch (p->proto) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, l4, &th, sizeof(th)) < 0)
			return NST_DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		p->sport_be = th.sport_be;
		p->dport_be = th.dport_be;
		p->tcp_flags = th.flags;
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP: /* SCTP common header starts with the two ports, like UDP */
		if (bpf_skb_load_bytes(skb, l4, &ports, sizeof(ports)) < 0)
			return NST_DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		p->sport_be = ports.sport_be;
		p->dport_be = ports.dport_be;
		break;
	case IPPROTO_ICMP:
		if (bpf_skb_load_bytes(skb, l4, &ih, sizeof(ih)) < 0)
			return NST_DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		p->icmp_type = ih.type;
		p->icmp_code = ih.code;
		p->icmp_id_be = ih.id_be;
		/* the ICMP type is the policy "port", in the high byte (reference §1.6, §3.1) */
		p->policy_port = (__u16)ih.type << 8;
		if (is_icmp_error(ih.type))
			parse_icmp_quote(skb, l4 + sizeof(ih), p);
		return PARSE_OK;
	default:
		/* other protocols match only port-wildcarded entries */
		return PARSE_OK;
	}
	p->policy_port = bpf_ntohs(p->dport_be);
	return PARSE_OK;
}

/* Returns PARSE_OK, PARSE_PASS, or a drop reason (> 0). */
static __always_inline int parse_packet(struct __sk_buff *skb, struct pkt *p)
{
	struct ethhdr eth;
	struct iphdr ip;

	p->len = skb->len;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return NST_DROP_INVALID_PACKET_DROPPED;
	if (eth.h_proto == bpf_htons(ETH_P_ARP))
		return PARSE_PASS;
	if (eth.h_proto != bpf_htons(ETH_P_IP))
		return NST_DROP_UNSUPPORTED_L3_PROTOCOL;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return NST_DROP_INVALID_PACKET_DROPPED;
	if (ip.version != 4 || ip.ihl < 5)
		return NST_DROP_INVALID_PACKET_DROPPED;
	p->saddr_be = ip.saddr;
	p->daddr_be = ip.daddr;
	p->proto = ip.protocol;
	if (ip.frag_off & bpf_htons(IP_OFFSET_MASK)) {
		p->fragment = 1;
		return PARSE_OK;
	}
	return parse_l4(skb, ETH_HLEN + ip.ihl * 4, p);
}

#endif /* NETSTRATA_PARSE_H */
