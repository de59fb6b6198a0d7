"""Kafka L7 rules (`toPorts[].rules.kafka[]`, Cilium reference §1.5.1, [<=1.19]).

Shared by the reference datapath and the node proxy. Pure: no sockets, no clock. The proxy's
wire parser (`proxy/kafka.py`) turns a frame into the `KafkaRequest` below.

Semantics, after Cilium's pkg/policy/api/kafka (names, roles) and pkg/kafka (`MatchesRule`):
- `role` (produce | consume) and `apiKey` (a name from `API_KEYS`) are case-insensitive and
  mutually exclusive; a role expands to the API keys its clients need (`ROLE_API_KEYS`).
- `apiVersion`: exact when given. `clientID`: exact when given. Cilium's Go parser skipped the
  clientID check for requests whose body it did not decode (a TODO there); we check it for
  every request, which is stricter.
- `topic`: ignored for request types that carry no topic. If a request names several topics,
  *every* one must be allowed, each by some rule that matches the rest of the request
  (`kafka_allowed`). A topic-bearing request whose topics could not be read
  (`topics_known=False`) matches only rules without a topic: fail closed, as Cilium's
  `matchNonTopicRequests`. A decoded request that names no topic (a Metadata request for
  all topics) ignores `topic`, as in Cilium.
- An empty entry matches every message; an empty list means no L7 restriction.
- A denied request gets error 29 TOPIC_AUTHORIZATION_FAILED for the API keys in
  `ANSWERED_API_KEYS`; any other denied request is dropped without an answer
  (`denial_error_code`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NamedTuple

from netstrata.api.types import KafkaRule

_NAMES: Final = (
    "produce", "fetch", "offsets", "metadata", "leaderandisr", "stopreplica", "updatemetadata",
    "controlledshutdown", "offsetcommit", "offsetfetch", "findcoordinator", "joingroup",
    "heartbeat", "leavegroup", "syncgroup", "describegroups", "listgroups", "saslhandshake",
    "apiversions", "createtopics", "deletetopics", "deleterecords", "initproducerid",
    "offsetforleaderepoch", "addpartitionstotxn", "addoffsetstotxn", "endtxn",
    "writetxnmarkers", "txnoffsetcommit", "describeacls", "createacls", "deleteacls",
    "describeconfigs", "alterconfigs",
)  # fmt: skip

API_KEYS: Final[Mapping[str, int]] = MappingProxyType({n: i for i, n in enumerate(_NAMES)})
"""Every `apiKey` name Cilium accepts -> the Kafka API key (Cilium `APIKeyMap`, 0-33). Key 2
is `offsets` (Kafka's ListOffsets); Cilium has no `listoffsets` spelling."""

API_KEY_NAMES: Final[Mapping[int, str]] = MappingProxyType(dict(enumerate(_NAMES)))
"""Kafka API key -> Cilium's name (Cilium `ReverseAPIKeyMap`)."""

ROLE_API_KEYS: Final[Mapping[str, frozenset[int]]] = MappingProxyType({
    "produce": frozenset({0, 3, 18}),
    "consume": frozenset({1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18}),
})
"""Role expansion (Cilium `GetAPIKeys`): produce = produce, metadata, apiversions; consume =
fetch, offsets, metadata, offsetcommit, offsetfetch, findcoordinator, joingroup, heartbeat,
leavegroup, syncgroup, apiversions."""

TOPIC_API_KEYS: Final = frozenset({0, 1, 2, 3, 4, 5, 6, 8, 9, 19, 20, 21, 23, 24, 27, 28, 34,
                                   35, 37})
"""API keys whose requests name topics (Cilium `isTopicAPIKey`)."""

TOPIC_AUTHORIZATION_FAILED: Final = 29
ANSWERED_API_KEYS: Final = frozenset({0, 1, 2, 3, 8, 9, 10})
"""Denied requests the proxy answers with error 29: produce, fetch, list-offsets, metadata,
offset-commit, offset-fetch, find-coordinator (scenarios README, Cilium
`CreateAuthErrorResponse`). Every other denied request is dropped."""


def api_key_number(name: str) -> int:
    """The Kafka API key for a Cilium `apiKey` name (case-insensitive).

    Raises:
        ValueError: not a name Cilium accepts.
    """
    try:
        return API_KEYS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown Kafka apiKey {name!r}") from None


def api_key_name(api_key: int) -> str:
    """Cilium's name for an API key, or the number as text when it has none."""
    return API_KEY_NAMES.get(api_key, str(api_key))


def role_api_keys(role: str) -> frozenset[int]:
    """API keys a role allows (case-insensitive).

    Raises:
        ValueError: not `produce` or `consume`.
    """
    try:
        return ROLE_API_KEYS[role.lower()]
    except KeyError:
        raise ValueError(f"unknown Kafka role {role!r} (produce or consume)") from None


def denial_error_code(api_key: int) -> int | None:
    """29 when a denied request of this type gets an error response, None when it is dropped."""
    return TOPIC_AUTHORIZATION_FAILED if api_key in ANSWERED_API_KEYS else None


@dataclass(frozen=True, slots=True)
class KafkaRequest:
    """What a Kafka rule looks at in one request."""

    api_key: int
    """INT16 API key from the request header."""
    api_version: int
    """INT16 API version from the request header."""
    client_id: str | None = None
    """Header clientId; None when null or absent."""
    topics: tuple[str, ...] = ()
    """Every topic name the request names."""
    topics_known: bool = True
    """False when the body was not decoded, so `topics` may be incomplete."""


@dataclass(frozen=True, slots=True)
class CompiledKafkaRule:
    """One `rules.kafka[]` entry, names resolved; build with `compile_kafka_rule`."""

    rule: KafkaRule
    api_keys: frozenset[int] | None
    """Allowed API keys; None = any."""
    api_version: int | None
    """Required API version; None = any."""
    client_id: str | None
    topic: str | None

    def matches_except_topic(self, req: KafkaRequest) -> bool:
        """Role/apiKey, apiVersion and clientID conditions (Cilium `ruleMatches` minus topic)."""
        if self.api_keys is not None and req.api_key not in self.api_keys:
            return False
        if self.api_version is not None and req.api_version != self.api_version:
            return False
        return self.client_id is None or req.client_id == self.client_id

    def topic_applies(self, req: KafkaRequest) -> bool:
        """False when this rule's topic cannot vouch for the request at all: a topic-bearing
        request whose topics were not decoded."""
        return not (self.topic is not None and not req.topics_known
                    and req.api_key in TOPIC_API_KEYS)

    def matches(self, req: KafkaRequest) -> bool:
        """This rule alone allows the request: every topic it names is this rule's topic."""
        if not (self.matches_except_topic(req) and self.topic_applies(req)):
            return False
        return self.topic is None or all(t == self.topic for t in req.topics)


@functools.lru_cache(maxsize=4096)
def compile_kafka_rule(rule: KafkaRule) -> CompiledKafkaRule:
    """Resolve names and numbers of one rule (cached).

    Raises:
        ValueError: unknown role or apiKey name, both given, or a bad apiVersion.
    """
    if rule.role and rule.api_key:
        raise ValueError(f"Kafka rule sets both role {rule.role!r} and apiKey {rule.api_key!r}")
    api_keys: frozenset[int] | None = None
    if rule.role:
        api_keys = role_api_keys(rule.role)
    elif rule.api_key:
        api_keys = frozenset({api_key_number(rule.api_key)})
    version: int | None = None
    if rule.api_version:
        if not rule.api_version.isdigit() or int(rule.api_version) > 32767:
            raise ValueError(f"Kafka apiVersion {rule.api_version!r} is not 0-32767")
        version = int(rule.api_version)
    return CompiledKafkaRule(rule, api_keys, version, rule.client_id or None, rule.topic or None)


def kafka_rule_matches(rule: KafkaRule, req: KafkaRequest) -> bool:
    """True when this one rule allows the request on its own."""
    return compile_kafka_rule(rule).matches(req)


class KafkaVerdict(NamedTuple):
    """Result of `kafka_allowed`."""

    allowed: bool
    rule_index: int | None
    """The rule that completed the allow (the last topic covered, or a topic-free match)."""
    denied_topics: tuple[str, ...]
    """Topics no matching rule allowed, in request order (empty when allowed)."""
    error_code: int | None
    """When denied: 29 if the proxy answers, None if it drops the request."""


def kafka_allowed(
    rules: Iterable[KafkaRule | CompiledKafkaRule], req: KafkaRequest
) -> KafkaVerdict:
    """OR of the rules, with every topic of the request needing some matching rule.

    Cilium `MatchesRule`: a rule without a topic, or any rule when the request names no topic,
    allows the whole request when it matches; a rule with a topic covers that topic when it
    matches the rest of the request; the request is allowed once every topic is covered.
    No rules at all: allowed.
    """
    compiled = [r if isinstance(r, CompiledKafkaRule) else compile_kafka_rule(r) for r in rules]
    if not compiled:
        return KafkaVerdict(True, None, (), None)
    remaining = dict.fromkeys(req.topics)
    for index, rule in enumerate(compiled):
        if not (rule.matches_except_topic(req) and rule.topic_applies(req)):
            continue
        if rule.topic is None or not req.topics:
            return KafkaVerdict(True, index, (), None)
        if rule.topic in remaining:
            del remaining[rule.topic]
            if not remaining:
                return KafkaVerdict(True, index, (), None)
    denied = tuple(remaining) if req.topics else ()
    return KafkaVerdict(False, None, denied, denial_error_code(req.api_key))
