"""Kafka L7 rules (reference §1.5.1, scenarios README "Kafka roles")."""

from __future__ import annotations

import pytest

from netstrata.api.types import KafkaRule
from netstrata.policy.l7.kafka import (
    ANSWERED_API_KEYS,
    API_KEY_NAMES,
    API_KEYS,
    ROLE_API_KEYS,
    TOPIC_AUTHORIZATION_FAILED,
    KafkaRequest,
    api_key_name,
    api_key_number,
    compile_kafka_rule,
    denial_error_code,
    kafka_allowed,
    kafka_rule_matches,
    role_api_keys,
)

PRODUCE, FETCH, OFFSETS, METADATA = 0, 1, 2, 3
OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN_GROUP = 8, 9, 10, 11
HEARTBEAT, LEAVE_GROUP, SYNC_GROUP, API_VERSIONS = 12, 13, 14, 18
CREATE_TOPICS, DELETE_TOPICS = 19, 20


def req(api_key: int, *topics: str, version: int = 0, client: str | None = "c1",
        known: bool = True) -> KafkaRequest:
    return KafkaRequest(api_key, version, client, topics, known)


# ---------------------------------------------------------------- names and roles


@pytest.mark.parametrize(
    "name,number",
    [("produce", 0), ("fetch", 1), ("offsets", 2), ("metadata", 3), ("leaderandisr", 4),
     ("stopreplica", 5), ("updatemetadata", 6), ("controlledshutdown", 7),
     ("offsetcommit", 8), ("offsetfetch", 9), ("findcoordinator", 10), ("joingroup", 11),
     ("heartbeat", 12), ("leavegroup", 13), ("syncgroup", 14), ("describegroups", 15),
     ("listgroups", 16), ("saslhandshake", 17), ("apiversions", 18), ("createtopics", 19),
     ("deletetopics", 20), ("deleterecords", 21), ("initproducerid", 22),
     ("offsetforleaderepoch", 23), ("addpartitionstotxn", 24), ("addoffsetstotxn", 25),
     ("endtxn", 26), ("writetxnmarkers", 27), ("txnoffsetcommit", 28), ("describeacls", 29),
     ("createacls", 30), ("deleteacls", 31), ("describeconfigs", 32), ("alterconfigs", 33)],
)
def test_api_key_table(name: str, number: int):
    assert api_key_number(name) == number
    assert api_key_number(name.upper()) == number
    assert api_key_name(number) == name


def test_tables_are_inverse_and_complete():
    assert len(API_KEYS) == 34
    assert {v: k for k, v in API_KEYS.items()} == dict(API_KEY_NAMES)
    assert api_key_name(60) == "60"


@pytest.mark.parametrize("name", ["listoffsets", "produce ", "", "createtopic", "topics"])
def test_unknown_api_key_names_are_rejected(name: str):
    with pytest.raises(ValueError, match="apiKey"):
        api_key_number(name)
    with pytest.raises(ValueError):
        compile_kafka_rule(KafkaRule(api_key=name or "x y"))


def test_role_expansion():
    assert role_api_keys("produce") == {PRODUCE, METADATA, API_VERSIONS}
    assert role_api_keys("Consume") == {FETCH, OFFSETS, METADATA, OFFSET_COMMIT, OFFSET_FETCH,
                                        FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP,
                                        SYNC_GROUP, API_VERSIONS}
    assert set(ROLE_API_KEYS) == {"produce", "consume"}
    with pytest.raises(ValueError, match="role"):
        role_api_keys("admin")


@pytest.mark.parametrize("api_key", sorted(ROLE_API_KEYS["produce"]))
def test_produce_role_allows_its_keys(api_key: int):
    assert kafka_rule_matches(KafkaRule(role="PRODUCE"), req(api_key))


@pytest.mark.parametrize("api_key", [FETCH, OFFSETS, OFFSET_COMMIT, FIND_COORDINATOR,
                                     HEARTBEAT, CREATE_TOPICS, DELETE_TOPICS, 7, 33])
def test_produce_role_denies_other_keys(api_key: int):
    assert not kafka_rule_matches(KafkaRule(role="produce"), req(api_key))


@pytest.mark.parametrize("api_key", range(0, 40))
def test_consume_role_is_exactly_its_keys(api_key: int):
    expected = api_key in ROLE_API_KEYS["consume"]
    assert kafka_rule_matches(KafkaRule(role="consume"), req(api_key)) is expected


