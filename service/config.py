"""Every setting of the service, declared once.

A broker-level setting keeps Kafka's name and default (unless ARCHITECTURE.md says otherwise)
and is read from the environment as ``DLOG_`` + its name in upper snake case:
``replica.lag.time.max.ms`` is ``DLOG_REPLICA_LAG_TIME_MAX_MS``. ``Config.from_env`` is the only
place that reads the environment; everything else receives a ``Config``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Setting:
    """One setting: its Kafka-style name, the ``Config`` attribute, default, parser and help."""

    name: str
    attr: str
    default: Any
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return "DLOG_" + self.name.replace(".", "_").replace("-", "_").upper()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _acks(text: str) -> str:
    value = text.strip().lower()
    if value in ("-1", "all"):
        return "all"
    if value in ("0", "1"):
        return value
    raise ValueError(f"acks must be 0, 1, all or -1, not {text!r}")


def _sync(text: str) -> str:
    value = text.strip().lower()
    if value not in ("full", "normal"):
        raise ValueError("sync must be 'full' or 'normal'")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < 1e6:  # also refuses nan and inf
        raise ValueError(f"must be a number > 0, not {text!r}")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "host", "127.0.0.1", str, "Address the HTTP server binds to."),
    Setting("port", "port", 8082, int, "Port the HTTP server listens on."),
    Setting("data.dir", "data_dir", "./dlog-data", str,
            "Directory holding controller.db and one broker-<id>.db per broker."),
    Setting("brokers", "brokers", 3, int, "Number of simulated brokers (ids 0..N-1), fixed when the data directory is created."),
    Setting("workers", "workers", 2, int, "gunicorn worker processes."),
    Setting("threads", "threads", 4, int, "Threads per gunicorn worker."),
    Setting("gil.switch.interval.ms", "gil_switch_interval_ms", 1.0, _positive_float,
            "Python's thread switch interval in each worker (Python's default is 5): the longest a thread "
            "holding a file's write lock waits to run again behind a thread running Python."),
    Setting("cluster.id", "cluster_id", None, str,
            "Cluster id for a new data directory (22-char base64url); generated when unset."),
    Setting("sync", "sync", "full", _sync,
            "SQLite synchronous mode: 'full' survives a power cut; 'normal' survives a process crash, not a power cut."),
    Setting("busy.timeout.ms", "busy_timeout_ms", 30000, int, "SQLite busy_timeout for every connection."),
    Setting("acks", "acks", "all", _acks,
            "Default acks of a produce without ?acks= (0, 1 or all). 'all' waits for the in-sync replicas."),
    Setting("request.timeout.ms", "request_timeout_ms", 30000, int,
            "Default ?timeout_ms= of a produce: how long acks=all may wait."),
    Setting("auto.create.topics.enable", "auto_create_topics_enable", True, _bool,
            "Create a topic on its first v2 produce."),
    Setting("num.partitions", "num_partitions", 1, int, "Partitions of a topic created without partitions_count."),
    Setting("default.replication.factor", "default_replication_factor", None, int,
            "Replication factor of a topic created without one; default min(3, brokers)."),
    Setting("min.insync.replicas", "min_insync_replicas", 2, int, "Default min.insync.replicas of a topic."),
    Setting("message.max.bytes", "message_max_bytes", 1048588, int, "Default max.message.bytes of a topic."),
    Setting("log.retention.ms", "log_retention_ms", 604800000, int, "Default retention.ms of a topic (-1: forever)."),
    Setting("log.retention.bytes", "log_retention_bytes", -1, int, "Default retention.bytes of a topic (-1: no limit)."),
    Setting("log.retention.check.interval.ms", "log_retention_check_interval_ms", 300000, int,
            "How often the background duty applies retention."),
    Setting("replica.lag.time.max.ms", "replica_lag_time_max_ms", 10000, int,
            "A follower not caught up for this long leaves the ISR."),
    Setting("unclean.leader.election.enable", "unclean_leader_election_enable", False, _bool,
            "Default unclean.leader.election.enable of a topic."),
    Setting("producer.id.expiration.ms", "producer_id_expiration_ms", 86400000, int,
            "A producer idle this long loses its state on every replica (its next batch is accepted with any "
            "sequence)."),
    Setting("producer.id.expiration.check.interval.ms", "producer_id_expiration_check_interval_ms", 600000, int,
            "How often the background duty expires idle producers."),
    Setting("transaction.timeout.ms", "transaction_timeout_ms", 60000, int,
            "Timeout of a transactional id created without transaction_timeout_ms (the producer default)."),
    Setting("transaction.max.timeout.ms", "transaction_max_timeout_ms", 900000, int,
            "Largest transaction timeout a producer may ask for."),
    Setting("transaction.abort.timed.out.transaction.cleanup.interval.ms", "transaction_abort_interval_ms", 10000,
            int, "How often the coordinator aborts transactions open longer than their timeout."),
    Setting("consumer.instance.timeout.ms", "consumer_instance_timeout_ms", 300000, int,
            "A consumer instance idle this long is removed (and its group rebalances)."),
    Setting("consumer.request.timeout.ms", "consumer_request_timeout_ms", 1000, int,
            "How long GET .../records waits for data when the request gives no timeout."),
    Setting("consumer.request.max.bytes", "consumer_request_max_bytes", 67108864, int,
            "Largest max_bytes of one GET .../records."),
    Setting("background.interval.ms", "background_interval_ms", 200, int,
            "Tick of the background duty thread of each worker."),
    Setting("lease.duration.ms", "lease_duration_ms", 3000, int,
            "The background-duty lease lapses this long after its holder's last renewal."),
    Setting("max.request.bytes", "max_request_bytes", 64 * 1024 * 1024, int,
            "Largest HTTP request body accepted (413 above)."),
    Setting("api.v3.produce.batch.maximum.entries", "produce_batch_max_entries", 1000, int,
            "Largest number of entries in one records:batch request."),
)

_BY_ATTR = {s.attr: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """The effective configuration; build it with ``Config.from_env`` or ``Config(**overrides)``."""

    host: str = "127.0.0.1"
    port: int = 8082
    data_dir: str = "./dlog-data"
    brokers: int = 3
    workers: int = 2
    threads: int = 4
    gil_switch_interval_ms: float = 1.0
    cluster_id: str | None = None
    sync: str = "full"
    busy_timeout_ms: int = 30000
    acks: str = "all"
    request_timeout_ms: int = 30000
    auto_create_topics_enable: bool = True
    num_partitions: int = 1
    default_replication_factor: int | None = None
    min_insync_replicas: int = 2
    message_max_bytes: int = 1048588
    log_retention_ms: int = 604800000
    log_retention_bytes: int = -1
    log_retention_check_interval_ms: int = 300000
    replica_lag_time_max_ms: int = 10000
    unclean_leader_election_enable: bool = False
    producer_id_expiration_ms: int = 86400000
    producer_id_expiration_check_interval_ms: int = 600000
    transaction_timeout_ms: int = 60000
    transaction_max_timeout_ms: int = 900000
    transaction_abort_interval_ms: int = 10000
    consumer_instance_timeout_ms: int = 300000
    consumer_request_timeout_ms: int = 1000
    consumer_request_max_bytes: int = 67108864
    background_interval_ms: int = 200
    lease_duration_ms: int = 3000
    max_request_bytes: int = 64 * 1024 * 1024
    produce_batch_max_entries: int = 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Defaults, then ``DLOG_*`` environment variables, then explicit overrides (not None)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is not None and raw != "":
                try:
                    values[setting.attr] = setting.parse(raw)
                except ValueError as exc:
                    raise ValueError(f"{setting.env}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` rebuild this config (used to start workers)."""
        env = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            env[_BY_ATTR[field.name].env] = str(value)
        return env

    @property
    def effective_default_replication_factor(self) -> int:
        if self.default_replication_factor is not None:
            return self.default_replication_factor
        return min(3, self.brokers)
