"""Small value types and Kafka's sentinels, shared by every layer of the domain."""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Optional

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_LEADER = -1
UNDEFINED_EPOCH = -1

# Kafka's Topic.validate: legal characters, at most 249 of them, not "." or "..".
TOPIC_NAME_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")
MAX_PARTITIONS = 10_000


def validate_topic_name(name: object) -> str | None:
    """The reason ``name`` is not a legal Kafka topic name, or None when it is."""
    if not isinstance(name, str) or name == "":
        return "Topic name is empty."
    if name in (".", ".."):
        return "Topic name cannot be \".\" or \"..\"."
    if len(name) > 249:
        return "Topic name is longer than 249 characters."
    if not TOPIC_NAME_RE.fullmatch(name):
        return (f"Topic name {name!r} is illegal, it contains a character other than "
                "ASCII alphanumerics, '.', '_' and '-'.")
    return None


@dataclass(frozen=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


class Acks(str, Enum):
    NONE = "0"
    LEADER = "1"
    ALL = "all"

    @classmethod
    def parse(cls, value: object) -> "Acks":
        text = str(value).strip().lower()
        if text in ("all", "-1"):
            return cls.ALL
        if text == "0":
            return cls.NONE
        if text == "1":
            return cls.LEADER
        from service.errors import Errors, KafkaError

        raise KafkaError(Errors.INVALID_REQUIRED_ACKS, f"acks must be 0, 1, all or -1, not {value!r}.")


class FetchIsolation(str, Enum):
    """How far a read may go: the high watermark, or the last stable offset (read_committed)."""

    HIGH_WATERMARK = "read_uncommitted"
    TXN_COMMITTED = "read_committed"


class Record(NamedTuple):
    """A record to append: timestamp in ms (None: append time), key/value/headers as bytes."""

    timestamp: Optional[int]
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Optional[bytes]

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"") + len(self.headers or b"")


class StoredRecord(NamedTuple):
    """A record as read back from a log."""

    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Optional[bytes]
    leader_epoch: int
    producer_id: int
    is_transactional: bool
    is_control: bool
