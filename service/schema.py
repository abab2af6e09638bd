"""Every table of dlog, defined once as SQLAlchemy Core.

Two kinds of SQLite file, two ``MetaData``:

* ``controller_metadata`` -> ``controller.db``: the cluster, brokers, topics and their configs,
  partition assignment with leader, leader epoch and ISR, and the background-duty lease. It
  stands in for Kafka's metadata quorum.
* ``broker_metadata`` -> ``broker-<id>.db``: the replicas a broker holds: one ``log`` row per
  partition replica (log start/end offset, high watermark), its records and its leader-epoch
  cache.

Alembic migrations under ``migrations/`` build exactly these tables (a test checks).
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# --------------------------------------------------------------------------- controller.db
controller_metadata = MetaData(naming_convention=NAMING_CONVENTION)

cluster = Table(
    "cluster", controller_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one cluster per file
    Column("cluster_id", String(64), nullable=False),
    Column("broker_count", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    # Bumped by every metadata change, so a process may cache metadata and revalidate cheaply.
    Column("metadata_version", BigInteger, nullable=False, server_default="0"),
)

broker = Table(
    "broker", controller_metadata,
    Column("broker_id", Integer, primary_key=True, autoincrement=False),
    Column("status", String(16), nullable=False, server_default="online"),
    Column("status_changed_ms", BigInteger, nullable=False, server_default="0"),
)

topic = Table(
    "topic", controller_metadata,
    Column("topic_id", String(32), primary_key=True),  # Kafka's topic id (base64url uuid)
    Column("topic_name", String(249), nullable=False, unique=True),
    Column("partitions_count", Integer, nullable=False),
    Column("replication_factor", Integer, nullable=False),
    Column("is_internal", Boolean, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
)

topic_config = Table(
    "topic_config", controller_metadata,
    Column("topic_id", String(32), ForeignKey("topic.topic_id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("value", String(4096), nullable=True),
)

partition = Table(
    "partition", controller_metadata,
    Column("topic_id", String(32), ForeignKey("topic.topic_id", ondelete="CASCADE"), primary_key=True),
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
    Column("replicas", String(1024), nullable=False),  # JSON list of broker ids, assignment order
    Column("isr", String(1024), nullable=False),  # JSON list of broker ids
    Column("leader", Integer, nullable=False),  # -1: no leader (offline partition)
    Column("leader_epoch", Integer, nullable=False, server_default="0"),
    Column("partition_epoch", Integer, nullable=False, server_default="0"),
    # When the current leader epoch began: followers' lag clocks start there (Kafka's makeLeader).
    Column("leader_epoch_start_ms", BigInteger, nullable=False, server_default="0"),
)

producer_id_block = Table(
    "producer_id_block", controller_metadata,
    # The next unallocated producer id (Kafka's ProducerIdsRecord): each process takes a block
    # of ids at a time; ids of a block a process never handed out are never reused.
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("next_producer_id", BigInteger, nullable=False),
)

transaction = Table(
    "transaction", controller_metadata,
    # The transaction coordinator's TransactionMetadata for one transactional id.
    Column("transactional_id", String(255), primary_key=True),
    Column("producer_id", BigInteger, nullable=False),
    Column("producer_epoch", Integer, nullable=False),
    Column("last_producer_epoch", Integer, nullable=False, server_default="-1"),
    # Epoch exhaustion (KIP-890): the producer id the next transaction uses, and the one the
    # last transaction ended with, so a retried EndTxn of that one is still recognised.
    Column("next_producer_id", BigInteger, nullable=False, server_default="-1"),
    Column("previous_producer_id", BigInteger, nullable=False, server_default="-1"),
    Column("timeout_ms", Integer, nullable=False),
    Column("state", String(32), nullable=False),  # TransactionState name
    Column("start_ms", BigInteger, nullable=True),  # first partition or offsets added
    Column("last_update_ms", BigInteger, nullable=False),
)

transaction_partition = Table(
    "transaction_partition", controller_metadata,
    Column("transactional_id", String(255), ForeignKey("transaction.transactional_id", ondelete="CASCADE"),
           primary_key=True),
    Column("topic_name", String(249), primary_key=True),
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
)

transaction_offset = Table(
    "transaction_offset", controller_metadata,
    # Consumer offsets sent in a transaction (TxnOffsetCommit): pending until the commit.
    Column("transactional_id", String(255), ForeignKey("transaction.transactional_id", ondelete="CASCADE"),
           primary_key=True),
    Column("group_id", String(255), primary_key=True),
    Column("topic_name", String(249), primary_key=True),
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
    Column("offset", BigInteger, nullable=False),
    Column("metadata", String(4096), nullable=True),
    # Where this TxnOffsetCommit lands in the order of offset commits (see consumer_offsets_log).
    Column("log_offset", BigInteger, nullable=False, server_default="0"),
)

consumer_offsets_log = Table(
    "consumer_offsets_log", controller_metadata,
    # The order of offset commits, plain and transactional (Kafka: their offsets in the
    # __consumer_offsets partition). At commit, a transaction's pending offset replaces a
    # partition's committed offset only if it was sent after it (3.19). One row.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("log_end_offset", BigInteger, nullable=False),
)

committed_offset = Table(
    "committed_offset", controller_metadata,
    # A consumer group's committed offset per partition: the next offset to read.
    Column("group_id", String(255), primary_key=True),
    Column("topic_name", String(249), primary_key=True),
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
    Column("offset", BigInteger, nullable=False),
    Column("metadata", String(4096), nullable=True),
    Column("commit_ms", BigInteger, nullable=False),
    # Where the commit that set it lands in the order of offset commits (consumer_offsets_log).
    Column("log_offset", BigInteger, nullable=False, server_default="0"),
)

consumer_group = Table(
    "consumer_group", controller_metadata,
    # A consumer group (Kafka's GroupMetadata): its generation moves on every rebalance.
    Column("group_id", String(255), primary_key=True),
    Column("generation_id", Integer, nullable=False, server_default="0"),
    Column("state", String(32), nullable=False),  # GroupState name
    Column("protocol", String(64), nullable=False, server_default="range"),
    Column("leader_member_id", String(255), nullable=True),
    Column("state_changed_ms", BigInteger, nullable=False),
)

group_member = Table(
    "group_member", controller_metadata,
    # A REST Proxy consumer instance: a member of its group, with its own settings.
    Column("group_id", String(255), ForeignKey("consumer_group.group_id", ondelete="CASCADE"), primary_key=True),
    Column("instance_id", String(255), primary_key=True),
    Column("member_id", String(255), nullable=False, unique=True),
    Column("client_id", String(255), nullable=False),
    Column("format", String(16), nullable=False),
    Column("auto_offset_reset", String(16), nullable=False),
    Column("auto_commit_enable", Boolean, nullable=False),
    Column("auto_commit_interval_ms", Integer, nullable=False),
    Column("isolation_level", String(32), nullable=False),
    Column("fetch_min_bytes", Integer, nullable=False),
    Column("request_timeout_ms", Integer, nullable=False),
    Column("subscription", String(8192), nullable=True),  # JSON list of topics
    Column("topic_pattern", String(1024), nullable=True),
    Column("manual_assignment", Boolean, nullable=False, server_default="0"),
    Column("generation_id", Integer, nullable=False, server_default="0"),  # the generation it last joined
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("last_auto_commit_ms", BigInteger, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
)

member_assignment = Table(
    "member_assignment", controller_metadata,
    # The partitions a member owns (group-assigned in the current generation, or assigned by hand),
    # and its position in each: the next offset it will fetch (NULL: not looked up yet).
    Column("group_id", String(255), primary_key=True),
    Column("instance_id", String(255), primary_key=True),
    Column("topic_name", String(249), primary_key=True),
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=True),
)

lease = Table(
    "lease", controller_metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)

# --------------------------------------------------------------------------- broker-<id>.db
broker_metadata = MetaData(naming_convention=NAMING_CONVENTION)

log = Table(
    "log", broker_metadata,
    Column("log_id", Integer, primary_key=True, autoincrement=True),
    Column("topic_id", String(32), nullable=False),
    Column("topic_name", String(249), nullable=False),
    Column("partition_id", Integer, nullable=False),
    Column("log_start_offset", BigInteger, nullable=False, server_default="0"),
    Column("log_end_offset", BigInteger, nullable=False, server_default="0"),
    Column("high_watermark", BigInteger, nullable=False, server_default="0"),
    Column("size_bytes", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("topic_id", "partition_id"),
)

record = Table(
    "record", broker_metadata,
    Column("log_id", Integer, ForeignKey("log.log_id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("offset", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    Column("headers", LargeBinary, nullable=True),  # JSON [[name, base64 value | null], ...]
    Column("leader_epoch", Integer, nullable=False, server_default="0"),
    Column("producer_id", BigInteger, nullable=False, server_default="-1"),
    Column("producer_epoch", Integer, nullable=False, server_default="-1"),
    Column("sequence", Integer, nullable=False, server_default="-1"),
    Column("is_transactional", Boolean, nullable=False, server_default="0"),
    Column("is_control", Boolean, nullable=False, server_default="0"),
    sqlite_with_rowid=False,
)

leader_epoch = Table(
    "leader_epoch", broker_metadata,
    Column("log_id", Integer, ForeignKey("log.log_id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("epoch", Integer, primary_key=True, autoincrement=False),
    Column("start_offset", BigInteger, nullable=False),
)

replica_position = Table(
    "replica_position", broker_metadata,
    # The leader's view of one follower of one of its logs (Kafka's ``Replica`` state).
    Column("log_id", Integer, ForeignKey("log.log_id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("broker_id", Integer, primary_key=True, autoincrement=False),
    Column("leader_epoch", Integer, nullable=False),  # the leader epoch these values belong to
    Column("log_end_offset", BigInteger, nullable=False),  # -1: not fetched yet in this epoch
    Column("last_caught_up_ms", BigInteger, nullable=False),
    Column("last_fetch_leader_log_end_offset", BigInteger, nullable=False, server_default="0"),
    Column("last_fetch_ms", BigInteger, nullable=False, server_default="0"),
)

record_batch = Table(
    "record_batch", broker_metadata,
    # The header of every batch written by an idempotent or transactional producer, and of
    # every control batch (Kafka's RecordBatch fields). Producer state is replayed from these.
    Column("log_id", Integer, ForeignKey("log.log_id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("base_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("last_offset", BigInteger, nullable=False),
    Column("producer_id", BigInteger, nullable=False),
    Column("producer_epoch", Integer, nullable=False),
    Column("base_sequence", Integer, nullable=False),
    Column("last_sequence", Integer, nullable=False),
    Column("is_transactional", Boolean, nullable=False, server_default="0"),
    Column("is_control", Boolean, nullable=False, server_default="0"),
    Column("control_type", Integer, nullable=True),  # markers: 0 ABORT, 1 COMMIT
    Column("max_timestamp", BigInteger, nullable=False),
    # A producer's batches of one epoch, in offset order: its last five, and a marker's retry.
    Index("ix_record_batch_producer", "log_id", "producer_id", "producer_epoch", "base_offset"),
)

producer_state = Table(
    "producer_state", broker_metadata,
    # Kafka's ProducerStateEntry, one per producer id and partition replica; the last five
    # batches are the newest ``record_batch`` rows of its epoch.
    Column("log_id", Integer, ForeignKey("log.log_id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("producer_id", BigInteger, primary_key=True, autoincrement=False),
    Column("producer_epoch", Integer, nullable=False),
    Column("last_sequence", Integer, nullable=False),  # -1: none in this epoch
    Column("last_offset", BigInteger, nullable=False),
    Column("last_timestamp", BigInteger, nullable=False),
    Column("coordinator_epoch", Integer, nullable=False, server_default="-1"),
    Column("current_txn_first_offset", BigInteger, nullable=True),
)

transaction_index = Table(
    "transaction_index", broker_metadata,
    # Completed transactions of a partition replica (Kafka's TransactionIndex holds the aborted
    # ones; committed ones are kept too, to hold the LSO until the HW passes their marker).
    Column("log_id", Integer, ForeignKey("log.log_id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("last_offset", BigInteger, primary_key=True, autoincrement=False),  # the marker's offset
    Column("producer_id", BigInteger, nullable=False),
    Column("first_offset", BigInteger, nullable=False),
    Column("is_aborted", Boolean, nullable=False),
    Column("last_stable_offset", BigInteger, nullable=False),
)
