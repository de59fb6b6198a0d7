"""netns/: namespaces, veths, routes and the setns helpers, on the real kernel."""

from __future__ import annotations

import os
import socket

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for netlink")

from netstrata.netns import (  # noqa: E402
    GATEWAY,
    check_ours,
    cleanup,
    delete_link,
    ifindex,
    in_netns,
    ipr,
    list_links,
    list_netns,
    netns_exists,
    run_in_netns,
    setup_node,
    socket_in_netns,
    wire_pod,
)


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_wire_pod_and_cleanup(tag: str) -> None:
    prefix = f"nst{tag}"
    try:
        setup_node(f"{prefix}-node")
        link = wire_pod(f"{prefix}-p", "10.202.0.5", f"{prefix}p", node_netns=f"{prefix}-node")
        assert link.host_ifindex == ifindex(f"{prefix}p", f"{prefix}-node")
        with ipr(link.pod_netns) as nl:
            addrs = {a.get_attr("IFA_ADDRESS") for a in nl.get_addr(family=socket.AF_INET)}
            routes = {(r.get_attr("RTA_DST"), r.get_attr("RTA_GATEWAY"))
                      for r in nl.get_routes(family=socket.AF_INET, table=254)}
        assert "10.202.0.5" in addrs
        assert (None, str(GATEWAY)) in routes  # default via the node's gateway
        # the pod's source address toward the gateway is its own /32
        probe = socket_in_netns(link.pod_netns, socket.AF_INET, socket.SOCK_DGRAM)
        with probe:
            probe.connect((str(GATEWAY), 9))
            assert probe.getsockname()[0] == "10.202.0.5"
    finally:
        removed = cleanup(prefix)
    assert f"netns {prefix}-p" in removed and f"netns {prefix}-node" in removed
    assert list_netns(prefix) == [] and list_links(None, prefix) == []


def test_foreign_names_are_refused() -> None:
    for name in ("eth0", "lo", "docker0"):
        with pytest.raises(ValueError):
            delete_link(name)
    with pytest.raises(ValueError):
        check_ours("nst-much-too-long-ifname", ifname=True)
    with pytest.raises(ValueError):
        cleanup("")


def test_in_netns_moves_one_thread_and_comes_back(tag: str) -> None:
    name = f"nst{tag}-ns"
    setup_node(name)
    try:
        home = _netns_inode()
        with in_netns(name):
            inside = _netns_inode()
            assert socket.if_nameindex() == [(1, "lo")]
        assert inside != home and _netns_inode() == home
        assert run_in_netns(name, _netns_inode) == inside
        with pytest.raises(ZeroDivisionError):
            run_in_netns(name, lambda: 1 / 0)
    finally:
        cleanup(f"nst{tag}")
    assert not netns_exists(name)