def test_role_and_api_key_together_are_rejected():
    with pytest.raises(ValueError, match="both"):
        compile_kafka_rule(KafkaRule(role="produce", api_key="produce"))


# ---------------------------------------------------------------- single rule


def test_empty_rule_matches_everything():
    for api_key in (PRODUCE, HEARTBEAT, 33, 60):
        assert kafka_rule_matches(KafkaRule(), req(api_key, "t", version=7, client=None))


def test_api_key_is_case_insensitive_and_exact():
    rule = KafkaRule(api_key="CreateTopics")
    assert kafka_rule_matches(rule, req(CREATE_TOPICS, "t"))
    assert not kafka_rule_matches(rule, req(DELETE_TOPICS, "t"))


def test_api_version_exact_when_given():
    rule = KafkaRule(api_key="produce", api_version="3")
    assert kafka_rule_matches(rule, req(PRODUCE, version=3))
    assert not kafka_rule_matches(rule, req(PRODUCE, version=2))
    assert kafka_rule_matches(KafkaRule(api_key="produce"), req(PRODUCE, version=9))
    with pytest.raises(ValueError, match="apiVersion"):
        compile_kafka_rule(KafkaRule(api_version="32768"))
    with pytest.raises(ValueError, match="apiVersion"):
        compile_kafka_rule(KafkaRule(api_version="-1"))


def test_client_id_exact():
    rule = KafkaRule(client_id="billing")
    assert kafka_rule_matches(rule, req(PRODUCE, client="billing"))
    assert not kafka_rule_matches(rule, req(PRODUCE, client="Billing"))
    assert not kafka_rule_matches(rule, req(PRODUCE, client=None))
    assert not kafka_rule_matches(rule, req(HEARTBEAT, client="other"))  # stricter than Cilium


def test_topic_exact_and_case_sensitive():
    rule = KafkaRule(role="produce", topic="orders")
    assert kafka_rule_matches(rule, req(PRODUCE, "orders"))
    assert not kafka_rule_matches(rule, req(PRODUCE, "Orders"))
    assert not kafka_rule_matches(rule, req(PRODUCE, "orders", "audit"))


def test_topic_is_ignored_for_requests_without_topics():
    consume = KafkaRule(role="consume", topic="orders")
    for api_key in (HEARTBEAT, JOIN_GROUP, SYNC_GROUP, LEAVE_GROUP, FIND_COORDINATOR,
                    API_VERSIONS):
        assert kafka_rule_matches(consume, req(api_key)), api_key


def test_decoded_metadata_for_all_topics_ignores_the_topic():
    """Cilium: a decoded request naming no topic skips the topic condition."""
    assert kafka_rule_matches(KafkaRule(role="produce", topic="orders"), req(METADATA))


def test_undecoded_topic_request_fails_topic_rules():
    """Cilium `matchNonTopicRequests`: unknown topics can't be vouched for (fail closed)."""
    undecoded = req(PRODUCE, known=False)
    assert not kafka_rule_matches(KafkaRule(role="produce", topic="orders"), undecoded)
    assert kafka_rule_matches(KafkaRule(role="produce"), undecoded)
    assert kafka_rule_matches(KafkaRule(role="consume", topic="x"), req(HEARTBEAT, known=False))


# ---------------------------------------------------------------- rule lists


def test_multi_topic_request_needs_every_topic_allowed():
    rules = [KafkaRule(role="produce", topic="orders"), KafkaRule(role="produce", topic="audit")]
    both = kafka_allowed(rules, req(PRODUCE, "orders", "audit"))
    assert both.allowed and both.rule_index == 1 and both.denied_topics == ()
    partial = kafka_allowed(rules, req(PRODUCE, "orders", "secret"))
    assert not partial.allowed
    assert partial.denied_topics == ("secret",)
    assert partial.error_code == TOPIC_AUTHORIZATION_FAILED


def test_topic_is_covered_only_by_a_rule_matching_the_rest():
    rules = [KafkaRule(role="consume", topic="orders"), KafkaRule(role="produce", topic="audit")]
    verdict = kafka_allowed(rules, req(PRODUCE, "orders", "audit"))
    assert not verdict.allowed and verdict.denied_topics == ("orders",)


