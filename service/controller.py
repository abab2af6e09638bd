"""The controller: cluster metadata in ``controller.db`` (Kafka's KRaft quorum stand-in).

Owns the cluster id, the brokers, topics with their configs, and each partition's replica
assignment, leader, leader epoch and ISR. Every change is one write transaction on the
controller file that also bumps ``cluster.metadata_version``; readers keep a per-process
``MetadataImage`` and reload it when that version moves, so the file stays the only truth.
"""
from __future__ import annotations

import base64
import logging
import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from service import schema
from service.clock import Clock
from service.config import Config
from service.db import Database, driver_sql
from service.errors import Errors, KafkaError, bad_request, partition_not_found, topic_not_found
from service.partition_change import elect_leader
from service.log_config import LogConfig, effective_configs, validate_config, validate_config_name
from service.types import MAX_PARTITIONS, NO_LEADER, validate_topic_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionState:
    """One partition as the controller knows it (Kafka's ``PartitionRegistration``)."""

    topic_id: str
    topic_name: str
    partition_id: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int
    leader_epoch_start_ms: int = 0


@dataclass(frozen=True)
class TopicMetadata:
    topic_id: str
    topic_name: str
    partitions_count: int
    replication_factor: int
    is_internal: bool
    overrides: Mapping[str, str | None]
    partitions: tuple[PartitionState, ...]
    log_config: LogConfig

    def partition(self, partition_id: object) -> PartitionState:
        if isinstance(partition_id, bool) or not isinstance(partition_id, int) \
                or not 0 <= partition_id < self.partitions_count:
            raise partition_not_found(self.topic_name, partition_id)  # type: ignore[arg-type]
        return self.partitions[partition_id]


@dataclass(frozen=True)
class BrokerState:
    broker_id: int
    status: str  # "online" | "offline"
    status_changed_ms: int = 0

    @property
    def online(self) -> bool:
        return self.status == "online"


@dataclass(frozen=True)
class MetadataImage:
    """A consistent snapshot of the controller file (Kafka's ``MetadataImage``)."""

    version: int
    cluster_id: str
    brokers: tuple[BrokerState, ...]
    topics: Mapping[str, TopicMetadata] = field(default_factory=dict)

    def topic(self, name: str) -> TopicMetadata:
        found = self.topics.get(name)
        if found is None:
            raise topic_not_found(name)
        return found

    def broker(self, broker_id: int) -> BrokerState:
        for b in self.brokers:
            if b.broker_id == broker_id:
                return b
        raise KafkaError(Errors.BROKER_NOT_AVAILABLE, f"Broker {broker_id} not found.")


