"""Schema of the Kubernetes kinds netstrata reads, and of the compact `netstrata.io` Workload.

`networking.k8s.io/v1` NetworkPolicy is checked as the API server validates it (protocols are
exactly TCP/UDP/SCTP, ports 1-65535 or a lower-case IANA name, `ipBlock` CIDRs). `v1` Namespace,
Pod and Service are read for what identity and policy need (labels, service account, node,
host networking, container ports, selectors); the many other fields a real manifest carries are
accepted and ignored (`Tolerant.IGNORED`), while unknown ones remain errors so a misspelt
`serviceAccountName` cannot silently change a pod's identity.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import ConfigDict, Field, PlainValidator, model_validator

from netstrata.api._schema_base import (
    AnnotationValue,
    CIDRPrefix,
    DNSLabel,
    DNSSubdomain,
    K8sSelector,
    LabelKey,
    LabelValue,
    Model,
    NonEmptyStr,
    ObjectMeta,
    fail,
    is_iana_name,
    require_str,
)
from netstrata.api._yaml import brief

K8S_PROTOCOLS: Final = ("TCP", "UDP", "SCTP")


def check_k8s_protocol(value: Any) -> str:
    if value not in K8S_PROTOCOLS:
        fail("one of TCP, UDP, SCTP", brief(value))
    return str(value)


def check_any_case_protocol(value: Any) -> str:
    text = require_str(value, "one of TCP, UDP, SCTP")
    if text.upper() not in K8S_PROTOCOLS:
        fail("one of TCP, UDP, SCTP", brief(text))
    return text.upper()


def check_port_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        fail("a port number 1-65535", brief(value))
    return value


def check_port_name(value: Any) -> str:
    """A Kubernetes port name (IsValidPortName): a lower-case IANA service name."""
    text = require_str(value, "a port name")
    if not is_iana_name(text) or text != text.lower():
        fail("a port name: at most 15 lower-case letters, digits and inner dashes, with at least "
             "one letter", brief(text))
    return text


def check_int_or_name(value: Any) -> int | str:
    """IntOrString as Kubernetes ports use it: a number 1-65535 or a port name (`"80"` is not)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return check_port_number(value)
    if isinstance(value, str):
        return check_port_name(value)
    fail("a port number 1-65535 or a port name", brief(value))


def check_ip(value: Any) -> str:
    text = require_str(value, "an IP address")
    try:
        if "%" in text:
            raise ValueError(text)
        ipaddress.ip_address(text)
    except ValueError:
        fail("an IPv4 or IPv6 address", brief(text))
    return text


Protocol = Annotated[str, PlainValidator(check_k8s_protocol)]
PortNumber = Annotated[int, PlainValidator(check_port_number)]
PortName = Annotated[str, PlainValidator(check_port_name)]
IntOrName = Annotated[int | str, PlainValidator(check_int_or_name)]
IPAddress = Annotated[str, PlainValidator(check_ip)]
Labels = dict[LabelKey, LabelValue]


class Tolerant(Model):
    """A model that accepts (and drops) the known fields it does not read."""

    IGNORED: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in cls.IGNORED}
        return data


# ---------------------------------------------------------------- NetworkPolicy


class IPBlock(Model):
    cidr: CIDRPrefix
    except_: list[CIDRPrefix] | None = Field(None, alias="except")


class NetworkPolicyPeer(Model):
    pod_selector: K8sSelector | None = Field(None, alias="podSelector")
    namespace_selector: K8sSelector | None = Field(None, alias="namespaceSelector")
    ip_block: IPBlock | None = Field(None, alias="ipBlock")


class NetworkPolicyPort(Model):
    protocol: Protocol = "TCP"
    port: IntOrName | None = None
    end_port: PortNumber | None = Field(None, alias="endPort")


class NetworkPolicyIngressRule(Model):
    from_: list[NetworkPolicyPeer] | None = Field(None, alias="from")
    ports: list[NetworkPolicyPort] | None = None


class NetworkPolicyEgressRule(Model):
    to: list[NetworkPolicyPeer] | None = None
    ports: list[NetworkPolicyPort] | None = None


class NetworkPolicySpec(Model):
    pod_selector: K8sSelector = Field(alias="podSelector")
    policy_types: Annotated[
        list[Literal["Ingress", "Egress"]], Field(max_length=2)
    ] | None = Field(None, alias="policyTypes")
    ingress: list[NetworkPolicyIngressRule] | None = None
    egress: list[NetworkPolicyEgressRule] | None = None


class NetworkPolicyDoc(Model):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: NetworkPolicySpec
    status: Any = None


# ---------------------------------------------------------------- Namespace


class NamespaceMeta(ObjectMeta):
    name: DNSLabel


