"""Alembic migrations build exactly the tables declared in ``service.schema``."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from service import migrate, schema
from service.db import make_engine

KINDS = [("controller", schema.controller_metadata), ("broker", schema.broker_metadata)]


@pytest.mark.parametrize("kind,metadata", KINDS, ids=[k for k, _ in KINDS])
def test_upgrade_head_on_fresh_file_matches_declared_metadata(tmp_path, kind, metadata):
    engine = make_engine(tmp_path / f"{kind}.db")
    try:
        migrate.upgrade_engine(engine, kind)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            diff = compare_metadata(ctx, metadata)
            tables = set(inspect(conn).get_table_names())
            current = ctx.get_current_revision()
    finally:
        engine.dispose()
    assert diff == [], f"{kind} migrations differ from service.schema: {diff}"
    assert tables - {"alembic_version"} == set(metadata.tables)
    head = ScriptDirectory.from_config(migrate.alembic_config(kind)).get_current_head()
    assert current == head


@pytest.mark.parametrize("kind", [k for k, _ in KINDS])
def test_upgrade_is_idempotent(tmp_path, kind):
    """Every start-up runs ``upgrade head``; on an up-to-date file it changes nothing."""
    engine = make_engine(tmp_path / f"{kind}.db")
    try:
        migrate.upgrade_engine(engine, kind)
        migrate.upgrade_engine(engine, kind)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            assert compare_metadata(ctx, schema.controller_metadata if kind == "controller"
                                    else schema.broker_metadata) == []
    finally:
        engine.dispose()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        migrate.alembic_config("consumer")


def test_server_start_up_migrates_every_file(tmp_path, clock):
    from service.config import Config
    from service.server import DlogServer

    s = DlogServer(Config(data_dir=str(tmp_path), brokers=2), clock)
    s.start_up(background=False)
    try:
        for engine, metadata in [(s.db.controller, schema.controller_metadata),
                                 (s.db.broker(0), schema.broker_metadata),
                                 (s.db.broker(1), schema.broker_metadata)]:
            with engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        s.shut_down()
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["broker-0.db", "broker-1.db", "controller.db"]


def test_offsets_committed_before_commit_order_keep_their_values_and_count_as_older(tmp_path):
    """c0007 orders offset commits (3.19): offsets committed by an older dlog survive the
    upgrade, at position 0, before anything committed after it."""
    from sqlalchemy import text

    from service.groups import offsets

    engine = make_engine(tmp_path / "controller.db")
    try:
        migrate.upgrade_engine(engine, "controller", "c0006")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO committed_offset (group_id, topic_name, partition_id, \"offset\", "
                              "metadata, commit_ms) VALUES ('g', 't', 0, 42, NULL, 1)"))
        migrate.upgrade_engine(engine, "controller")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT \"offset\", log_offset FROM committed_offset")).all() == [(42, 0)]
            assert offsets.append_position(conn) == 1
            assert offsets.append_position(conn) == 2
    finally:
        engine.dispose()


def test_record_batches_written_before_b0004_are_found_by_producer_and_epoch(tmp_path):
    """b0004 puts the producer epoch into the producer index of record_batch: batches and
    markers written by an older dlog are still found (a retried marker, the last five)."""
    from service import producer_state
    from service.db import Database

    engine = make_engine(tmp_path / "broker-0.db")
    try:
        migrate.upgrade_engine(engine, "broker", "b0003")
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO log (log_id, topic_id, topic_name, partition_id) VALUES (1, 'x', 't', 0)")
            conn.exec_driver_sql(
                "INSERT INTO record_batch (log_id, base_offset, last_offset, producer_id, producer_epoch, "
                "base_sequence, last_sequence, is_transactional, is_control, control_type, max_timestamp) "
                "VALUES (1, 0, 9, 7, 3, 0, 9, 1, 0, NULL, 5), (1, 10, 10, 7, 3, -1, -1, 1, 1, 1, 6)")
        migrate.upgrade_engine(engine, "broker")
        columns = [c for ix in inspect(engine).get_indexes("record_batch") if ix["name"] == "ix_record_batch_producer"
                   for c in ix["column_names"]]
        assert columns == ["log_id", "producer_id", "producer_epoch", "base_offset"]
        db = Database(tmp_path)
        try:
            with db.read(db.broker(0)) as conn:
                marker = producer_state.find_marker(conn, 1, 7, 3)
                assert (marker.base_offset, marker.control_type) == (10, 1)
                assert producer_state.find_marker(conn, 1, 7, 4) is None
                assert [b.base_offset for b in producer_state.batches_in_range(conn, 1, 5, 11)] == [0, 10]
        finally:
            db.dispose()
    finally:
        engine.dispose()



def test_per_round_and_per_commit_batch_lookups_read_a_range_not_the_whole_log(tmp_path):
    """What a follower's round (the batch headers it copies) and a marker write (has this epoch
    a marker yet?) look up stays a bounded index range however long the log grows."""
    from service import producer_state
    from service.db import Database

    db = Database(tmp_path)
    try:
        migrate.upgrade_engine(db.broker(0), "broker")
        with db.read(db.broker(0)) as conn:
            def plan(sql: str) -> str:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, (1,) * sql.count("?")).all()
                return " | ".join(r[3] for r in rows)

            assert "(log_id=? AND base_offset>? AND base_offset<?)" in plan(producer_state._BATCHES_IN_RANGE)
            assert "(log_id=? AND producer_id=? AND producer_epoch=?)" in plan(producer_state._FIND_MARKER)
            assert "(log_id=? AND producer_id=? AND producer_epoch=?)" in plan(producer_state._SELECT_BATCHES)
    finally:
        db.dispose()
