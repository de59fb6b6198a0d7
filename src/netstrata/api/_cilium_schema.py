"""Schema of `cilium.io/v2` CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy and CiliumCIDRGroup.

Field names, enums and limits follow the Cilium 1.19 CRDs (reference §1.2-§1.7). Everything a
single field can decide is checked here: port syntax, protocol names, entity names, CIDR
syntax, FQDN charset and length, ICMP type names per family, HTTP regexes, Kafka names. What
needs several fields at once (one L3 peer kind per element, L7 only on TCP, DNS only on egress,
deny rules without L7, ...) lives in `_cilium_checks`, which reports exact field paths.

A CNP's `spec`/`specs` are validated rule by rule (see `RuleSpec`), so one bad rule does not hide
the problems of the others.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BeforeValidator, Field, PlainValidator, ValidationInfo, field_validator

from netstrata.api._schema_base import (
    CIDROrAddress,
    CIDRPrefix,
    CiliumSelector,
    Model,
    NonEmptyStr,
    ObjectMeta,
    fail,
    is_iana_name,
    require_str,
)
from netstrata.api._yaml import brief
from netstrata.labels import Label

MAX_PORTS: Final = 40
MAX_ICMP_FIELDS: Final = 40
MAX_FQDN_LEN: Final = 255
MAX_KAFKA_TOPIC_LEN: Final = 255
"""Cilium keeps Kafka's pre-0.10 limit of 255 for compatibility (pkg/policy/api/kafka)."""

ENTITIES: Final = (
    "host", "remote-node", "kube-apiserver", "ingress", "health", "init", "unmanaged",
    "world", "world-ipv4", "world-ipv6", "cluster", "cluster-mesh", "all", "none",
)
"""Entity names (reference §1.7); `cluster-mesh` is the 1.20 pre-release addition."""

PROTOCOLS: Final = ("TCP", "UDP", "SCTP", "ANY", "VRRP", "IGMP")
"""`toPorts[].ports[].protocol` in 1.19 (reference §1.5); ICMP goes through `icmps`."""

ICMP_TYPES: Final[dict[str, dict[str, int]]] = {
    "IPv4": {
        "EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8, "EchoRequest": 8,
        "RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11,
        "ParameterProblem": 12, "Timestamp": 13, "TimestampReply": 14, "Photuris": 40,
        "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43,
    },
    "IPv6": {
        "DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3, "ParameterProblem": 4,
        "EchoRequest": 128, "EchoReply": 129, "MulticastListenerQuery": 130,
        "MulticastListenerReport": 131, "MulticastListenerDone": 132, "RouterSolicitation": 133,
        "RouterAdvertisement": 134, "NeighborSolicitation": 135, "NeighborAdvertisement": 136,
        "RedirectMessage": 137, "RouterRenumbering": 138, "ICMPNodeInformationQuery": 139,
        "ICMPNodeInformationResponse": 140, "InverseNeighborDiscoverySolicitation": 141,
        "InverseNeighborDiscoveryAdvertisement": 142, "HomeAgentAddressDiscoveryRequest": 144,
        "HomeAgentAddressDiscoveryReply": 145, "MobilePrefixSolicitation": 146,
        "MobilePrefixAdvertisement": 147, "DuplicateAddressRequestCodeSuffix": 157,
        "DuplicateAddressConfirmationCodeSuffix": 158, "ExtendedEchoRequest": 160,
        "ExtendedEchoReply": 161,
    },
}
"""ICMP type names Cilium accepts per family (pkg/policy/api/icmp.go; reference §1.6)."""

KAFKA_API_KEYS: Final = (
    "produce", "fetch", "offsets", "metadata", "leaderandisr", "stopreplica", "updatemetadata",
    "controlledshutdown", "offsetcommit", "offsetfetch", "findcoordinator", "joingroup",
    "heartbeat", "leavegroup", "syncgroup", "describegroups", "listgroups", "saslhandshake",
    "apiversions", "createtopics", "deletetopics", "deleterecords", "initproducerid",
    "offsetforleaderepoch", "addpartitionstotxn", "addoffsetstotxn", "endtxn",
    "writetxnmarkers", "txnoffsetcommit", "describeacls", "createacls", "deleteacls",
    "describeconfigs", "alterconfigs",
)
"""Kafka apiKey names, index = numeric key (Cilium pkg/policy/api/kafka APIKeyMap)."""

