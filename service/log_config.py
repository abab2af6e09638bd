"""Topic-level configs (Kafka's ``LogConfig``): names, defaults, validation.

A topic's effective config is its overrides (``topic_config`` rows) over the broker defaults
taken from ``Config``. Only configs dlog honours are accepted; an unknown name is
INVALID_CONFIG, as Kafka answers "Unknown topic config name".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from service.config import Config
from service.errors import Errors, bad_request

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _long(minimum: int, maximum: int = INT64_MAX) -> Callable[[str], object]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except (ValueError, AttributeError):
            raise ValueError("must be an integer") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("must be true or false")
    return lowered == "true"


def _one_of(*choices: str) -> Callable[[str], object]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def _cleanup_policy(text: str) -> str:
    policies = [p.strip() for p in text.split(",") if p.strip()]
    if not policies or any(p not in ("delete", "compact") for p in policies):
        raise ValueError("must be a list of delete and compact")
    if "compact" in policies:
        # Log compaction is not built; refusing it is more honest than pretending.
        raise ValueError("compact is not supported by dlog (only delete)")
    return "delete"


@dataclass(frozen=True)
class TopicConfigDef:
    name: str
    default: Callable[[Config], str]
    parse: Callable[[str], object]
    doc: str
    broker_synonym: str | None = None


TOPIC_CONFIGS: dict[str, TopicConfigDef] = {d.name: d for d in (
    TopicConfigDef("cleanup.policy", lambda c: "delete", _cleanup_policy,
                   "delete: old records are removed by retention.ms and retention.bytes."),
    TopicConfigDef("compression.type", lambda c: "producer",
                   _one_of("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
                   "Accepted for compatibility; dlog stores records uncompressed."),
    TopicConfigDef("max.message.bytes", lambda c: str(c.message_max_bytes), _long(0, INT32_MAX),
                   "Largest record (key + value + headers) accepted.", "message.max.bytes"),
    TopicConfigDef("message.timestamp.type", lambda c: "CreateTime", _one_of("CreateTime", "LogAppendTime"),
                   "CreateTime keeps the producer's timestamp; LogAppendTime stamps the append time."),
    TopicConfigDef("min.insync.replicas", lambda c: str(c.min_insync_replicas), _long(1, INT32_MAX),
                   "acks=all needs at least this many in-sync replicas.", "min.insync.replicas"),
    TopicConfigDef("retention.bytes", lambda c: str(c.log_retention_bytes), _long(-1),
                   "Oldest records are deleted while a partition holds more bytes (-1: no limit).",
                   "log.retention.bytes"),
    TopicConfigDef("retention.ms", lambda c: str(c.log_retention_ms), _long(-1),
                   "Records older than this are deleted (-1: forever).", "log.retention.ms"),
    TopicConfigDef("unclean.leader.election.enable",
                   lambda c: "true" if c.unclean_leader_election_enable else "false", _boolean,
                   "Allow a replica outside the ISR to become leader (may lose records).",
                   "unclean.leader.election.enable"),
)}


def validate_config_name(name: object) -> str:
    """``name`` if it is a topic config dlog honours, else INVALID_CONFIG (400/40002)."""
    if not isinstance(name, str) or name not in TOPIC_CONFIGS:
        raise bad_request(f"Unknown topic config name: {name}", Errors.INVALID_CONFIG)
    return name


def validate_config(name: object, value: object) -> str:
    """The normalised value of one topic config, or INVALID_CONFIG (400/40002)."""
    validate_config_name(name)
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"Invalid value {value!r} for configuration {name}: must be a string",
                              Errors.INVALID_CONFIG)
        value = str(value)
    try:
        TOPIC_CONFIGS[name].parse(value)
    except ValueError as exc:
        raise bad_request(f"Invalid value {value} for configuration {name}: {exc}", Errors.INVALID_CONFIG) from None
    return value


@dataclass(frozen=True)
class LogConfig:
    """The effective configs of one topic, typed."""

    cleanup_policy: str
    max_message_bytes: int
    message_timestamp_type: str
    min_insync_replicas: int
    retention_bytes: int
    retention_ms: int
    unclean_leader_election_enable: bool

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, str | None], config: Config) -> "LogConfig":
        values = effective_configs(overrides, config)
        return cls(
            cleanup_policy=values["cleanup.policy"],
            max_message_bytes=int(values["max.message.bytes"]),
            message_timestamp_type=values["message.timestamp.type"],
            min_insync_replicas=int(values["min.insync.replicas"]),
            retention_bytes=int(values["retention.bytes"]),
            retention_ms=int(values["retention.ms"]),
            unclean_leader_election_enable=values["unclean.leader.election.enable"] == "true",
        )


def effective_configs(overrides: Mapping[str, str | None], config: Config) -> dict[str, str]:
    return {name: (overrides[name] if overrides.get(name) is not None else d.default(config))
            for name, d in TOPIC_CONFIGS.items()}