class NamespaceDoc(Model):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: NamespaceMeta
    spec: Any = None
    status: Any = None


# ---------------------------------------------------------------- Pod

_CONTAINER_IGNORED: Final = frozenset({
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle",
    "livenessProbe", "readinessProbe", "startupProbe", "resizePolicy", "resources",
    "restartPolicy", "securityContext", "stdin", "stdinOnce", "terminationMessagePath",
    "terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts", "workingDir",
})

_POD_SPEC_IGNORED: Final = frozenset({
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "dnsConfig",
    "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC",
    "hostPID", "hostUsers", "hostname", "hostnameOverride", "imagePullSecrets", "nodeSelector",
    "os", "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
    "resourceClaims", "resources", "restartPolicy", "runtimeClassName", "schedulerName",
    "schedulingGates", "securityContext", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints",
    "volumes",
})


class ContainerPort(Model):
    container_port: PortNumber = Field(alias="containerPort")
    name: PortName | None = None
    protocol: Protocol = "TCP"
    host_ip: Any = Field(None, alias="hostIP")
    host_port: Any = Field(None, alias="hostPort")


class Container(Tolerant):
    IGNORED: ClassVar[frozenset[str]] = _CONTAINER_IGNORED
    name: DNSLabel
    ports: list[ContainerPort] | None = None


class PodSpec(Tolerant):
    IGNORED: ClassVar[frozenset[str]] = _POD_SPEC_IGNORED
    containers: list[Container]
    init_containers: list[Container] | None = Field(None, alias="initContainers")
    service_account_name: DNSSubdomain | None = Field(None, alias="serviceAccountName")
    service_account: DNSSubdomain | None = Field(None, alias="serviceAccount")
    node_name: DNSSubdomain | None = Field(None, alias="nodeName")
    host_network: bool | None = Field(None, alias="hostNetwork")


class PodIP(Model):
    ip: IPAddress


class PodStatus(Model):
    """Server-written; only the addresses are read, everything else is ignored."""

    model_config = ConfigDict(extra="ignore")
    pod_ip: IPAddress | None = Field(None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(None, alias="podIPs")


class PodDoc(Model):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus | None = None


# ---------------------------------------------------------------- Service

_SERVICE_SPEC_IGNORED: Final = frozenset({
    "allocateLoadBalancerNodePorts", "clusterIPs", "externalIPs", "externalName",
    "externalTrafficPolicy", "healthCheckNodePort", "internalTrafficPolicy", "ipFamilies",
    "ipFamilyPolicy", "loadBalancerClass", "loadBalancerIP", "loadBalancerSourceRanges",
    "publishNotReadyAddresses", "sessionAffinity", "sessionAffinityConfig",
    "trafficDistribution", "type",
})


class ServicePort(Model):
    port: PortNumber
    target_port: IntOrName | None = Field(None, alias="targetPort")
    protocol: Protocol = "TCP"
    name: DNSLabel | None = None
    app_protocol: str | None = Field(None, alias="appProtocol")
    node_port: Any = Field(None, alias="nodePort")


class ServiceSpec(Tolerant):
    IGNORED: ClassVar[frozenset[str]] = _SERVICE_SPEC_IGNORED
    selector: Labels | None = None
    ports: list[ServicePort] | None = None
    cluster_ip: str | None = Field(None, alias="clusterIP")


class ServiceDoc(Model):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: NamespaceMeta
    spec: ServiceSpec
    status: Any = None


# ---------------------------------------------------------------- netstrata.io/v1alpha1 Workload


class WorkloadPort(Model):
    port: PortNumber
    protocol: Annotated[str, PlainValidator(check_any_case_protocol)] = "TCP"
    name: PortName | None = None
    app_protocol: str | None = Field(None, alias="appProtocol")


class WorkloadSpec(Model):
    """Mirrors `api.types.Workload`; name/namespace/labels/annotations may sit in metadata."""

    name: NonEmptyStr | None = None
    namespace: DNSLabel | None = None
    cluster: NonEmptyStr | None = None
    node: NonEmptyStr | None = None
    labels: Labels | None = None
    service_account: DNSSubdomain | None = Field(None, alias="serviceAccount")
    ports: list[WorkloadPort] | None = None
    kind: Literal["pod", "host-network", "external", "kube-apiserver"] = "pod"
    ips: list[IPAddress] | None = None
    fqdn: NonEmptyStr | None = None
    annotations: dict[LabelKey, AnnotationValue] | None = None


class WorkloadMeta(ObjectMeta):
    name: NonEmptyStr | None = None  # type: ignore[assignment]


class WorkloadDoc(Model):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: WorkloadMeta | None = None
    spec: WorkloadSpec
