"""Kafka message schemas the proxy decodes (requests) or writes (error responses).

Restated from apache/kafka `clients/src/main/resources/common/message/*.json` (the late-2024
definitions: Kafka 3.9). Field names are snake_case versions of the JSON names; version ranges
and nullability are copied as written there. Tagged fields are left out: the codec skips them on
read and writes none, which the protocol defines as "every tagged field at its default".

`SCHEMAS[api_key]` holds (valid versions, first flexible version, request fields, response
fields or None when the proxy never answers that API itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from netstrata.proxy._kafka_codec import A, F, Field

Fields = tuple[Field, ...]

PRODUCE_REQUEST: Final[Fields] = (
    F("transactional_id", "string", "3+", nullable="3+"),
    F("acks", "int16"),
    F("timeout_ms", "int32"),
    A("topics", (
        F("name", "string"),
        A("partitions", (F("index", "int32"), F("records", "records", nullable="0+"))),
    )),
)  # fmt: skip
PRODUCE_RESPONSE: Final[Fields] = (
    A("responses", (
        F("name", "string"),
        A("partitions", (
            F("index", "int32"),
            F("error_code", "int16"),
            F("base_offset", "int64", default=-1),
            F("log_append_time_ms", "int64", "2+", default=-1),
            F("log_start_offset", "int64", "5+", default=-1),
            A("record_errors", (
                F("batch_index", "int32"),
                F("batch_index_error_message", "string", "8+", nullable="8+"),
            ), "8+"),
            F("error_message", "string", "8+", nullable="8+"),
        )),
    )),
    F("throttle_time_ms", "int32", "1+"),
)  # fmt: skip

FETCH_REQUEST: Final[Fields] = (
    F("replica_id", "int32", "0-14", default=-1),
    F("max_wait_ms", "int32"),
    F("min_bytes", "int32"),
    F("max_bytes", "int32", "3+", default=0x7FFFFFFF),
    F("isolation_level", "int8", "4+"),
    F("session_id", "int32", "7+"),
    F("session_epoch", "int32", "7+", default=-1),
    A("topics", (
        F("topic", "string", "0-12"),
        F("topic_id", "uuid", "13+"),
        A("partitions", (
            F("partition", "int32"),
            F("current_leader_epoch", "int32", "9+", default=-1),
            F("fetch_offset", "int64"),
            F("last_fetched_epoch", "int32", "12+", default=-1),
            F("log_start_offset", "int64", "5+", default=-1),
            F("partition_max_bytes", "int32"),
        )),
    )),
    A("forgotten_topics_data", (
        F("topic", "string", "7-12"),
        F("topic_id", "uuid", "13+"),
        A("partitions", "int32", "7+"),
    ), "7+"),
    F("rack_id", "string", "11+"),
)  # fmt: skip
FETCH_RESPONSE: Final[Fields] = (
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16", "7+"),
    F("session_id", "int32", "7+"),
    A("responses", (
        F("topic", "string", "0-12"),
        F("topic_id", "uuid", "13+"),
        A("partitions", (
            F("partition_index", "int32"),
            F("error_code", "int16"),
            F("high_watermark", "int64", default=-1),
            F("last_stable_offset", "int64", "4+", default=-1),
            F("log_start_offset", "int64", "5+", default=-1),
            A("aborted_transactions", (
                F("producer_id", "int64"),
                F("first_offset", "int64"),
            ), "4+", nullable="4+"),
            F("preferred_read_replica", "int32", "11+", default=-1),
            F("records", "records", nullable="0+"),
        )),
    )),
)  # fmt: skip

LIST_OFFSETS_REQUEST: Final[Fields] = (
    F("replica_id", "int32"),
    F("isolation_level", "int8", "2+"),
    A("topics", (
        F("name", "string"),
        A("partitions", (
            F("partition_index", "int32"),
            F("current_leader_epoch", "int32", "4+", default=-1),
            F("timestamp", "int64"),
            F("max_num_offsets", "int32", "0", default=1),
        )),
    )),
    F("timeout_ms", "int32", "10+"),
)  # fmt: skip
LIST_OFFSETS_RESPONSE: Final[Fields] = (
    F("throttle_time_ms", "int32", "2+"),
    A("topics", (
        F("name", "string"),
        A("partitions", (
            F("partition_index", "int32"),
            F("error_code", "int16"),
            A("old_style_offsets", "int64", "0"),
            F("timestamp", "int64", "1+", default=-1),
            F("offset", "int64", "1+", default=-1),
            F("leader_epoch", "int32", "4+", default=-1),
        )),
    )),
)  # fmt: skip

METADATA_REQUEST: Final[Fields] = (
    A("topics", (
        F("topic_id", "uuid", "10+"),
        F("name", "string", nullable="10+"),
    ), nullable="1+"),
    F("allow_auto_topic_creation", "bool", "4+", default=True),
    F("include_cluster_authorized_operations", "bool", "8-10"),
    F("include_topic_authorized_operations", "bool", "8+"),
)  # fmt: skip
METADATA_RESPONSE: Final[Fields] = (
    F("throttle_time_ms", "int32", "3+"),
    A("brokers", (
        F("node_id", "int32"),
        F("host", "string"),
        F("port", "int32"),
        F("rack", "string", "1+", nullable="1+"),
    )),
    F("cluster_id", "string", "2+", nullable="2+"),
    F("controller_id", "int32", "1+", default=-1),
    A("topics", (
        F("error_code", "int16"),
        F("name", "string", nullable="12+"),
        F("topic_id", "uuid", "10+"),
        F("is_internal", "bool", "1+"),
        A("partitions", (
            F("error_code", "int16"),
            F("partition_index", "int32"),
            F("leader_id", "int32"),
            F("leader_epoch", "int32", "7+", default=-1),
            A("replica_nodes", "int32"),
            A("isr_nodes", "int32"),
            A("offline_replicas", "int32", "5+"),
        )),
        F("topic_authorized_operations", "int32", "8+", default=-(2**31)),
    )),
    F("cluster_authorized_operations", "int32", "8-10", default=-(2**31)),
)  # fmt: skip

OFFSET_COMMIT_REQUEST: Final[Fields] = (
    F("group_id", "string"),
    F("generation_id_or_member_epoch", "int32", "1+", default=-1),
    F("member_id", "string", "1+"),
    F("group_instance_id", "string", "7+", nullable="7+"),
    F("retention_time_ms", "int64", "2-4", default=-1),
    A("topics", (
        F("name", "string"),
        A("partitions", (
            F("partition_index", "int32"),
            F("committed_offset", "int64"),
            F("committed_leader_epoch", "int32", "6+", default=-1),
            F("commit_timestamp", "int64", "1", default=-1),
            F("committed_metadata", "string", nullable="0+"),
        )),
    )),
)  # fmt: skip
OFFSET_COMMIT_RESPONSE: Final[Fields] = (
    F("throttle_time_ms", "int32", "3+"),
    A("topics", (
        F("name", "string"),
        A("partitions", (F("partition_index", "int32"), F("error_code", "int16"))),
    )),
)  # fmt: skip

OFFSET_FETCH_REQUEST: Final[Fields] = (
    F("group_id", "string", "0-7"),
    A("topics", (
        F("name", "string", "0-7"),
        A("partition_indexes", "int32", "0-7"),
    ), "0-7", nullable="2-7"),
    A("groups", (
        F("group_id", "string", "8+"),
        F("member_id", "string", "9+", nullable="9+"),
        F("member_epoch", "int32", "9+", default=-1),
        A("topics", (
            F("name", "string", "8+"),
            A("partition_indexes", "int32", "8+"),
        ), "8+", nullable="8+"),
    ), "8+"),
    F("require_stable", "bool", "7+"),
)  # fmt: skip
_OFFSET_FETCH_PARTITION: Final[Fields] = (
    F("partition_index", "int32"),
    F("committed_offset", "int64", default=-1),
    F("committed_leader_epoch", "int32", "5+", default=-1),
    F("metadata", "string", nullable="0+"),
    F("error_code", "int16"),
)
OFFSET_FETCH_RESPONSE: Final[Fields] = (
    F("throttle_time_ms", "int32", "3+"),
    A("topics", (
        F("name", "string", "0-7"),
        A("partitions", _OFFSET_FETCH_PARTITION, "0-7"),
    ), "0-7"),
    F("error_code", "int16", "2-7"),
    A("groups", (
        F("group_id", "string", "8+"),
        A("topics", (
            F("name", "string", "8+"),
            A("partitions", _OFFSET_FETCH_PARTITION, "8+"),
        ), "8+"),
        F("error_code", "int16", "8+"),
    ), "8+"),
)  # fmt: skip

FIND_COORDINATOR_REQUEST: Final[Fields] = (
    F("key", "string", "0-3"),
    F("key_type", "int8", "1+"),
    A("coordinator_keys", "string", "4+"),
)
FIND_COORDINATOR_RESPONSE: Final[Fields] = (
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16", "0-3"),
    F("error_message", "string", "1-3", nullable="1-3"),
    F("node_id", "int32", "0-3", default=-1),
    F("host", "string", "0-3"),
    F("port", "int32", "0-3", default=-1),
    A("coordinators", (
        F("key", "string", "4+"),
        F("node_id", "int32", "4+", default=-1),
        F("host", "string", "4+"),
        F("port", "int32", "4+", default=-1),
        F("error_code", "int16", "4+"),
        F("error_message", "string", "4+", nullable="4+"),
    ), "4+"),
)  # fmt: skip

CREATE_TOPICS_REQUEST: Final[Fields] = (
    A("topics", (
        F("name", "string"),
        F("num_partitions", "int32"),
        F("replication_factor", "int16"),
        A("assignments", (F("partition_index", "int32"), A("broker_ids", "int32"))),
        A("configs", (F("name", "string"), F("value", "string", nullable="0+"))),
    )),
    F("timeout_ms", "int32", default=60000),
    F("validate_only", "bool", "1+"),
)  # fmt: skip

DELETE_TOPICS_REQUEST: Final[Fields] = (
    A("topics", (F("name", "string", "6+", nullable="6+"), F("topic_id", "uuid", "6+")), "6+"),
    A("topic_names", "string", "0-5"),
    F("timeout_ms", "int32"),
)


@dataclass(frozen=True, slots=True)
class ApiSchema:
    """What the proxy knows of one API key."""

    name: str
    """Cilium's `apiKey` name for it (lower case)."""
    versions: tuple[int, int]
    """Valid versions (inclusive) that the schemas describe."""
    first_flexible: int
    """Lowest flexible version (compact encodings, tagged fields, request header v2)."""
    request: Fields
    """Request body fields."""
    response: Fields | None
    """Response body fields, when the proxy may answer this API itself."""


