"""The controller: cluster identity, brokers, topic creation rules, replica assignment,
partition growth and atomic config changes (Kafka's CreateTopics / CreatePartitions /
IncrementalAlterConfigs)."""
from __future__ import annotations

import collections
import random

import pytest

from service.config import Config
from service.controller import assign_replicas
from service.errors import Errors, KafkaError
from service.server import DlogServer


def _error(exc_info) -> Errors:
    assert isinstance(exc_info.value, KafkaError)
    return exc_info.value.error


# ------------------------------------------------------------------------ cluster and brokers
def test_cluster_id_is_stable_across_restarts(data_dir, clock):
    first = DlogServer(Config(data_dir=data_dir), clock)
    first.start_up(background=False)
    cid = first.controller.image().cluster_id
    first.shut_down()
    second = DlogServer(Config(data_dir=data_dir), clock)
    second.start_up(background=False)
    try:
        assert second.controller.image().cluster_id == cid
    finally:
        second.shut_down()
    assert len(cid) == 22  # base64url of 16 bytes, as Kafka's


def test_clusters_on_different_dirs_have_different_ids(tmp_path, clock):
    ids = []
    for name in ("a", "b"):
        s = DlogServer(Config(data_dir=str(tmp_path / name)), clock)
        s.start_up(background=False)
        ids.append(s.controller.image().cluster_id)
        s.shut_down()
    assert ids[0] != ids[1]


def test_configured_cluster_id_is_used_for_a_new_directory(data_dir, clock):
    s = DlogServer(Config(data_dir=data_dir, cluster_id="MkU3OEVBNTcwNTJENDM2Qg"), clock)
    s.start_up(background=False)
    try:
        assert s.controller.image().cluster_id == "MkU3OEVBNTcwNTJENDM2Qg"
    finally:
        s.shut_down()


@pytest.mark.parametrize("count", [1, 3, 5])
def test_brokers_are_numbered_from_zero(data_dir, clock, count):
    s = DlogServer(Config(data_dir=data_dir, brokers=count), clock)
    s.start_up(background=False)
    try:
        assert s.controller.broker_ids() == list(range(count))
        assert [b.broker_id for b in s.controller.image().brokers] == list(range(count))
        assert all(b.online for b in s.controller.image().brokers)
    finally:
        s.shut_down()


def test_broker_count_is_kept_by_the_data_directory(data_dir, clock):
    s = DlogServer(Config(data_dir=data_dir, brokers=3), clock)
    s.start_up(background=False)
    s.shut_down()
    s = DlogServer(Config(data_dir=data_dir, brokers=1), clock)
    s.start_up(background=False)
    try:
        assert s.controller.broker_ids() == [0, 1, 2]
    finally:
        s.shut_down()


def test_topics_survive_a_restart(data_dir, clock):
    s = DlogServer(Config(data_dir=data_dir), clock)
    s.start_up(background=False)
    created = s.controller.create_topic("orders", 4, 2, [("retention.ms", "1000")])
    s.shut_down()
    s = DlogServer(Config(data_dir=data_dir), clock)
    s.start_up(background=False)
    try:
        t = s.controller.topic("orders")
        assert (t.topic_id, t.partitions_count, t.replication_factor) == (created.topic_id, 4, 2)
        assert [p.replicas for p in t.partitions] == [p.replicas for p in created.partitions]
        assert t.log_config.retention_ms == 1000
    finally:
        s.shut_down()



def test_metadata_image_follows_another_process_and_survives_other_commits(data_dir, clock):
    """Each process caches the metadata image; a change made by another process (its own
    Database, as a second gunicorn worker) is seen on the next look, and a commit to
    controller.db that does not touch the metadata (transaction state) keeps the cache."""
    a = DlogServer(Config(data_dir=data_dir), clock)
    a.start_up(background=False)
    b = DlogServer(Config(data_dir=data_dir), clock)
    b.start_up(background=False)
    try:
        cached = a.controller.image()
        assert a.controller.image() is cached
        b.transaction_coordinator.handle_init_producer_id("t1", 60000)  # controller.db, not metadata
        assert a.controller.image() is cached
        b.controller.create_topic("from-b", 2, 1, [])
        seen = a.controller.image()
        assert seen.version > cached.version and seen.topics["from-b"].partitions_count == 2
        assert a.controller.image() is seen
    finally:
        b.shut_down()
        a.shut_down()