KAFKA_ROLES: Final = ("produce", "consume")


# ---------------------------------------------------------------- scalar checks


_DECIMAL = re.compile(r"[0-9]+")


def check_port(value: Any) -> str:
    """Decimal 0-65535, or an IANA service name (a named port, lower-cased; `0x10` is a name)."""
    if isinstance(value, int) and not isinstance(value, bool):
        fail(f'the port as a string (quote it: "{value}")', brief(value))
    text = require_str(value, "a port: 0-65535 or an IANA service name")
    if _DECIMAL.fullmatch(text):
        if len(text) > 1 and text[0] == "0":
            fail("a decimal port without leading zeros", brief(text))
        if int(text) > 65535:
            fail("0-65535 or an IANA service name", brief(text))
        return text
    if not is_iana_name(text):
        fail("0-65535 or an IANA service name (at most 15 letters, digits and inner dashes, "
             "with at least one letter)", brief(text))
    return text.lower()


def check_protocol(value: Any) -> str:
    text = require_str(value, "one of " + ", ".join(PROTOCOLS))
    upper = text.upper() or "ANY"
    if upper not in PROTOCOLS:
        hint = " (ICMP goes in icmps, not toPorts)" if upper.startswith("ICMP") else ""
        fail("one of " + ", ".join(PROTOCOLS) + hint, brief(text))
    return upper


def check_entity(value: Any) -> str:
    text = require_str(value, "an entity name")
    if text not in ENTITIES:
        fail("one of the entities " + ", ".join(ENTITIES), brief(text))
    return text


# A name is dot-separated labels of [-a-zA-Z0-9_] with an optional final dot; a pattern also
# allows `*`. Written without nested quantifiers (Cilium's CRD pattern `^([-a-zA-Z0-9_]+[.]?)+$`
# describes the same language but backtracks exponentially on a near miss).
_FQDN_NAME = re.compile(r"[-a-zA-Z0-9_]+(\.[-a-zA-Z0-9_]+)*\.?")
_FQDN_PATTERN = re.compile(r"[-a-zA-Z0-9_*]+(\.[-a-zA-Z0-9_*]+)*\.?")


def check_match_name(value: Any) -> str:
    text = require_str(value, "a DNS name")
    if text and (len(text) > MAX_FQDN_LEN or not _FQDN_NAME.fullmatch(text)):
        fail(f"a DNS name of at most {MAX_FQDN_LEN} characters from [-a-zA-Z0-9_.]", brief(text))
    return text


def check_match_pattern(value: Any) -> str:
    text = require_str(value, "a DNS name pattern")
    if text and (len(text) > MAX_FQDN_LEN or not _FQDN_PATTERN.fullmatch(text)):
        fail(f"a DNS name pattern of at most {MAX_FQDN_LEN} characters from [-a-zA-Z0-9_.*]",
             brief(text))
    return text


# Python's `re` accepts more than Envoy's RE2: lookaround, backreferences, possessive and
# atomic forms. Reject those so a policy that loads here also loads in Cilium.
_NOT_RE2 = re.compile(r"\(\?(=|!|<=|<!|>|P=)|\\[1-9]|[*+?}]\+")
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_RE2_MAX_REPEAT: Final = 1000


def check_regex(value: Any) -> str:
    """An RE2-compatible regular expression, matched by Envoy against the whole value."""
    text = require_str(value, "a regular expression")
    if text.strip() == "*":
        fail("a valid regular expression (a bare * is a glob; use .* to match anything)",
             brief(text))
    try:
        re.compile(text)
    except re.error as exc:
        fail(f"a valid regular expression ({exc.msg} at position {exc.pos})", brief(text))
    except (OverflowError, RecursionError):
        fail("a regular expression of reasonable size", brief(text))
    if _NOT_RE2.search(text):
        fail("an RE2 regular expression (no lookaround, backreferences or possessive "
             "quantifiers)", brief(text))
    for m in _REPEAT.finditer(text):
        if any(g and int(g) > _RE2_MAX_REPEAT for g in m.groups()):
            fail(f"repetition counts of at most {_RE2_MAX_REPEAT} (RE2's limit)", brief(text))
    return text