SCHEMAS: Final[dict[int, ApiSchema]] = {
    0: ApiSchema("produce", (0, 11), 9, PRODUCE_REQUEST, PRODUCE_RESPONSE),
    1: ApiSchema("fetch", (0, 17), 12, FETCH_REQUEST, FETCH_RESPONSE),
    2: ApiSchema("offsets", (0, 10), 6, LIST_OFFSETS_REQUEST, LIST_OFFSETS_RESPONSE),
    3: ApiSchema("metadata", (0, 12), 9, METADATA_REQUEST, METADATA_RESPONSE),
    8: ApiSchema("offsetcommit", (0, 9), 8, OFFSET_COMMIT_REQUEST, OFFSET_COMMIT_RESPONSE),
    9: ApiSchema("offsetfetch", (0, 9), 6, OFFSET_FETCH_REQUEST, OFFSET_FETCH_RESPONSE),
    10: ApiSchema(
        "findcoordinator", (0, 6), 3, FIND_COORDINATOR_REQUEST, FIND_COORDINATOR_RESPONSE
    ),
    19: ApiSchema("createtopics", (0, 7), 5, CREATE_TOPICS_REQUEST, None),
    20: ApiSchema("deletetopics", (0, 6), 4, DELETE_TOPICS_REQUEST, None),
}

__all__ = ["SCHEMAS", "ApiSchema", "Fields"]
