"""Labels, label sources and selectors."""

from netstrata.labels._label import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_NAMESPACE_LABELS_PREFIX,
    LABEL_SERVICE_ACCOUNT,
    SOURCE_ANY,
    SOURCE_CIDR,
    SOURCE_CIDRGROUP,
    SOURCE_FQDN,
    SOURCE_K8S,
    SOURCE_NODE,
    SOURCE_RESERVED,
    SOURCE_UNSPEC,
    Label,
    LabelSet,
    reserved,
    split_source,
)
from netstrata.labels._selector import OPERATORS, Requirement, Selector

__all__ = [
    "LABEL_CLUSTER",
    "LABEL_NAMESPACE",
    "LABEL_NAMESPACE_LABELS_PREFIX",
    "LABEL_SERVICE_ACCOUNT",
    "OPERATORS",
    "SOURCE_ANY",
    "SOURCE_CIDR",
    "SOURCE_CIDRGROUP",
    "SOURCE_FQDN",
    "SOURCE_K8S",
    "SOURCE_NODE",
    "SOURCE_RESERVED",
    "SOURCE_UNSPEC",
    "Label",
    "LabelSet",
    "Requirement",
    "Selector",
    "reserved",
    "split_source",
]