def check_rule_label(value: Any) -> str:
    """A rule label: `source:key=value` text, or Cilium's `{key, value, source}` object."""
    if isinstance(value, dict):
        key, val, source = value.get("key"), value.get("value", ""), value.get("source", "unspec")
        extra = set(value) - {"key", "value", "source"}
        if extra or not all(isinstance(x, str) for x in (key, val, source)) or not key:
            fail("a label {key, value, source} of strings with a non-empty key", brief(value))
        return str(Label(source, key, val))
    text = require_str(value, "a label: source:key=value")
    if not text or text.startswith("="):
        fail("a label: source:key=value with a non-empty key", brief(text))
    return str(Label.parse(text))


def _no_requires(value: Any) -> Any:
    if isinstance(value, list) and value:
        fail("no entries: fromRequires/toRequires were removed in Cilium 1.19 (MaxItems 0); "
             "add the required labels to each fromEndpoints/toEndpoints selector instead",
             f"{len(value)} selector(s)")
    return value


def _server_name(value: Any) -> str:
    text = require_str(value, "a server name")
    if not text:
        fail("a non-empty server name (empty server name is not allowed)", '""')
    return text


Port = Annotated[str, PlainValidator(check_port)]
Protocol = Annotated[str, PlainValidator(check_protocol)]
Entity = Annotated[str, PlainValidator(check_entity)]
MatchName = Annotated[str, PlainValidator(check_match_name)]
MatchPattern = Annotated[str, PlainValidator(check_match_pattern)]
Regex = Annotated[str, PlainValidator(check_regex)]
RuleLabel = Annotated[str, PlainValidator(check_rule_label)]
ServerName = Annotated[str, PlainValidator(_server_name)]
Requires = Annotated[list[CiliumSelector] | None, BeforeValidator(_no_requires)]


# ---------------------------------------------------------------- L7 (§1.5.1)


class SecretRef(Model):
    namespace: str | None = None
    name: NonEmptyStr


class HeaderMatch(Model):
    mismatch: Literal["LOG", "ADD", "DELETE", "REPLACE"] | None = None
    name: NonEmptyStr
    secret: SecretRef | None = None
    value: str | None = None


class HTTPRule(Model):
    path: Regex | None = None
    method: Regex | None = None
    host: Regex | None = None
    headers: list[str] | None = None
    header_matches: list[HeaderMatch] | None = Field(None, alias="headerMatches")


class KafkaRule(Model):
    role: str | None = None
    api_key: str | None = Field(None, alias="apiKey")
    api_version: str | None = Field(None, alias="apiVersion")
    client_id: str | None = Field(None, alias="clientID")
    topic: str | None = None

    @field_validator("role")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        if v and v.lower() not in KAFKA_ROLES:
            fail("a Kafka role: produce or consume", brief(v))
        return v

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v and info.data.get("role"):
            fail("either role or apiKey, not both", f"role {brief(info.data['role'])} "
                 f"and apiKey {brief(v)}")
        if v and v.lower() not in KAFKA_API_KEYS:
            fail("a Kafka apiKey name such as produce, fetch, metadata, createtopics", brief(v))
        return v

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, v: str | None) -> str | None:
        if v and (not _DECIMAL.fullmatch(v) or int(v) > 32767):
            fail("a Kafka apiVersion: a decimal number 0-32767", brief(v))
        return v

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        if v and (len(v) > MAX_KAFKA_TOPIC_LEN or not re.fullmatch(r"[a-zA-Z0-9._-]+", v)):
            fail(f"a Kafka topic of at most {MAX_KAFKA_TOPIC_LEN} characters from "
                 "[a-zA-Z0-9._-]", brief(v))
        return v


class FQDNSelectorSpec(Model):
    """`toFQDNs[]` and `rules.dns[]`: exactly one of matchName or matchPattern."""

    match_name: MatchName | None = Field(None, alias="matchName")
    match_pattern: MatchPattern | None = Field(None, alias="matchPattern")


class L7RulesSpec(Model):
    http: list[HTTPRule] | None = None
    kafka: list[KafkaRule] | None = None
    dns: list[FQDNSelectorSpec] | None = None
    l7proto: str | None = None
    l7: list[dict[NonEmptyStr, str]] | None = None

    def members(self) -> list[str]:
        """The L7 members present (Cilium counts a written empty list as present)."""
        out = [m for m in ("http", "kafka", "dns") if getattr(self, m) is not None]
        if self.l7proto:
            out.append("l7proto")
        return out

    @property
    def is_empty(self) -> bool:
        """Cilium's L7Rules.IsEmpty: no member written and no l7proto."""
        return not self.members() and self.l7 is None