# ------------------------------------------------------------------------ topic names
@pytest.mark.parametrize("name", ["a", "a" * 249, "orders.v1_final-2", "...", "-", "_", "A.B"])
def test_legal_topic_names(server, name):
    t = server.controller.create_topic(name, 1, 1)
    assert server.controller.topic(name).topic_id == t.topic_id


@pytest.mark.parametrize("name", ["", ".", "..", "a" * 250, "with space", "slash/", "tópico", "a:b", "a*",
                                  "new\nline", None, 5, ["x"]])
def test_illegal_topic_names_are_refused_and_nothing_is_written(server, name):
    before = server.controller.image().version
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic(name, 1, 1)
    assert _error(e) is Errors.INVALID_TOPIC_EXCEPTION
    assert server.controller.image().version == before
    assert server.controller.image().topics == {}


# ------------------------------------------------------------------------ partitions and RF
@pytest.mark.parametrize("count", [0, -2, 10_001, "3", 1.5, True])
def test_invalid_partition_counts(server, count):
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", count, 1)
    assert _error(e) is Errors.INVALID_PARTITIONS
    assert "t" not in server.controller.image().topics


@pytest.mark.parametrize("rf", [0, -2, "1", 2.0, False])
def test_invalid_replication_factors(server, rf):
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", 1, rf)
    assert _error(e) is Errors.INVALID_REPLICATION_FACTOR
    assert "t" not in server.controller.image().topics


def test_replication_factor_above_broker_count(server):
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", 1, 4)
    assert _error(e) is Errors.INVALID_REPLICATION_FACTOR
    assert "larger than available brokers: 3" in e.value.message
    assert "t" not in server.controller.image().topics


def test_defaults_come_from_configuration(server):
    """-1 (Kafka's 'use the default') and absent both take num.partitions and
    default.replication.factor (min(3, brokers))."""
    a = server.controller.create_topic("a")
    b = server.controller.create_topic("b", -1, -1)
    for t in (a, b):
        assert (t.partitions_count, t.replication_factor) == (1, 3)


def test_partition_bounds_are_inclusive(server):
    t = server.controller.create_topic("big", 10_000, 1)
    assert t.partitions_count == 10_000 and len(t.partitions) == 10_000


def test_duplicate_topic_is_refused_and_original_kept(server):
    first = server.controller.create_topic("t", 2, 1)
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", 5, 3)
    assert _error(e) is Errors.TOPIC_ALREADY_EXISTS
    t = server.controller.topic("t")
    assert (t.topic_id, t.partitions_count, t.replication_factor) == (first.topic_id, 2, 1)


def test_validate_only_writes_nothing(server):
    before = server.controller.image().version
    t = server.controller.create_topic("t", 3, 2, validate_only=True)
    assert t.partitions_count == 3
    assert "t" not in server.controller.image().topics
    assert server.controller.image().version == before


# ------------------------------------------------------------------------ configs at creation
@pytest.mark.parametrize("name,value", [
    ("retention.ms", "1000"), ("retention.ms", "-1"), ("retention.bytes", "-1"), ("retention.bytes", "0"),
    ("max.message.bytes", "10"), ("message.timestamp.type", "LogAppendTime"), ("min.insync.replicas", "1"),
    ("cleanup.policy", "delete"), ("unclean.leader.election.enable", "true"), ("compression.type", "gzip"),
])
def test_valid_configs_are_stored(server, name, value):
    server.controller.create_topic("t", 1, 1, [(name, value)])
    assert server.controller.describe_configs("t")[name] == (value, False)


@pytest.mark.parametrize("name", ["retention", "segment.bytes.typo", "", "RETENTION.MS"])
def test_unknown_configs_are_refused(server, name):
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", 1, 1, [(name, "1")])
    assert _error(e) is Errors.INVALID_CONFIG
    assert "t" not in server.controller.image().topics


