"""Errors carry Kafka's numeric codes, and each maps to one HTTP status."""
from __future__ import annotations

import pytest

from service.errors import Errors, KafkaError, RestError, bad_request, partition_not_found, topic_not_found

# Spot checks against org.apache.kafka.common.protocol.Errors.
KAFKA_CODES = {
    "UNKNOWN_SERVER_ERROR": -1, "NONE": 0, "OFFSET_OUT_OF_RANGE": 1, "CORRUPT_MESSAGE": 2,
    "UNKNOWN_TOPIC_OR_PARTITION": 3, "LEADER_NOT_AVAILABLE": 5, "NOT_LEADER_OR_FOLLOWER": 6,
    "REQUEST_TIMED_OUT": 7, "MESSAGE_TOO_LARGE": 10, "NOT_COORDINATOR": 16, "INVALID_TOPIC_EXCEPTION": 17,
    "RECORD_LIST_TOO_LARGE": 18, "NOT_ENOUGH_REPLICAS": 19, "NOT_ENOUGH_REPLICAS_AFTER_APPEND": 20,
    "INVALID_REQUIRED_ACKS": 21, "ILLEGAL_GENERATION": 22, "UNKNOWN_MEMBER_ID": 25,
    "REBALANCE_IN_PROGRESS": 27, "TOPIC_ALREADY_EXISTS": 36, "INVALID_PARTITIONS": 37,
    "INVALID_REPLICATION_FACTOR": 38, "INVALID_CONFIG": 40, "INVALID_REQUEST": 42,
    "OUT_OF_ORDER_SEQUENCE_NUMBER": 45, "DUPLICATE_SEQUENCE_NUMBER": 46, "INVALID_PRODUCER_EPOCH": 47,
    "INVALID_TXN_STATE": 48, "INVALID_PRODUCER_ID_MAPPING": 49, "INVALID_TRANSACTION_TIMEOUT": 50,
    "CONCURRENT_TRANSACTIONS": 51, "KAFKA_STORAGE_ERROR": 56, "UNKNOWN_PRODUCER_ID": 59,
    "GROUP_ID_NOT_FOUND": 69, "FENCED_LEADER_EPOCH": 74, "UNKNOWN_LEADER_EPOCH": 75,
    "OFFSET_NOT_AVAILABLE": 78, "FENCED_INSTANCE_ID": 82, "INVALID_RECORD": 87, "PRODUCER_FENCED": 90,
    "TRANSACTIONAL_ID_NOT_FOUND": 105, "TRANSACTION_ABORTABLE": 120,
}


@pytest.mark.parametrize("name,code", sorted(KAFKA_CODES.items()))
def test_codes_match_kafka(name, code):
    assert Errors[name].value == code


@pytest.mark.parametrize("error", list(Errors), ids=lambda e: e.name)
def test_every_error_has_an_http_status_and_message(error):
    assert isinstance(error.http_status, int)
    if error is not Errors.NONE:
        assert 400 <= error.http_status <= 599
    assert error.default_message


@pytest.mark.parametrize("error,status", [
    (Errors.UNKNOWN_TOPIC_OR_PARTITION, 404), (Errors.OFFSET_OUT_OF_RANGE, 416), (Errors.MESSAGE_TOO_LARGE, 413),
    (Errors.NOT_ENOUGH_REPLICAS, 503), (Errors.NOT_LEADER_OR_FOLLOWER, 503),
    (Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND, 503), (Errors.REQUEST_TIMED_OUT, 504),
    (Errors.INVALID_REQUIRED_ACKS, 400), (Errors.INVALID_CONFIG, 400), (Errors.PRODUCER_FENCED, 409),
    (Errors.OUT_OF_ORDER_SEQUENCE_NUMBER, 409), (Errors.INVALID_PRODUCER_EPOCH, 409),
])
def test_status_by_kind_as_api_md(error, status):
    assert error.http_status == status


def test_retriable_flags():
    assert Errors.NOT_ENOUGH_REPLICAS.retriable and Errors.NOT_LEADER_OR_FOLLOWER.retriable
    assert not Errors.INVALID_CONFIG.retriable and not Errors.PRODUCER_FENCED.retriable


def test_rest_error_codes_agree_with_status():
    """error_code is the HTTP status, or status x 100 + a sub-code (API.md)."""
    cases = [topic_not_found("t"), partition_not_found("t", 1), bad_request("x", Errors.INVALID_CONFIG),
             KafkaError(Errors.NOT_ENOUGH_REPLICAS), KafkaError(Errors.INVALID_REQUEST, "no broker", 404),
             KafkaError(Errors.INVALID_RECORD, "empty", 42206), RestError(415, "type"), RestError(422, "x", 42206)]
    for exc in cases:
        assert exc.error_code == exc.status or exc.error_code // 100 == exc.status, exc.message
    assert (topic_not_found("t").status, topic_not_found("t").error_code) == (404, 40401)
    assert (partition_not_found("t", 1).status, partition_not_found("t", 1).error_code) == (404, 40402)