# ---------------------------------------------------------------- L4 (§1.5, §1.6)


class PortProtocolSpec(Model):
    port: Port | None = None
    end_port: Annotated[int, Field(ge=0, le=65535)] = Field(0, alias="endPort")
    protocol: Protocol = "ANY"


class TLSContext(Model):
    secret: SecretRef
    trusted_ca: str | None = Field(None, alias="trustedCA")
    certificate: str | None = None
    private_key: str | None = Field(None, alias="privateKey")


class EnvoyConfigRef(Model):
    kind: Literal["CiliumEnvoyConfig", "CiliumClusterwideEnvoyConfig"]
    name: NonEmptyStr


class Listener(Model):
    envoy_config: EnvoyConfigRef = Field(alias="envoyConfig")
    name: NonEmptyStr
    priority: Annotated[int, Field(ge=1, le=100)] | None = None


class PortRuleSpec(Model):
    ports: Annotated[list[PortProtocolSpec], Field(max_length=MAX_PORTS)] | None = None
    rules: L7RulesSpec | None = None
    server_names: list[ServerName] | None = Field(None, alias="serverNames")
    terminating_tls: TLSContext | None = Field(None, alias="terminatingTLS")
    originating_tls: TLSContext | None = Field(None, alias="originatingTLS")
    listener: Listener | None = None


class ICMPFieldSpec(Model):
    family: Literal["IPv4", "IPv6"] = "IPv4"
    type: Any

    @field_validator("type")
    @classmethod
    def _type(cls, v: Any, info: ValidationInfo) -> int:
        family = info.data.get("family", "IPv4")
        names = ICMP_TYPES.get(family, ICMP_TYPES["IPv4"])
        if isinstance(v, int) and not isinstance(v, bool):
            if not 0 <= v <= 255:
                fail("an ICMP type 0-255", brief(v))
            return v
        if isinstance(v, str) and _DECIMAL.fullmatch(v) and int(v) <= 255:
            return int(v)
        if isinstance(v, str) and v in names:
            return names[v]
        fail(f"an ICMP type 0-255 or an {family} type name ({', '.join(names)})", brief(v))


class ICMPRuleSpec(Model):
    fields: Annotated[list[ICMPFieldSpec], Field(max_length=MAX_ICMP_FIELDS)] | None = None


# ---------------------------------------------------------------- peers (§1.3)


class CIDRRuleSpec(Model):
    cidr: CIDRPrefix | None = None
    except_: list[CIDRPrefix] | None = Field(None, alias="except")
    cidr_group_ref: NonEmptyStr | None = Field(None, alias="cidrGroupRef")
    cidr_group_selector: CiliumSelector | None = Field(None, alias="cidrGroupSelector")


class K8sServiceName(Model):
    service_name: NonEmptyStr = Field(alias="serviceName")
    namespace: str | None = None


class K8sServiceSelector(Model):
    selector: CiliumSelector
    namespace: str | None = None


class ServiceSpec(Model):
    k8s_service: K8sServiceName | None = Field(None, alias="k8sService")
    k8s_service_selector: K8sServiceSelector | None = Field(None, alias="k8sServiceSelector")


class AWSGroup(Model):
    labels: dict[str, str] | None = None
    security_groups_ids: list[str] | None = Field(None, alias="securityGroupsIds")
    security_groups_names: list[str] | None = Field(None, alias="securityGroupsNames")
    region: str | None = None


class GroupsSpec(Model):
    aws: AWSGroup


class Authentication(Model):
    mode: Literal["disabled", "required", "test-always-fail"]


class _Element(Model):
    """Ingress/egress elements, allow and deny alike (what deny may not carry: checks).

    Subclasses declare their L3 fields first and then `toPorts`, `icmps`, `authentication`,
    so an "unknown field" error lists them in the order the reference does.
    """

    L3_FIELDS: ClassVar[dict[str, str]] = {}
    """Wire name -> attribute of every L3 peer field, in the order errors name them."""

    def l3_present(self) -> list[tuple[str, list[Any]]]:
        """(wire name, value) of each L3 peer field that is present, even as `[]`."""
        out = []
        for wire, attr in self.L3_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out.append((wire, value))
        return out