def new_id() -> str:
    """A 22-character base64url id, the shape of Kafka's cluster and topic ids."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def assign_replicas(broker_ids: Sequence[int], partitions: int, replication_factor: int,
                    start_partition: int = 0, rng: random.Random | None = None) -> list[list[int]]:
    """Kafka's rack-unaware ``assignReplicasToBrokers``: leaders round-robin from a random
    start, followers shifted so that replicas of consecutive partitions spread evenly."""
    rng = rng or random.Random()
    n = len(broker_ids)
    start_index = rng.randrange(n)
    next_shift = rng.randrange(n)
    assignment = []
    for p in range(start_partition, start_partition + partitions):
        if p > 0 and p % n == 0:
            next_shift += 1
        first = (p + start_index) % n
        replicas = [broker_ids[first]]
        for j in range(replication_factor - 1):
            shift = 1 + (next_shift + j) % (n - 1)
            replicas.append(broker_ids[(first + shift) % n])
        assignment.append(replicas)
    return assignment


_SELECT_METADATA_VERSION, _ = driver_sql(select(schema.cluster.c.metadata_version))


class Controller:
    """Reads and changes cluster metadata; each change is one transaction on controller.db."""

    def __init__(self, db: Database, config: Config, clock: Clock) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self._image: MetadataImage | None = None
        self._image_lock = threading.Lock()
        self._validated = threading.local()  # per thread: the data_version it validated the image at

    # ------------------------------------------------------------------ bootstrap and reads
    def bootstrap(self) -> str:
        """Create the cluster row and brokers 0..N-1 if missing; return the cluster id.

        The broker count only grows: a data directory made with 3 brokers keeps them.
        """
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            row = conn.execute(select(schema.cluster)).first()
            if row is None:
                cluster_id = self.config.cluster_id or new_id()
                conn.execute(insert(schema.cluster).values(
                    id=1, cluster_id=cluster_id, broker_count=self.config.brokers, created_ms=now))
                count = self.config.brokers
            else:
                cluster_id = row.cluster_id
                count = max(row.broker_count, self.config.brokers)
                if count != row.broker_count:
                    conn.execute(update(schema.cluster).values(broker_count=count))
            existing = set(conn.execute(select(schema.broker.c.broker_id)).scalars())
            missing = [b for b in range(count) if b not in existing]
            if missing:
                conn.execute(insert(schema.broker),
                             [{"broker_id": b, "status": "online", "status_changed_ms": now} for b in missing])
                _bump(conn)
        return cluster_id

    def broker_ids(self) -> list[int]:
        with self.db.read(self.db.controller) as conn:
            return list(conn.execute(select(schema.broker.c.broker_id).order_by(schema.broker.c.broker_id)).scalars())

    def image(self) -> MetadataImage:
        """The current metadata, reloaded only when ``metadata_version`` changed.

        The file's ``data_version`` (seen from this thread's probe connection: its values are
        comparable only with that connection's own) is checked first: while nothing committed
        to controller.db since this thread last validated the image, it is current without a
        transaction.
        """
        data_version = self.db.data_version(self.db.controller)
        local = self._validated
        image = self._image
        if image is not None and getattr(local, "data_version", None) == data_version \
                and getattr(local, "version", None) == image.version:
            return image
        # Something committed to controller.db (mostly transaction and group state, which the
        # image does not hold): one statement on the same probe connection tells whether the
        # metadata moved. Read after data_version, so a commit in between is seen next time.
        row = self.db.query_one(self.db.controller, _SELECT_METADATA_VERSION)
        if image is None or row is None or image.version != row[0]:
            with self.db.read(self.db.controller) as conn:
                version = conn.execute(select(schema.cluster.c.metadata_version)).scalar_one()
                image = self._image
                if image is None or image.version != version:
                    image = self._load(conn, version)
        with self._image_lock:
            if self._image is None or self._image.version <= image.version:
                self._image = image
        local.data_version, local.version = data_version, image.version
        return image

    def _load(self, conn: Connection, version: int) -> MetadataImage:
        cluster_id = conn.execute(select(schema.cluster.c.cluster_id)).scalar_one()
        brokers = tuple(BrokerState(r.broker_id, r.status, r.status_changed_ms) for r in conn.execute(
            select(schema.broker).order_by(schema.broker.c.broker_id)))
        overrides: dict[str, dict[str, str | None]] = {}
        for r in conn.execute(select(schema.topic_config)):
            overrides.setdefault(r.topic_id, {})[r.name] = r.value
        partitions: dict[str, list[PartitionState]] = {}
        names = {r.topic_id: r.topic_name for r in conn.execute(select(schema.topic.c.topic_id, schema.topic.c.topic_name))}
        for r in conn.execute(select(schema.partition).order_by(schema.partition.c.topic_id,
                                                                 schema.partition.c.partition_id)):
            partitions.setdefault(r.topic_id, []).append(PartitionState(
                r.topic_id, names[r.topic_id], r.partition_id, tuple(orjson.loads(r.replicas)),
                tuple(orjson.loads(r.isr)), r.leader, r.leader_epoch, r.partition_epoch, r.leader_epoch_start_ms))
        topics = {}
        for r in conn.execute(select(schema.topic)):
            o = overrides.get(r.topic_id, {})
            topics[r.topic_name] = TopicMetadata(
                r.topic_id, r.topic_name, r.partitions_count, r.replication_factor, bool(r.is_internal),
                o, tuple(partitions.get(r.topic_id, ())), LogConfig.from_overrides(o, self.config))
        return MetadataImage(version, cluster_id, brokers, topics)

    def topic(self, name: str) -> TopicMetadata:
        return self.image().topic(name)

    def describe_configs(self, name: str) -> dict[str, tuple[str, bool]]:
        """Every topic config: name -> (value, is_default)."""
        t = self.topic(name)
        values = effective_configs(t.overrides, self.config)
        return {k: (v, t.overrides.get(k) is None) for k, v in sorted(values.items())}

    # ------------------------------------------------------------------ topic changes
    def create_topic(self, name: object, partitions_count: object = None, replication_factor: object = None,
                     configs: Iterable[tuple[object, object]] = (), validate_only: bool = False,
                     replicas_assignments: Mapping[object, object] | None = None) -> TopicMetadata:
        """CreateTopics: validate, assign replicas, and write the topic and its partitions.

        :raises INVALID_TOPIC_EXCEPTION, TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS,
            INVALID_REPLICATION_FACTOR, INVALID_CONFIG: nothing is written.
        """
        reason = validate_topic_name(name)
        if reason:
            raise KafkaError(Errors.INVALID_TOPIC_EXCEPTION, reason, 40002)
        assert isinstance(name, str)
        overrides: dict[str, str] = {}
        for cname, cvalue in configs:
            if cvalue is None:
                continue
            overrides[str(cname)] = validate_config(cname, cvalue)
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            if conn.execute(select(schema.topic.c.topic_id).where(schema.topic.c.topic_name == name)).first():
                raise bad_request(f"Topic '{name}' already exists.", Errors.TOPIC_ALREADY_EXISTS)
            online = list(conn.execute(select(schema.broker.c.broker_id).where(
                schema.broker.c.status == "online").order_by(schema.broker.c.broker_id)).scalars())
            if replicas_assignments:
                assignment = self._explicit_assignment(replicas_assignments, online)
                count, rf = len(assignment), len(assignment[0])
            else:
                count = _positive_int(partitions_count, self.config.num_partitions, "partitions_count",
                                      Errors.INVALID_PARTITIONS, MAX_PARTITIONS)
                rf = _positive_int(replication_factor, self.config.effective_default_replication_factor,
                                   "replication_factor", Errors.INVALID_REPLICATION_FACTOR, 32767)
                if rf > len(online):
                    raise bad_request(f"Replication factor: {rf} larger than available brokers: {len(online)}.",
                                      Errors.INVALID_REPLICATION_FACTOR)
                assignment = assign_replicas(online, count, rf)
            if validate_only:
                topic_id = new_id()
            else:
                topic_id = new_id()
                conn.execute(insert(schema.topic).values(
                    topic_id=topic_id, topic_name=name, partitions_count=count, replication_factor=rf,
                    is_internal=False, created_ms=now))
                if overrides:
                    conn.execute(insert(schema.topic_config),
                                 [{"topic_id": topic_id, "name": k, "value": v} for k, v in overrides.items()])
                conn.execute(insert(schema.partition), [_new_partition_row(topic_id, p, replicas, now)
                                                        for p, replicas in enumerate(assignment)])
                _bump(conn)
        if validate_only:
            parts = tuple(PartitionState(topic_id, name, p, tuple(r), tuple(r), r[0], 0, 0)
                          for p, r in enumerate(assignment))
            return TopicMetadata(topic_id, name, count, rf, False, overrides, parts,
                                 LogConfig.from_overrides(overrides, self.config))
        logger.info("created topic %s (%s partitions, replication factor %s)", name, count, rf)
        return self.topic(name)

    # ------------------------------------------------------------------ brokers and elections
    def stop_broker(self, broker_id: int) -> BrokerState:
        """Mark a broker offline and move the leadership of every partition it led.

        One transaction on controller.db: the status and every election commit together.
        Followers on the stopped broker leave the ISR later: by lag (replica.lag.time.max.ms), or,
        where nothing is written, once it has been stopped that long (as Kafka's controller drops
        a broker whose session expired; see ``ReplicaManager.maybe_shrink_isr``).
        """
        return self._set_broker_status(broker_id, "offline")

    def start_broker(self, broker_id: int) -> BrokerState:
        """Mark a broker online and elect a leader for each partition that had none and can
        now have one. The broker's replicas truncate and catch up as followers."""
        return self._set_broker_status(broker_id, "online")

    def _set_broker_status(self, broker_id: int, status: str) -> BrokerState:
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            row = conn.execute(select(schema.broker).where(schema.broker.c.broker_id == broker_id)).first()
            if row is None:
                raise KafkaError(Errors.BROKER_NOT_AVAILABLE, f"Broker {broker_id} not found.")
            if row.status != status:
                conn.execute(update(schema.broker).where(schema.broker.c.broker_id == broker_id)
                             .values(status=status, status_changed_ms=now))
                self._elect_leaders(conn)
                _bump(conn)
        logger.info("broker %s is %s", broker_id, status)
        return BrokerState(broker_id, status)

    def elect_leaders(self) -> int:
        """Elect a leader wherever the current one is missing or offline (a background duty;
        broker stop and start already do it). Returns how many partitions changed."""
        image = self.image()
        live = {b.broker_id for b in image.brokers if b.online}
        if all(p.leader in live or (p.leader == NO_LEADER and not (set(p.replicas) & live))
               for t in image.topics.values() for p in t.partitions):
            return 0  # nothing to elect: no write transaction
        with self.db.write(self.db.controller) as conn:
            changed = self._elect_leaders(conn)
            if changed:
                _bump(conn)
        return changed

    def _elect_leaders(self, conn: Connection) -> int:
        now = self.clock.milliseconds()
        live = set(conn.execute(select(schema.broker.c.broker_id).where(schema.broker.c.status == "online")).scalars())
        default_unclean = "true" if self.config.unclean_leader_election_enable else "false"
        unclean_by_topic = {r.topic_id: r.value for r in conn.execute(select(schema.topic_config).where(
            schema.topic_config.c.name == "unclean.leader.election.enable"))}
        changed = 0
        p = schema.partition
        for row in conn.execute(select(p)).all():
            replicas, isr = orjson.loads(row.replicas), orjson.loads(row.isr)
            if row.leader != NO_LEADER and row.leader in live:
                continue
            unclean = unclean_by_topic.get(row.topic_id, default_unclean) == "true"
            election = elect_leader(replicas, isr, row.leader, live, unclean)
            if election.leader == row.leader and list(election.isr) == isr:
                continue
            conn.execute(update(p).where(p.c.topic_id == row.topic_id, p.c.partition_id == row.partition_id).values(
                leader=election.leader, isr=orjson.dumps(list(election.isr)).decode(),
                leader_epoch=row.leader_epoch + (1 if election.leader != row.leader else 0),
                leader_epoch_start_ms=now if election.leader != row.leader else row.leader_epoch_start_ms,
                partition_epoch=row.partition_epoch + 1))
            changed += 1
            level = logging.WARNING if election.unclean else logging.INFO
            logger.log(level, "%selection of partition %s/%s: leader %s -> %s, isr %s",
                       "unclean " if election.unclean else "", row.topic_id, row.partition_id, row.leader,
                       election.leader, list(election.isr))
        return changed

    def alter_partition_isr(self, state: PartitionState, new_isr: Sequence[int]) -> bool:
        """AlterPartition: replace the ISR if the partition is still at ``state``'s leader
        epoch and partition epoch (compare-and-set); bumps the partition epoch. True if done."""
        p = schema.partition
        with self.db.write(self.db.controller) as conn:
            done = conn.execute(update(p).where(
                p.c.topic_id == state.topic_id, p.c.partition_id == state.partition_id,
                p.c.leader == state.leader, p.c.leader_epoch == state.leader_epoch,
                p.c.partition_epoch == state.partition_epoch,
            ).values(isr=orjson.dumps(list(new_isr)).decode(), partition_epoch=state.partition_epoch + 1)).rowcount
            if done:
                _bump(conn)
        if done:
            logger.info("ISR of %s-%s: %s -> %s", state.topic_name, state.partition_id, list(state.isr), list(new_isr))
        return bool(done)

    def _explicit_assignment(self, assignments: Mapping[object, object], online: list[int]) -> list[list[int]]:
        try:
            by_partition = {int(str(k)): v for k, v in assignments.items()}
        except ValueError:
            raise bad_request("replicas_assignments keys must be partition ids.", Errors.INVALID_PARTITIONS) from None
        if sorted(by_partition) != list(range(len(by_partition))) or len(by_partition) > MAX_PARTITIONS:
            raise bad_request("replicas_assignments must name partitions 0..N-1.", Errors.INVALID_PARTITIONS)
        result = []
        for p in range(len(by_partition)):
            replicas = by_partition[p]
            if (not isinstance(replicas, list) or not replicas
                    or any(isinstance(b, bool) or not isinstance(b, int) for b in replicas)
                    or len(set(replicas)) != len(replicas)):
                raise bad_request(f"Invalid replica assignment for partition {p}.", Errors.INVALID_REPLICATION_FACTOR)
            unknown = [b for b in replicas if b not in online]
            if unknown:
                raise bad_request(f"Unknown or offline brokers {unknown} in the assignment of partition {p}.",
                                  Errors.INVALID_REPLICATION_FACTOR)
            result.append(list(replicas))
        if len({len(r) for r in result}) != 1:
            raise bad_request("All partitions must have the same replication factor.", Errors.INVALID_REPLICATION_FACTOR)
        return result

    def delete_topic(self, name: str) -> None:
        """DeleteTopics: remove the topic from the controller file; broker files drop its logs
        afterwards (``LogManager.delete_stray_logs``), as Kafka deletes asynchronously.

        :raises UNKNOWN_TOPIC_OR_PARTITION: no such topic.
        """
        with self.db.write(self.db.controller) as conn:
            topic = self._topic_row(conn, name)
            conn.execute(delete(schema.topic).where(schema.topic.c.topic_id == topic.topic_id))
            _bump(conn)
        logger.info("deleted topic %s", name)

    def create_partitions(self, name: str, new_count: object) -> TopicMetadata:
        """CreatePartitions: grow a topic to ``new_count`` partitions (never shrink)."""
        if isinstance(new_count, bool) or not isinstance(new_count, int) or new_count > MAX_PARTITIONS:
            raise bad_request("partitions_count must be an integer.", Errors.INVALID_PARTITIONS)
        with self.db.write(self.db.controller) as conn:
            topic = self._topic_row(conn, name)
            if new_count <= topic.partitions_count:
                raise bad_request(f"Topic already has {topic.partitions_count} partitions.", Errors.INVALID_PARTITIONS)
            online = list(conn.execute(select(schema.broker.c.broker_id).where(
                schema.broker.c.status == "online").order_by(schema.broker.c.broker_id)).scalars())
            if topic.replication_factor > len(online):
                raise bad_request(f"Replication factor: {topic.replication_factor} larger than available "
                                  f"brokers: {len(online)}.", Errors.INVALID_REPLICATION_FACTOR)
            added = assign_replicas(online, new_count - topic.partitions_count, topic.replication_factor,
                                    start_partition=topic.partitions_count)
            conn.execute(insert(schema.partition), [
                _new_partition_row(topic.topic_id, topic.partitions_count + i, r, self.clock.milliseconds())
                for i, r in enumerate(added)])
            conn.execute(update(schema.topic).where(schema.topic.c.topic_id == topic.topic_id)
                         .values(partitions_count=new_count))
            _bump(conn)
        return self.topic(name)

    def alter_configs(self, name: str, changes: Sequence[tuple[object, object | None]], validate_only: bool = False) -> None:
        """IncrementalAlterConfigs: each change sets a value, or resets it to default when None.

        All changes are validated before any is written; they apply together or not at all.
        """
        validated = [(str(n), None if v is None else validate_config(n, v)) for n, v in changes]
        for n, v in changes:
            if v is None:
                validate_config_name(n)
        if validate_only:
            self.topic(name)
            return
        with self.db.write(self.db.controller) as conn:
            topic = self._topic_row(conn, name)
            for cname, value in validated:
                conn.execute(delete(schema.topic_config).where(
                    schema.topic_config.c.topic_id == topic.topic_id, schema.topic_config.c.name == cname))
                if value is not None:
                    conn.execute(insert(schema.topic_config).values(topic_id=topic.topic_id, name=cname, value=value))
            _bump(conn)

    @staticmethod
    def _topic_row(conn: Connection, name: str):
        row = conn.execute(select(schema.topic).where(schema.topic.c.topic_name == name)).first()
        if row is None:
            raise topic_not_found(name)
        return row


def _new_partition_row(topic_id: str, partition_id: int, replicas: list[int], now_ms: int) -> dict:
    # As in Kafka, a new partition starts with every replica in the ISR (all logs are empty,
    # so all are caught up) and the first replica of the assignment leading.
    leader = replicas[0] if replicas else NO_LEADER
    return {"topic_id": topic_id, "partition_id": partition_id, "replicas": orjson.dumps(replicas).decode(),
            "isr": orjson.dumps(replicas).decode(), "leader": leader, "leader_epoch": 0, "partition_epoch": 0,
            "leader_epoch_start_ms": now_ms}


def _positive_int(value: object, default: int, what: str, error: Errors, maximum: int) -> int:
    if value is None or value == -1:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise bad_request(f"Invalid {what} {value!r}: must be an integer between 1 and {maximum}.", error)
    return value


def _bump(conn: Connection) -> None:
    conn.execute(update(schema.cluster).values(metadata_version=schema.cluster.c.metadata_version + 1))
