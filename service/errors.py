"""One vocabulary of errors: Kafka's error codes, plus the REST Proxy's request errors.

``Errors`` holds Kafka's protocol codes (they never change) with the retriable flag and the
HTTP status dlog answers with. The domain raises ``KafkaError(Errors.X, ...)``; ``service.api``
maps it to ``{"error_code", "message", "kafka_error"}``. Request-shape problems that are not
Kafka errors (bad JSON, wrong content type) raise ``RestError`` with the REST Proxy's code.
"""
from __future__ import annotations

from enum import IntEnum, unique


@unique
class Errors(IntEnum):
    """Kafka's error codes (clients/.../common/protocol/Errors.java)."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    MESSAGE_TOO_LARGE = 10
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REQUEST = 42
    INVALID_CONFIG = 40
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    KAFKA_STORAGE_ERROR = 56
    UNKNOWN_PRODUCER_ID = 59
    GROUP_ID_NOT_FOUND = 69
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    OFFSET_NOT_AVAILABLE = 78
    MEMBER_ID_REQUIRED = 79
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    PRODUCER_FENCED = 90
    TRANSACTIONAL_ID_NOT_FOUND = 105
    TRANSACTION_ABORTABLE = 120

    @property
    def retriable(self) -> bool:
        return self in _RETRIABLE

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self, 503 if self.retriable else 400)

    @property
    def default_message(self) -> str:
        return _MESSAGES.get(self, self.name.replace("_", " ").capitalize() + ".")


_RETRIABLE = frozenset({
    Errors.CORRUPT_MESSAGE, Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.LEADER_NOT_AVAILABLE,
    Errors.NOT_LEADER_OR_FOLLOWER, Errors.REQUEST_TIMED_OUT, Errors.NETWORK_EXCEPTION,
    Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.COORDINATOR_NOT_AVAILABLE, Errors.NOT_COORDINATOR,
    Errors.NOT_ENOUGH_REPLICAS, Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    Errors.CONCURRENT_TRANSACTIONS, Errors.KAFKA_STORAGE_ERROR, Errors.FENCED_LEADER_EPOCH,
    Errors.UNKNOWN_LEADER_EPOCH, Errors.OFFSET_NOT_AVAILABLE, Errors.UNSTABLE_OFFSET_COMMIT,
})

_HTTP_STATUS = {
    Errors.UNKNOWN_SERVER_ERROR: 500,
    Errors.OFFSET_OUT_OF_RANGE: 416,
    Errors.UNKNOWN_TOPIC_OR_PARTITION: 404,
    Errors.GROUP_ID_NOT_FOUND: 404,
    Errors.TRANSACTIONAL_ID_NOT_FOUND: 404,
    Errors.BROKER_NOT_AVAILABLE: 404,
    Errors.REQUEST_TIMED_OUT: 504,
    Errors.MESSAGE_TOO_LARGE: 413,
    Errors.RECORD_LIST_TOO_LARGE: 413,
    Errors.TOPIC_ALREADY_EXISTS: 400,
    Errors.INVALID_TOPIC_EXCEPTION: 400,
    Errors.INVALID_PARTITIONS: 400,
    Errors.INVALID_REPLICATION_FACTOR: 400,
    Errors.INVALID_CONFIG: 400,
    Errors.INVALID_REQUEST: 400,
    Errors.INVALID_RECORD: 400,
    Errors.INVALID_REQUIRED_ACKS: 400,
    Errors.INVALID_TRANSACTION_TIMEOUT: 400,
    Errors.OUT_OF_ORDER_SEQUENCE_NUMBER: 409,
    Errors.DUPLICATE_SEQUENCE_NUMBER: 409,
    Errors.INVALID_PRODUCER_EPOCH: 409,
    Errors.PRODUCER_FENCED: 409,
    Errors.INVALID_TXN_STATE: 409,
    Errors.INVALID_PRODUCER_ID_MAPPING: 409,
    Errors.ILLEGAL_GENERATION: 409,
    Errors.UNKNOWN_MEMBER_ID: 409,
    Errors.FENCED_INSTANCE_ID: 409,
    Errors.TRANSACTION_COORDINATOR_FENCED: 409,
    Errors.TRANSACTION_ABORTABLE: 409,
    Errors.REBALANCE_IN_PROGRESS: 503,
}

_MESSAGES = {
    Errors.UNKNOWN_SERVER_ERROR: "The server experienced an unexpected error when processing the request.",
    Errors.OFFSET_OUT_OF_RANGE: "The requested offset is not within the range of offsets maintained by the server.",
    Errors.UNKNOWN_TOPIC_OR_PARTITION: "This server does not host this topic-partition.",
    Errors.LEADER_NOT_AVAILABLE: "There is no leader for this topic-partition as we are in the middle of a leadership election.",
    Errors.NOT_LEADER_OR_FOLLOWER: "This server is not the leader for that topic-partition.",
    Errors.REQUEST_TIMED_OUT: "The request timed out; the outcome is unknown: the records may or may not be committed.",
    Errors.MESSAGE_TOO_LARGE: "The request included a message larger than the max message size the server will accept.",
    Errors.NOT_ENOUGH_REPLICAS: "Messages are rejected since there are fewer in-sync replicas than required.",
    Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND: "Messages are written to the log, but to fewer in-sync replicas than required.",
    Errors.INVALID_REQUIRED_ACKS: "Produce request specified an invalid value for required acks.",
    Errors.TOPIC_ALREADY_EXISTS: "Topic already exists.",
    Errors.INVALID_TOPIC_EXCEPTION: "The request attempted to perform an operation on an invalid topic.",
}


class DlogError(Exception):
    """Root of every error the domain or the API layer raises on purpose."""

    status: int = 500
    error_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KafkaError(DlogError):
    """A Kafka error: ``error`` is the code, ``rest_code`` the REST Proxy's sub-code if it has one."""

    def __init__(self, error: Errors, message: str | None = None, rest_code: int | None = None) -> None:
        super().__init__(message or error.default_message)
        self.error = error
        # error_code is the HTTP status or status x 100 + sub-code (API.md): a REST code given
        # here decides the status too, so the two can never disagree (404 vs 40401, 422 vs 42206).
        if rest_code is None:
            self.status = error.http_status
        else:
            self.status = rest_code // 100 if rest_code >= 10000 else rest_code
        self.error_code = rest_code if rest_code is not None else self.status

    @property
    def retriable(self) -> bool:
        return self.error.retriable


class RestError(DlogError):
    """A request error of the REST Proxy that is not a Kafka error (bad JSON, media types, ...)."""

    def __init__(self, status: int, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code if error_code is not None else status


# The REST Proxy's sub-codes (kafka-rest Errors.java).
TOPIC_NOT_FOUND = 40401
PARTITION_NOT_FOUND = 40402
CONSUMER_INSTANCE_NOT_FOUND = 40403
KAFKA_BAD_REQUEST = 40002
UNSUPPORTED_FORMAT = 40601
PAYLOAD_ERROR = 42206
BATCH_ERROR = 42208


def topic_not_found(topic: str) -> KafkaError:
    return KafkaError(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {topic!r} not found.", TOPIC_NOT_FOUND)


def partition_not_found(topic: str, partition: int) -> KafkaError:
    return KafkaError(Errors.UNKNOWN_TOPIC_OR_PARTITION,
                      f"Partition {partition} of topic {topic!r} not found.", PARTITION_NOT_FOUND)


def bad_request(message: str, error: Errors = Errors.INVALID_REQUEST) -> KafkaError:
    """A Kafka bad request (invalid config, partitions, replication factor): 400 / 40002."""
    return KafkaError(error, message, KAFKA_BAD_REQUEST)