class IngressElement(_Element):
    L3_FIELDS: ClassVar[dict[str, str]] = {
        "fromEndpoints": "from_endpoints", "fromCIDR": "from_cidr",
        "fromCIDRSet": "from_cidr_set", "fromEntities": "from_entities",
        "fromNodes": "from_nodes", "fromGroups": "from_groups",
    }

    from_endpoints: list[CiliumSelector] | None = Field(None, alias="fromEndpoints")
    from_requires: Requires = Field(None, alias="fromRequires")
    from_cidr: list[CIDROrAddress] | None = Field(None, alias="fromCIDR")
    from_cidr_set: list[CIDRRuleSpec] | None = Field(None, alias="fromCIDRSet")
    from_entities: list[Entity] | None = Field(None, alias="fromEntities")
    from_groups: list[GroupsSpec] | None = Field(None, alias="fromGroups")
    from_nodes: list[CiliumSelector] | None = Field(None, alias="fromNodes")
    to_ports: list[PortRuleSpec] | None = Field(None, alias="toPorts")
    icmps: list[ICMPRuleSpec] | None = None
    authentication: Authentication | None = None

    @property
    def endpoints(self) -> list[CiliumSelector] | None:
        return self.from_endpoints

    @property
    def requires(self) -> list[CiliumSelector] | None:
        return self.from_requires


class EgressElement(_Element):
    L3_FIELDS: ClassVar[dict[str, str]] = {
        "toEndpoints": "to_endpoints", "toCIDR": "to_cidr", "toCIDRSet": "to_cidr_set",
        "toEntities": "to_entities", "toNodes": "to_nodes", "toGroups": "to_groups",
        "toServices": "to_services", "toFQDNs": "to_fqdns",
    }

    to_endpoints: list[CiliumSelector] | None = Field(None, alias="toEndpoints")
    to_requires: Requires = Field(None, alias="toRequires")
    to_cidr: list[CIDROrAddress] | None = Field(None, alias="toCIDR")
    to_cidr_set: list[CIDRRuleSpec] | None = Field(None, alias="toCIDRSet")
    to_entities: list[Entity] | None = Field(None, alias="toEntities")
    to_groups: list[GroupsSpec] | None = Field(None, alias="toGroups")
    to_nodes: list[CiliumSelector] | None = Field(None, alias="toNodes")
    to_services: list[ServiceSpec] | None = Field(None, alias="toServices")
    to_fqdns: list[FQDNSelectorSpec] | None = Field(None, alias="toFQDNs")
    to_ports: list[PortRuleSpec] | None = Field(None, alias="toPorts")
    icmps: list[ICMPRuleSpec] | None = None
    authentication: Authentication | None = None

    @property
    def endpoints(self) -> list[CiliumSelector] | None:
        return self.to_endpoints

    @property
    def requires(self) -> list[CiliumSelector] | None:
        return self.to_requires


# ---------------------------------------------------------------- rules and documents (§1.1, §1.2)


class DefaultDeny(Model):
    ingress: bool | None = None
    egress: bool | None = None


def _log_value(value: Any) -> str:
    text = require_str(value, "a log value")
    if len(text) > 32 or not text.isprintable() or not text.isascii():
        fail("at most 32 printable ASCII characters", brief(text))
    return text


class LogSpec(Model):
    value: Annotated[str, PlainValidator(_log_value)]


class RuleSpec(Model):
    """One Cilium rule: a CNP/CCNP `spec` or one of its `specs`."""

    endpoint_selector: CiliumSelector | None = Field(None, alias="endpointSelector")
    node_selector: CiliumSelector | None = Field(None, alias="nodeSelector")
    ingress: list[IngressElement] | None = None
    ingress_deny: list[IngressElement] | None = Field(None, alias="ingressDeny")
    egress: list[EgressElement] | None = None
    egress_deny: list[EgressElement] | None = Field(None, alias="egressDeny")
    labels: list[RuleLabel] | None = None
    description: str | None = None
    enable_default_deny: DefaultDeny | None = Field(None, alias="enableDefaultDeny")
    log: LogSpec | None = None


class CiliumPolicyDoc(Model):
    """The CNP/CCNP envelope; `spec`/`specs` are validated separately as `RuleSpec`s."""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: Any = None
    specs: Any = None
    status: Any = None


class CIDRGroupSpec(Model):
    external_cidrs: list[CIDRPrefix] = Field(alias="externalCIDRs")


class CIDRGroupDoc(Model):
    """`cilium.io/v2alpha1` (or `v2`) CiliumCIDRGroup: named prefixes for `cidrGroupRef`."""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: CIDRGroupSpec
    status: Any = None
