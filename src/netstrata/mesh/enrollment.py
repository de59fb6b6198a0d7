"""Which workloads are in the mesh, chosen by the labels Istio users already write.

Sidecar mode (Istio's default injection webhooks, `istio-discovery` chart `mutatingwebhook.yaml`,
and the injector's own checks in `pkg/kube/inject/webhook.go`):

1. a pod on the host network is never meshed (its traffic is the node's);
2. the pod label (or the legacy annotation) `sidecar.istio.io/inject: "false"` opts out of
   a sidecar;
3. namespace `istio-injection: disabled` opts the namespace out of sidecars, even over a pod
   label;
4. namespace `istio-injection: enabled`, or a revision label `istio.io/rev`, meshes every pod;
5. otherwise the pod label `sidecar.istio.io/inject: "true"` opts a single pod in.

Ambient mode (`pkg/kube/util` `IsAmbient...`, istio-cni): namespace or pod label
`istio.io/dataplane-mode: ambient` meshes the pod, the pod label `istio.io/dataplane-mode:
none` opts it out, and a pod that gets a sidecar is not also captured by the node proxy.

netstrata has one node proxy per node either way (ambient-style); the mode is reported so flow
records and docs can say why a workload is meshed. A meshed workload gets a SPIFFE identity from
its namespace and service account (`spiffe_id_for`). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from netstrata.mesh.spiffe import SpiffeId

INJECTION_LABEL: Final = "istio-injection"
REVISION_LABEL: Final = "istio.io/rev"
INJECT_LABEL: Final = "sidecar.istio.io/inject"
DATAPLANE_MODE_LABEL: Final = "istio.io/dataplane-mode"
DEFAULT_SERVICE_ACCOUNT: Final = "default"

MeshMode = Literal["sidecar", "ambient", "none"]


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Whether a workload is meshed, how, and the label that decided it."""

    mode: MeshMode
    reason: str

    @property
    def meshed(self) -> bool:
        return self.mode != "none"


def _sidecar(
    namespace_labels: Mapping[str, str], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> Enrollment | None:
    """The sidecar decision, or None when no sidecar rule applies."""
    pod_choice = labels.get(INJECT_LABEL, annotations.get(INJECT_LABEL))
    if pod_choice == "false":
        return Enrollment("none", f"pod {INJECT_LABEL}=false")
    ns_choice = namespace_labels.get(INJECTION_LABEL)
    if ns_choice == "disabled":
        return Enrollment("none", f"namespace {INJECTION_LABEL}=disabled")
    if ns_choice == "enabled":
        return Enrollment("sidecar", f"namespace {INJECTION_LABEL}=enabled")
    if ns_choice is None and REVISION_LABEL in namespace_labels:
        return Enrollment(
            "sidecar", f"namespace {REVISION_LABEL}={namespace_labels[REVISION_LABEL]}"
        )
    if ns_choice is None and pod_choice == "true":
        return Enrollment("sidecar", f"pod {INJECT_LABEL}=true")
    return None


def enrollment(
    namespace_labels: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    *,
    host_network: bool = False,
) -> Enrollment:
    """Decide whether one workload is in the mesh (module docstring for the rules, in order)."""
    if host_network:
        return Enrollment("none", "host network")
    annotations = annotations or {}
    sidecar = _sidecar(namespace_labels, labels, annotations)
    if sidecar is not None and sidecar.meshed:
        return sidecar
    # the sidecar opt-outs say nothing about ambient capture, which has its own labels
    if labels.get(DATAPLANE_MODE_LABEL) == "none":
        return Enrollment("none", f"pod {DATAPLANE_MODE_LABEL}=none")
    for where, source in (("pod", labels), ("namespace", namespace_labels)):
        if source.get(DATAPLANE_MODE_LABEL) == "ambient":
            return Enrollment("ambient", f"{where} {DATAPLANE_MODE_LABEL}=ambient")
    return sidecar or Enrollment("none", "no mesh label")


def spiffe_id_for(
    trust_domain: str, namespace: str, service_account: str | None = None
) -> SpiffeId:
    """The identity of a workload: Kubernetes' `default` service account when none is named."""
    return SpiffeId(trust_domain, namespace, service_account or DEFAULT_SERVICE_ACCOUNT)


__all__ = [
    "DATAPLANE_MODE_LABEL",
    "DEFAULT_SERVICE_ACCOUNT",
    "INJECTION_LABEL",
    "INJECT_LABEL",
    "REVISION_LABEL",
    "Enrollment",
    "MeshMode",
    "enrollment",
    "spiffe_id_for",
]
