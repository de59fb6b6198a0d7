"""Hand-built endpoints, packets and flows shared by the observe tests.

Values follow the illustrative flow of reference §4.4 (shop namespace, cluster c1, node-a).
"""

from __future__ import annotations

from datetime import UTC, datetime

from netstrata.observe.builders import Packet
from netstrata.observe.flow import Endpoint, TCPFlags
from netstrata.policy.types import Proto

# 2026-05-01T10:00:00.123Z, computed independently of the code under test.
T0 = int(datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC).timestamp()) * 1_000_000_000 + 123_000_000
NODE = "c1/node-a"

CLIENT = Endpoint(id=1211, identity=48213, cluster_name="c1", namespace="shop",
                  labels=("k8s:app=client", "k8s:io.kubernetes.pod.namespace=shop"),
                  pod_name="client-7d9")
API = Endpoint(id=402, identity=51007, cluster_name="c1", namespace="shop",
               labels=("k8s:app=api", "k8s:io.kubernetes.pod.namespace=shop"), pod_name="api-0")
WORLD = Endpoint(identity=2, labels=("reserved:world",))
HOST = Endpoint(identity=1, labels=("reserved:host",))

CLIENT_IP = "10.0.1.5"
API_IP = "10.0.2.7"

SYN = Packet(CLIENT_IP, API_IP, Proto.TCP, 40112, 8080, TCPFlags(SYN=True),
             source=CLIENT, destination=API)
"""client -> api:8080, first packet of a TCP connection."""
HTTP_CONN = Packet(CLIENT_IP, API_IP, Proto.TCP, 40112, 8080, source=CLIENT, destination=API)
DNS_CONN = Packet(CLIENT_IP, "10.96.0.10", Proto.UDP, 53000, 53, source=CLIENT,
                  destination=Endpoint(id=7, identity=102, namespace="kube-system",
                                       labels=("k8s:k8s-app=kube-dns",), pod_name="coredns-1"))
