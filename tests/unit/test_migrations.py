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
