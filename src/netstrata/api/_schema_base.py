"""Pieces every manifest schema shares: the strict base model, scalar checks, label selectors.

Pydantic is used only to *check* manifests (STYLE.md "Dataclasses and pydantic"); the converters
turn checked models into `api.types` dataclasses. Validators here raise `fail(expected, found)`,
a pydantic custom error whose context carries the two halves of our `expected X, found Y`
message, so `_problems.py` can render it without parsing pydantic's text.

Kubernetes is strict about JSON types (a label value `1.0` or a port name `80` written as a
number is rejected by the API server), so the base model is `strict=True`: no silent coercion.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Final, NoReturn

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from netstrata.api._yaml import brief
from netstrata.labels import Selector

ERROR_TYPE: Final = "netstrata"
"""The pydantic error type of every check written here."""


def fail(expected: str, found: str) -> NoReturn:
    """Reject a value; `expected`/`found` become the two halves of the rendered message."""
    raise PydanticCustomError(
        ERROR_TYPE, "expected {expected}, found {found}", {"expected": expected, "found": found}
    )


class Model(BaseModel):
    """Base of every schema model: unknown fields are errors, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


# ---------------------------------------------------------------- scalar checks

# DNS-1123 (RFC 1123) names as Kubernetes validates them (apimachinery validation.IsDNS1123*).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Label keys/values (apimachinery IsQualifiedName / IsValidLabelValue).
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SOURCE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")
# IANA service name (RFC 6335 §5.1; Cilium pkg/iana, k8s IsValidPortName): <= 15 chars,
# letters/digits/non-consecutive inner dashes, at least one letter.
_IANA_SVC = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


def require_str(value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        fail(what, brief(value))
    return value


def check_dns_label(value: Any) -> str:
    text = require_str(value, "a DNS-1123 label (lower-case letters, digits, '-')")
    if len(text) > 63 or not _DNS1123_LABEL.fullmatch(text):
        fail("a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
             "starting and ending with a letter or digit", brief(text))
    return text


def check_dns_subdomain(value: Any) -> str:
    text = require_str(value, "a DNS-1123 subdomain (lower-case letters, digits, '-', '.')")
    if len(text) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(text):
        fail("a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' or '.', "
             "starting and ending with a letter or digit", brief(text))
    return text


def _is_qualified_name(text: str) -> bool:
    prefix, slash, name = text.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.fullmatch(name))


def check_label_key(value: Any) -> str:
    text = require_str(value, "a label key")
    if not _is_qualified_name(text):
        fail("a label key: an optional DNS subdomain prefix and '/', then at most 63 letters, "
             "digits, '-', '_' or '.' starting and ending with a letter or digit", brief(text))
    return text


def check_selector_key(value: Any) -> str:
    """A Cilium selector key: a label key, optionally prefixed with its source (`k8s:app`)."""
    text = require_str(value, "a label key")
    source, colon, key = text.partition(":")
    if not colon:
        source, key = "", text
    if (colon and not _SOURCE.fullmatch(source)) or not _is_qualified_name(key):
        fail("a label key, optionally prefixed with a source (k8s:app, reserved:host, any:team)",
             brief(text))
    return text


def check_label_value(value: Any) -> str:
    text = require_str(value, "a label value (a string; quote numbers and booleans)")
    if len(text) > 63 or not _LABEL_VALUE.fullmatch(text):
        fail("a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending "
             "with a letter or digit", brief(text))
    return text


def check_nonempty(value: Any) -> str:
    text = require_str(value)
    if not text.strip():
        fail("a non-empty string", brief(text))
    return text


def is_iana_name(text: str) -> bool:
    return len(text) <= 15 and bool(_IANA_SVC.fullmatch(text))


