"""FQDN policy: DNS-derived IP -> identity entries; name/pattern matching in `matchpattern`."""

from netstrata.fqdn.matchpattern import (
    MATCH_ALL_REGEX,
    MAX_FQDN_LENGTH,
    FQDNMatcher,
    compile_pattern,
    compile_selector,
    is_dns_wildcard,
    labels_for_name,
    name_matches,
    pattern_to_regex,
    sanitize_name,
    sanitize_pattern,
    selector_label,
    selector_string,
    validate_pattern,
)

__all__ = [
    "MATCH_ALL_REGEX",
    "MAX_FQDN_LENGTH",
    "FQDNMatcher",
    "compile_pattern",
    "compile_selector",
    "is_dns_wildcard",
    "labels_for_name",
    "name_matches",
    "pattern_to_regex",
    "sanitize_name",
    "sanitize_pattern",
    "selector_label",
    "selector_string",
    "validate_pattern",
]
