/* layout_probe.c: names every shared struct and enum once so that clang emits their BTF.
 *
 * Never loaded. The layout test and the loader read this object's BTF and compare it with
 * datapath/maps/_layout.py field by field (as Cilium's bpf_alignchecker.c does), because the
 * programs' own BTF only describes the types their maps and functions happen to use.
 */
#include "netstrata_maps.h"

struct endpoint_key probe_endpoint_key;
struct endpoint_info probe_endpoint_info;
struct ipcache_key probe_ipcache_key;
struct ipcache_info probe_ipcache_info;
struct policy_key probe_policy_key;
struct policy_exact_key probe_policy_exact_key;
struct policy_entry probe_policy_entry;
struct ct_key probe_ct_key;
struct ct_entry probe_ct_entry;
struct flow_event probe_flow_event;
struct events_lost probe_events_lost;
struct mesh_info probe_mesh_info;
struct mesh_port_key probe_mesh_port_key;
struct mesh_range_key probe_mesh_range_key;
struct mesh_path probe_mesh_path;

enum nst_verdict probe_verdict;
enum nst_direction probe_direction;
enum nst_drop_reason probe_drop_reason;
enum nst_match_type probe_match_type;
enum nst_event_type probe_event_type;
enum nst_trace_point probe_trace_point;
enum nst_ct_state probe_ct_state;
enum nst_endpoint_flag probe_endpoint_flag;
enum nst_policy_flag probe_policy_flag;
enum nst_ct_flag probe_ct_flag;
enum nst_event_flag probe_event_flag;
enum nst_policy_prefix probe_policy_prefix;
enum nst_proxy probe_proxy;
enum nst_mesh_port probe_mesh_port;
enum nst_mesh_flag probe_mesh_flag;
enum nst_mesh_path probe_mesh_path_enum;