@pytest.mark.parametrize("name,value", [
    ("retention.ms", "abc"), ("retention.ms", "-2"), ("retention.ms", "1.5"), ("retention.bytes", "-5"),
    ("max.message.bytes", "-1"), ("max.message.bytes", str(2**31)), ("min.insync.replicas", "0"),
    ("message.timestamp.type", "Bogus"), ("unclean.leader.election.enable", "yes"),
    ("compression.type", "brotli"), ("cleanup.policy", ""), ("cleanup.policy", "forever"),
    ("retention.ms", ["1"]), ("retention.ms", True),
])
def test_invalid_config_values_are_refused(server, name, value):
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", 1, 1, [(name, value)])
    assert _error(e) is Errors.INVALID_CONFIG
    assert "t" not in server.controller.image().topics


@pytest.mark.parametrize("policy", ["compact", "compact,delete", "delete, compact"])
def test_compaction_is_refused(server, policy):
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", 1, 1, [("cleanup.policy", policy)])
    assert _error(e) is Errors.INVALID_CONFIG
    assert "compact" in e.value.message


# ------------------------------------------------------------------------ replica assignment
@pytest.mark.parametrize("brokers", [1, 2, 3, 5])
def test_assignment_never_puts_two_replicas_on_one_broker_and_spreads_leaders(brokers):
    rng = random.Random(7)
    for rf in range(1, brokers + 1):
        for partitions in range(1, 4 * brokers + 1):
            assignment = assign_replicas(list(range(brokers)), partitions, rf, rng=rng)
            assert len(assignment) == partitions
            for replicas in assignment:
                assert len(replicas) == rf and len(set(replicas)) == rf
                assert set(replicas) <= set(range(brokers))
            leaders = collections.Counter(r[0] for r in assignment)
            counts = [leaders[b] for b in range(brokers)]
            assert max(counts) - min(counts) <= 1, (rf, partitions, assignment)
            if partitions % brokers == 0:  # whole rounds: every broker holds as many replicas
                load = collections.Counter(b for r in assignment for b in r)
                assert len({load[b] for b in range(brokers)}) == 1, (rf, partitions, assignment)


def test_created_topic_spreads_leaders_over_brokers(server):
    t = server.controller.create_topic("t", 6, 3)
    leaders = collections.Counter(p.leader for p in t.partitions)
    assert leaders == {0: 2, 1: 2, 2: 2}
    for p in t.partitions:
        assert len(set(p.replicas)) == 3
        assert p.leader == p.replicas[0]
        assert p.leader in p.isr and set(p.isr) <= set(p.replicas)
        assert p.leader_epoch == 0


def test_explicit_replica_assignment(server):
    t = server.controller.create_topic("t", replicas_assignments={"0": [2, 0], "1": [1, 2]})
    assert [p.replicas for p in t.partitions] == [(2, 0), (1, 2)]
    assert [p.leader for p in t.partitions] == [2, 1]


@pytest.mark.parametrize("assignment", [{"0": [1, 1]}, {"0": [7]}, {"1": [0]}, {"0": [0], "1": [0, 1]},
                                        {"x": [0]}, {"0": []}, {"0": "0"}])
def test_invalid_replica_assignments(server, assignment):
    with pytest.raises(KafkaError) as e:
        server.controller.create_topic("t", replicas_assignments=assignment)
    assert _error(e) in (Errors.INVALID_REPLICATION_FACTOR, Errors.INVALID_PARTITIONS)
    assert "t" not in server.controller.image().topics


# ------------------------------------------------------------------------ create_partitions
def test_create_partitions_grows_and_keeps_existing(server):
    before = server.controller.create_topic("t", 2, 2)
    after = server.controller.create_partitions("t", 5)
    assert after.partitions_count == 5 and [p.partition_id for p in after.partitions] == [0, 1, 2, 3, 4]
    assert after.partitions[:2] == before.partitions
    for p in after.partitions[2:]:
        assert len(set(p.replicas)) == 2 and p.leader == p.replicas[0]


