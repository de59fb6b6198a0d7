"""Drop reasons shared by the kernel programs, the reference datapath and flow records.

The numbers are Cilium's (reference §4.3) so Hubble habits carry over. The C header
`bpf/netstrata_maps.h` mirrors this enum; `tests/unit/datapath/test_layout.py` checks both agree,
and `DESCRIPTIONS` must cover every member (a test checks that too).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class DropReason(IntEnum):
    INVALID_SOURCE_IP = 132
    POLICY_DENIED = 133
    INVALID_PACKET_DROPPED = 134
    CT_TRUNCATED_OR_INVALID_HEADER = 135
    UNSUPPORTED_L3_PROTOCOL = 139
    STALE_OR_UNROUTABLE_IP = 151
    CT_MAP_INSERTION_FAILED = 155
    IP_FRAGMENTATION_NOT_SUPPORTED = 157
    SERVICE_BACKEND_NOT_FOUND = 158
    INVALID_IDENTITY = 171
    UNKNOWN_SENDER = 172
    PROXY_LOOKUP_FAILED = 178
    PROXY_SET_FAILED = 179
    PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL = 180
    POLICY_DENY = 181
    AUTH_REQUIRED = 189
    UNENCRYPTED_TRAFFIC = 195
    DROP_HOST_NOT_READY = 202
    DROP_EP_NOT_READY = 203


DESCRIPTIONS: Final[dict[DropReason, str]] = {
    DropReason.INVALID_SOURCE_IP: "Invalid source ip",
    DropReason.POLICY_DENIED: "Policy denied",
    DropReason.INVALID_PACKET_DROPPED: "Invalid packet",
    DropReason.CT_TRUNCATED_OR_INVALID_HEADER: "CT: Truncated or invalid header",
    DropReason.UNSUPPORTED_L3_PROTOCOL: "Unsupported L3 protocol",
    DropReason.STALE_OR_UNROUTABLE_IP: "Stale or unroutable IP",
    DropReason.CT_MAP_INSERTION_FAILED: "CT: Map insertion failed",
    DropReason.IP_FRAGMENTATION_NOT_SUPPORTED: "IP fragmentation not supported",
    DropReason.SERVICE_BACKEND_NOT_FOUND: "Service backend not found",
    DropReason.INVALID_IDENTITY: "Invalid identity",
    DropReason.UNKNOWN_SENDER: "Unknown sender",
    DropReason.PROXY_LOOKUP_FAILED: "Proxy lookup failed",
    DropReason.PROXY_SET_FAILED: "Proxy set failed",
    DropReason.PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL:
        "Proxy redirection not supported for protocol",
    DropReason.POLICY_DENY: "Policy denied by denylist",
    DropReason.AUTH_REQUIRED: "Authentication required",
    DropReason.UNENCRYPTED_TRAFFIC: "Traffic is unencrypted",
    DropReason.DROP_HOST_NOT_READY: "Host datapath not ready",
    DropReason.DROP_EP_NOT_READY: "Endpoint policy program not available",
}