def parse_prefix(text: str, *, allow_address: bool) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse `addr/len` strictly (Go netip.ParsePrefix): decimal length, no zone, no netmask.

    Host bits may be set, as in Cilium and Kubernetes (`10.0.0.1/8` is the /8 around it).
    With `allow_address`, a bare address is its host prefix (Cilium `fromCIDR: [10.0.0.1]`).

    Raises:
        ValueError: with the reason, phrased as what was expected.
    """
    if "%" in text:
        raise ValueError("an address without a zone (%)")
    addr, slash, bits = text.partition("/")
    if not slash:
        if not allow_address:
            raise ValueError("a prefix in address/length form, e.g. 10.0.0.0/8")
        return ipaddress.ip_network(ipaddress.ip_address(addr))
    if not bits.isdigit() or (len(bits) > 1 and bits[0] == "0"):
        raise ValueError("a decimal prefix length (a netmask such as /255.0.0.0 is not accepted, "
                         "nor is a non-contiguous mask)")
    ip = ipaddress.ip_address(addr)
    if int(bits) > ip.max_prefixlen:
        raise ValueError(f"a prefix length of at most {ip.max_prefixlen}")
    return ipaddress.ip_network(f"{addr}/{bits}", strict=False)


def check_prefix(value: Any, *, allow_address: bool = False) -> str:
    what = "an IP address or CIDR prefix" if allow_address else "a CIDR prefix (address/length)"
    text = require_str(value, what)
    try:
        parse_prefix(text, allow_address=allow_address)
    except ValueError as exc:
        reason = str(exc)
        if not reason.startswith(("a ", "an ")):
            reason = what
        fail(reason, brief(text))
    return text


DNSLabel = Annotated[str, PlainValidator(check_dns_label)]
DNSSubdomain = Annotated[str, PlainValidator(check_dns_subdomain)]
LabelKey = Annotated[str, PlainValidator(check_label_key)]
SelectorKey = Annotated[str, PlainValidator(check_selector_key)]
LabelValue = Annotated[str, PlainValidator(check_label_value)]
NonEmptyStr = Annotated[str, PlainValidator(check_nonempty)]
CIDRPrefix = Annotated[str, PlainValidator(check_prefix)]
CIDROrAddress = Annotated[str, PlainValidator(lambda v: check_prefix(v, allow_address=True))]


def check_annotation_value(value: Any) -> str:
    return require_str(value, "an annotation value (a string; quote numbers and booleans)")


AnnotationValue = Annotated[str, PlainValidator(check_annotation_value)]


# ---------------------------------------------------------------- label selectors (§1.9)

_SET_OPERATORS: Final = ("In", "NotIn")
_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


def _check_operator(value: Any) -> str:
    if value not in _OPERATORS:
        fail("one of In, NotIn, Exists, DoesNotExist", brief(value))
    return str(value)


_OPERATOR_BY_LOWER: Final = {op.lower(): op for op in _OPERATORS}


def _check_cilium_operator(value: Any) -> str:
    """As `_check_operator`, any case: Cilium's own examples write `operator: in`."""
    if not isinstance(value, str) or value.lower() not in _OPERATOR_BY_LOWER:
        fail("one of In, NotIn, Exists, DoesNotExist", brief(value))
    return _OPERATOR_BY_LOWER[value.lower()]


class _RequirementBase(Model):
    operator: str
    values: list[LabelValue] | None = Field(default=None, validate_default=True)

    @field_validator("values")
    @classmethod
    def _values_fit_operator(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        op = info.data.get("operator")
        if op in _SET_OPERATORS and not v:
            fail(f"a non-empty list of values for operator {op}", brief(v))
        if op in ("Exists", "DoesNotExist") and v:
            fail(f"no values for operator {op}", brief(v))
        return v


class K8sRequirement(_RequirementBase):
    key: Annotated[str, PlainValidator(check_label_key)]
    operator: Annotated[str, PlainValidator(_check_operator)]


class CiliumRequirement(_RequirementBase):
    key: Annotated[str, PlainValidator(check_selector_key)]
    operator: Annotated[str, PlainValidator(_check_cilium_operator)]


class K8sSelector(Model):
    """A Kubernetes LabelSelector (NetworkPolicy, Service selectors): plain label keys."""

    match_labels: dict[LabelKey, LabelValue] | None = Field(None, alias="matchLabels")
    match_expressions: list[K8sRequirement] | None = Field(None, alias="matchExpressions")

    def to_selector(self) -> Selector:
        return Selector.from_k8s(
            self.match_labels,
            [(r.key, r.operator, tuple(r.values or ())) for r in self.match_expressions or ()],
        )


class CiliumSelector(Model):
    """A Cilium EndpointSelector: a LabelSelector whose keys may carry a source prefix."""

    match_labels: dict[SelectorKey, LabelValue] | None = Field(None, alias="matchLabels")
    match_expressions: list[CiliumRequirement] | None = Field(None, alias="matchExpressions")

    def to_selector(self) -> Selector:
        return Selector.from_k8s(
            self.match_labels,
            [(r.key, r.operator, tuple(r.values or ())) for r in self.match_expressions or ()],
        )


# ---------------------------------------------------------------- object metadata


class ObjectMeta(Model):
    """`metadata`: what we read, plus the server-set fields a `kubectl get -o yaml` carries.

    Unknown fields stay errors (a misspelt `namespace` must not silently move a policy), but
    fields written by the API server are accepted and ignored. `description` is accepted
    because Cilium's own example manifests put it there.
    """

    name: DNSSubdomain
    namespace: DNSLabel | None = None
    labels: dict[LabelKey, LabelValue] | None = None
    annotations: dict[LabelKey, AnnotationValue] | None = None
    description: str | None = None
    generate_name: Any = Field(None, alias="generateName")
    uid: Any = None
    resource_version: Any = Field(None, alias="resourceVersion")
    generation: Any = None
    creation_timestamp: Any = Field(None, alias="creationTimestamp")
    deletion_timestamp: Any = Field(None, alias="deletionTimestamp")
    deletion_grace_period_seconds: Any = Field(None, alias="deletionGracePeriodSeconds")
    owner_references: Any = Field(None, alias="ownerReferences")
    finalizers: Any = None
    managed_fields: Any = Field(None, alias="managedFields")
    self_link: Any = Field(None, alias="selfLink")


CLUSTER_ANNOTATION: Final = "netstrata.io/cluster"
"""Annotation placing a Namespace, Pod or Service in a named cluster (default: `default`)."""


def pairs(mapping: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """A mapping as sorted (key, value) pairs, the shape `api.types` stores labels in."""
    return tuple(sorted((mapping or {}).items()))