@pytest.mark.parametrize("count", [3, 2, 1, 0, -1, "4", None, 10_001])
def test_create_partitions_never_shrinks_or_stays(server, count):
    server.controller.create_topic("t", 3, 1)
    version = server.controller.image().version
    with pytest.raises(KafkaError) as e:
        server.controller.create_partitions("t", count)
    assert _error(e) is Errors.INVALID_PARTITIONS
    assert server.controller.topic("t").partitions_count == 3
    assert server.controller.image().version == version


def test_create_partitions_of_unknown_topic(server):
    with pytest.raises(KafkaError) as e:
        server.controller.create_partitions("nope", 3)
    assert _error(e) is Errors.UNKNOWN_TOPIC_OR_PARTITION


# ------------------------------------------------------------------------ alter_configs
def test_alter_configs_sets_and_resets(server):
    server.controller.create_topic("t", 1, 1)
    assert server.controller.describe_configs("t")["retention.ms"] == ("604800000", True)
    server.controller.alter_configs("t", [("retention.ms", "1000"), ("max.message.bytes", "2048")])
    configs = server.controller.describe_configs("t")
    assert configs["retention.ms"] == ("1000", False)
    assert configs["max.message.bytes"] == ("2048", False)
    assert server.controller.topic("t").log_config.max_message_bytes == 2048
    server.controller.alter_configs("t", [("retention.ms", None)])
    configs = server.controller.describe_configs("t")
    assert configs["retention.ms"] == ("604800000", True)
    assert configs["max.message.bytes"] == ("2048", False)


@pytest.mark.parametrize("changes", [
    [("retention.ms", "1000"), ("no.such.config", "1")],
    [("retention.ms", "1000"), ("max.message.bytes", "lots")],
    [("max.message.bytes", "lots"), ("retention.ms", "1000")],
    [("retention.ms", "1000"), ("cleanup.policy", "compact")],
    [("retention.ms", "1000"), ("no.such.config", None)],
])
def test_alter_configs_is_atomic(server, changes):
    server.controller.create_topic("t", 1, 1, [("retention.bytes", "100")])
    before = server.controller.describe_configs("t")
    version = server.controller.image().version
    with pytest.raises(KafkaError) as e:
        server.controller.alter_configs("t", changes)
    assert _error(e) is Errors.INVALID_CONFIG
    assert server.controller.describe_configs("t") == before
    assert server.controller.image().version == version


def test_alter_configs_validate_only_writes_nothing(server):
    server.controller.create_topic("t", 1, 1)
    server.controller.alter_configs("t", [("retention.ms", "1000")], validate_only=True)
    assert server.controller.describe_configs("t")["retention.ms"] == ("604800000", True)


def test_alter_configs_of_unknown_topic(server):
    with pytest.raises(KafkaError) as e:
        server.controller.alter_configs("nope", [("retention.ms", "1")])
    assert _error(e) is Errors.UNKNOWN_TOPIC_OR_PARTITION


def test_broker_defaults_flow_into_topic_configs(data_dir, clock):
    s = DlogServer(Config(data_dir=data_dir, log_retention_ms=5000, message_max_bytes=999,
                          min_insync_replicas=1), clock)
    s.start_up(background=False)
    try:
        s.controller.create_topic("t", 1, 1)
        c = s.controller.describe_configs("t")
        assert c["retention.ms"] == ("5000", True)
        assert c["max.message.bytes"] == ("999", True)
        assert c["min.insync.replicas"] == ("1", True)
    finally:
        s.shut_down()


# ------------------------------------------------------------------------ delete
def test_delete_topic(server):
    server.controller.create_topic("t", 2, 1)
    server.controller.delete_topic("t")
    assert "t" not in server.controller.image().topics
    with pytest.raises(KafkaError) as e:
        server.controller.topic("t")
    assert _error(e) is Errors.UNKNOWN_TOPIC_OR_PARTITION
    with pytest.raises(KafkaError) as e:
        server.controller.delete_topic("t")
    assert _error(e) is Errors.UNKNOWN_TOPIC_OR_PARTITION


def test_recreated_topic_gets_a_new_id(server):
    first = server.controller.create_topic("t", 1, 1)
    server.controller.delete_topic("t")
    second = server.controller.create_topic("t", 3, 1)
    assert second.topic_id != first.topic_id and second.partitions_count == 3
