/* mesh.h: does a TCP connection take the mesh path (docs/mesh.md, "Kernel capture")?
 *
 * Consulted after the L3/L4 verdict, separately from it: a pod without any Cilium policy is
 * still captured, and a connection the policy denies was dropped before it gets here (it never
 * reaches the mesh). The maps are a table userspace computes from the pure decision of
 * mesh/bypass.py (datapath/mesh_capture.py), so the kernel only looks up, in this order:
 *
 *   1. the destination is not a meshed workload: not captured (the mesh does not apply)
 *   ingress (to_pod of the destination):
 *   2. a port entry for (destination, ingress, port): its path
 *   3. else the destination's INBOUND_DEFAULT flag
 *   egress (from_pod of the source):
 *   2. the source is not meshed: not captured (it has no proxy to carry it)
 *   3. a port entry for (source, egress, port): its path (excludeOutboundPorts, then
 *      includeOutboundPorts, decided before any range as istio-iptables does)
 *   4. else the most specific range entry for (source, destination IP)
 *   5. else the source's OUTBOUND_DEFAULT flag
 */
#ifndef NETSTRATA_MESH_H
#define NETSTRATA_MESH_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "maps_def.h"
#include "netstrata_maps.h"
#include "parse.h"

static __always_inline struct mesh_info *mesh_of(__be32 ip_be)
{
	struct endpoint_key k = { .ip_be = ip_be };
	struct mesh_info *m = bpf_map_lookup_elem(&nst_mesh, &k);

	return m && (m->flags & NST_MESH_FLAG_ENROLLED) ? m : NULL;
}

static __always_inline __u8 mesh_port_path(__be32 ip_be, __u8 direction, __be16 port_be)
{
	struct mesh_port_key k = { .ip_be = ip_be, .direction = direction, .port_be = port_be };
	struct mesh_path *v = bpf_map_lookup_elem(&nst_mesh_ports, &k);

	return v ? v->path : 0;
}

/* 1 when the connection goes to the node proxy's mesh listener of `direction`. */
static __always_inline int mesh_captures(const struct pkt *p, __u8 direction)
{
	struct mesh_range_key rk = { .prefixlen = 64 };
	struct mesh_info *src, *dst;
	struct mesh_path *v;
	__u8 path;

	if (p->proto != IPPROTO_TCP || p->fragment)
		return 0;
	dst = mesh_of(p->daddr_be);
	if (!dst) /* 1 */
		return 0;
	if (direction == NST_DIR_INGRESS) {
		path = mesh_port_path(p->daddr_be, direction, p->dport_be);
		if (path) /* 2 */
			return path == NST_MESH_PATH_CAPTURE;
		return !!(dst->flags & NST_MESH_FLAG_INBOUND_DEFAULT); /* 3 */
	}
	src = mesh_of(p->saddr_be);
	if (!src) /* 2 */
		return 0;
	path = mesh_port_path(p->saddr_be, direction, p->dport_be);
	if (path) /* 3 */
		return path == NST_MESH_PATH_CAPTURE;
	rk.ip_be = p->saddr_be;
	rk.dst_be = p->daddr_be;
	v = bpf_map_lookup_elem(&nst_mesh_ranges, &rk);
	if (v) /* 4 */
		return v->path == NST_MESH_PATH_CAPTURE;
	return !!(src->flags & NST_MESH_FLAG_OUTBOUND_DEFAULT); /* 5 */
}

#endif /* NETSTRATA_MESH_H */
