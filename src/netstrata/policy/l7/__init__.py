"""L7 rule matching shared by the reference datapath and the node proxy (reference §1.5.1).

One module per protocol: `http` (Envoy's view of `rules.http`), `kafka` (`rules.kafka`) and
`dns` (`rules.dns`, names via `fqdn.matchpattern`). Each offers a request value type, a
compiled (cached) rule, a single-rule predicate and an OR-over-the-list verdict. Pure: no
sockets, no asyncio, no clocks.
"""

from netstrata.policy.l7._regex import HAS_RE2, WholeRegex, compile_whole
from netstrata.policy.l7.dns import (
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    DNSVerdict,
    dns_allowed,
    dns_rule_matches,
    reject_rcode,
)
from netstrata.policy.l7.http import (
    CompiledHTTPRule,
    CompiledHTTPRuleSet,
    HeaderAction,
    HTTPRequest,
    HTTPVerdict,
    SecretResolver,
    apply_header_actions,
    compile_http_rule,
    compile_http_rules,
    http_allowed,
    http_rule_matches,
)
from netstrata.policy.l7.kafka import (
    ANSWERED_API_KEYS,
    API_KEY_NAMES,
    API_KEYS,
    ROLE_API_KEYS,
    TOPIC_API_KEYS,
    TOPIC_AUTHORIZATION_FAILED,
    CompiledKafkaRule,
    KafkaRequest,
    KafkaVerdict,
    api_key_name,
    api_key_number,
    compile_kafka_rule,
    denial_error_code,
    kafka_allowed,
    kafka_rule_matches,
    role_api_keys,
)

__all__ = [
    "ANSWERED_API_KEYS",
    "API_KEYS",
    "API_KEY_NAMES",
    "HAS_RE2",
    "RCODE_NXDOMAIN",
    "RCODE_REFUSED",
    "ROLE_API_KEYS",
    "TOPIC_API_KEYS",
    "TOPIC_AUTHORIZATION_FAILED",
    "CompiledHTTPRule",
    "CompiledKafkaRule",
    "DNSVerdict",
    "HTTPRequest",
    "HTTPVerdict",
    "HeaderAction",
    "KafkaRequest",
    "KafkaVerdict",
    "SecretResolver",
    "WholeRegex",
    "api_key_name",
    "api_key_number",
    "apply_header_actions",
    "CompiledHTTPRuleSet",
    "compile_http_rule",
    "compile_http_rules",
    "compile_kafka_rule",
    "compile_whole",
    "denial_error_code",
    "dns_allowed",
    "dns_rule_matches",
    "http_allowed",
    "http_rule_matches",
    "kafka_allowed",
    "kafka_rule_matches",
    "reject_rcode",
    "role_api_keys",
]