def test_a_topic_free_matching_rule_allows_all_topics():
    rules = [KafkaRule(role="produce", topic="orders"), KafkaRule(api_key="produce")]
    assert kafka_allowed(rules, req(PRODUCE, "orders", "x", "y")) == (True, 1, (), None)


def test_duplicate_topics_count_once():
    rules = [KafkaRule(role="produce", topic="orders")]
    assert kafka_allowed(rules, req(PRODUCE, "orders", "orders")).allowed


def test_no_rules_means_no_restriction():
    assert kafka_allowed([], req(DELETE_TOPICS, "x")) == (True, None, (), None)


def test_empty_rule_in_a_list_allows_all():
    rules = [KafkaRule(role="produce", topic="orders"), KafkaRule()]
    assert kafka_allowed(rules, req(DELETE_TOPICS, "anything")).allowed


def test_precompiled_rules_are_accepted():
    compiled = [compile_kafka_rule(KafkaRule(role="consume", topic="t"))]
    assert kafka_allowed(compiled, req(FETCH, "t")).allowed
    assert not kafka_allowed(compiled, req(FETCH, "u")).allowed


# ---------------------------------------------------------------- denial answers


@pytest.mark.parametrize("api_key", [PRODUCE, FETCH, OFFSETS, METADATA, OFFSET_COMMIT,
                                     OFFSET_FETCH, FIND_COORDINATOR])
def test_answered_denials_get_error_29(api_key: int):
    assert denial_error_code(api_key) == 29
    verdict = kafka_allowed([KafkaRule(api_key="apiversions")], req(api_key, "t"))
    assert not verdict.allowed and verdict.error_code == 29


@pytest.mark.parametrize("api_key", [JOIN_GROUP, HEARTBEAT, CREATE_TOPICS, DELETE_TOPICS,
                                     API_VERSIONS, 7, 33, 50])
def test_other_denials_get_no_answer(api_key: int):
    assert denial_error_code(api_key) is None
    verdict = kafka_allowed([KafkaRule(api_key="produce", topic="x")], req(api_key, "t"))
    assert not verdict.allowed and verdict.error_code is None


def test_answered_set():
    assert {0, 1, 2, 3, 8, 9, 10} == ANSWERED_API_KEYS


# ---------------------------------------------------------------- acceptance scenario

# Scenario `secure-empire-kafka` (shared/acceptance/scenarios): rules per client identity on
# the broker's 9092/TCP, and each probe's typical request sequence.
EMPIRE_RULES = {
    "empire-hq": [KafkaRule(role="produce", topic="deathstar-plans"),
                  KafkaRule(role="produce", topic="empire-announce")],
    "empire-outpost": [KafkaRule(role="consume", topic="empire-announce")],
    "empire-backup": [KafkaRule(role="consume", topic="deathstar-plans")],
}
PRODUCE_SEQ = ["apiversions", "metadata", "produce"]
CONSUME_SEQ = ["apiversions", "metadata", "findcoordinator", "joingroup", "syncgroup",
               "offsetfetch", "fetch"]
WITH_TOPIC = {"metadata", "produce", "offsetfetch", "fetch"}


@pytest.mark.parametrize("client,sequence,topic,expected", [
    ("empire-hq", PRODUCE_SEQ, "empire-announce", True),
    ("empire-hq", PRODUCE_SEQ, "deathstar-plans", True),
    ("empire-outpost", CONSUME_SEQ, "empire-announce", True),
    ("empire-backup", CONSUME_SEQ, "deathstar-plans", True),
    ("empire-outpost", PRODUCE_SEQ, "empire-announce", False),
    ("empire-outpost", CONSUME_SEQ, "deathstar-plans", False),
    ("empire-backup", PRODUCE_SEQ, "deathstar-plans", False),
    ("empire-hq", CONSUME_SEQ, "deathstar-plans", False),
    ("empire-backup", CONSUME_SEQ, "empire-announce", False),
])
def test_empire_kafka_scenario(client: str, sequence: list[str], topic: str, expected: bool):
    verdicts = []
    for api in sequence:
        topics = (topic,) if api in WITH_TOPIC else ()
        verdicts.append(kafka_allowed(EMPIRE_RULES[client], req(api_key_number(api), *topics)))
    if expected:
        assert all(v.allowed for v in verdicts)
    else:
        first_denied = next(v for v in verdicts if not v.allowed)
        assert first_denied.error_code == 29  # the client sees TOPIC_AUTHORIZATION_FAILED
