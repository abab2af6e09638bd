"""SQLite settings of every connection, and write transactions that take the lock first."""
from __future__ import annotations

import os
import sqlite3
import threading

import pytest
from sqlalchemy import text

from service.config import Config
from service.db import Database, make_engine
from service.server import DlogServer


def _pragmas(engine) -> dict:
    with engine.connect() as conn:
        return {name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}


def test_default_pragmas(tmp_path):
    engine = make_engine(tmp_path / "x.db")
    try:
        assert _pragmas(engine) == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                                    "busy_timeout": 30000}
    finally:
        engine.dispose()


def test_sync_normal_and_busy_timeout_are_configurable(tmp_path):
    engine = make_engine(tmp_path / "x.db", sync="normal", busy_timeout_ms=1234)
    try:
        p = _pragmas(engine)
    finally:
        engine.dispose()
    assert p["synchronous"] == 1  # NORMAL
    assert p["busy_timeout"] == 1234
    assert p["journal_mode"] == "wal" and p["foreign_keys"] == 1


def test_invalid_sync_mode_is_refused(tmp_path):
    with pytest.raises(ValueError):
        make_engine(tmp_path / "x.db", sync="off")
    with pytest.raises(ValueError):
        Config.from_env({"DLOG_SYNC": "off"})


def test_server_applies_config_to_every_file(tmp_path, clock):
    s = DlogServer(Config(data_dir=str(tmp_path), brokers=2, sync="normal", busy_timeout_ms=777), clock)
    s.start_up(background=False)
    try:
        for engine in (s.db.controller, s.db.broker(0), s.db.broker(1)):
            assert _pragmas(engine) == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1,
                                        "busy_timeout": 777}
    finally:
        s.shut_down()


def test_env_sync_setting_reaches_config():
    assert Config.from_env({}).sync == "full"
    assert Config.from_env({"DLOG_SYNC": "NORMAL"}).sync == "normal"


def test_write_takes_the_write_lock_at_begin(tmp_path):
    """``Database.write`` is BEGIN IMMEDIATE: while it is open, another writer cannot start,
    even before the first statement of the transaction ran."""
    db = Database(tmp_path)
    engine = db.controller
    with engine.connect() as conn:  # create the file in WAL mode
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.commit()
    other = sqlite3.connect(tmp_path / "controller.db", timeout=0, isolation_level=None)
    try:
        with db.write(engine):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released at commit
        other.execute("ROLLBACK")
    finally:
        other.close()
        db.dispose()


def test_failed_write_rolls_back_everything(tmp_path):
    db = Database(tmp_path)
    engine = db.controller
    with db.write(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError):
        with db.write(engine) as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            raise RuntimeError("boom")
    with db.read(engine) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    db.dispose()


def test_read_sees_one_snapshot(tmp_path):
    """Every SELECT of one ``read`` sees the same snapshot, whatever commits meanwhile."""
    db = Database(tmp_path)
    engine = db.controller
    with db.write(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    try:
        with db.read(engine) as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1

            def writer():
                with db.write(engine) as w:
                    w.exec_driver_sql("INSERT INTO t VALUES (2)")

            t = threading.Thread(target=writer)
            t.start()
            t.join()
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
        with db.read(engine) as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    finally:
        db.dispose()


def test_a_relaxed_write_commits_and_leaves_the_connection_synchronous(tmp_path):
    """``write(durable=False)`` (the leader's positions and HW) commits like any write, and
    the pooled connection is back at synchronous=FULL for the next one, even after a failure."""
    db = Database(tmp_path)
    engine = db.controller
    try:
        with db.write(engine) as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with db.write(engine, durable=False) as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL inside
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError):
            with db.write(engine, durable=False) as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (2)")
                raise RuntimeError("boom")
        with db.read(engine) as conn:
            assert conn.exec_driver_sql("SELECT x FROM t").scalars().all() == [1]
        # every connection the pool hands out is synchronous=FULL again
        conns = [engine.connect() for _ in range(3)]
        try:
            assert [c.exec_driver_sql("PRAGMA synchronous").scalar() for c in conns] == [2, 2, 2]
        finally:
            for c in conns:
                c.close()
    finally:
        db.dispose()


def test_a_thread_keeps_one_connection_per_file_and_gives_it_back_when_it_ends(tmp_path):
    """A thread reuses its connection between transactions; when the thread ends (a request
    thread of a threaded server), the connection goes back to the pool: a hundred short-lived
    threads never exhaust it."""
    db = Database(tmp_path)
    engine = db.controller
    try:
        with db.write(engine) as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        seen = []

        def request(i):
            with db.write(engine) as w:
                w.exec_driver_sql("INSERT INTO t VALUES (?)", (i,))
                first = w.connection.driver_connection
            with db.read(engine) as r:
                seen.append((first is r.connection.driver_connection,
                             r.exec_driver_sql("SELECT count(*) FROM t").scalar()))

        for i in range(100):
            t = threading.Thread(target=request, args=(i,))
            t.start()
            t.join(30)
            assert not t.is_alive()
        assert seen == [(True, i + 1) for i in range(100)]
        assert engine.pool.checkedout() <= 1  # this thread's own
    finally:
        db.dispose()


def test_a_nested_transaction_on_the_same_file_gets_its_own_connection(tmp_path):
    db = Database(tmp_path)
    engine = db.controller
    try:
        with db.write(engine) as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with db.write(engine) as w:
            w.exec_driver_sql("INSERT INTO t VALUES (1)")
            with db.read(engine) as r:  # its own snapshot: the write is not committed yet
                assert r.connection.driver_connection is not w.connection.driver_connection
                assert r.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        with db.read(engine) as r:
            assert r.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
        assert engine.pool.checkedout() == 1  # one kept, the nested one went back
    finally:
        db.dispose()


def _fdatasync_spy(monkeypatch) -> list[str]:
    synced: list[str] = []
    real = os.fdatasync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return synced


def test_sync_wal_flushes_the_files_wal(tmp_path, monkeypatch):
    """``sync_wal`` (a follower's copy, committed with ``durable=False``) fdatasyncs that file's
    WAL, outside any lock; with ``sync=normal`` nothing is flushed; a WAL already copied into
    the database and removed (every connection closed) is nothing to flush."""
    synced = _fdatasync_spy(monkeypatch)
    db = Database(tmp_path)
    try:
        engine = db.broker(1)
        with db.write(engine, durable=False) as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        db.sync_wal(engine)
        assert synced == [str(db.broker_path(1)) + "-wal"]
        assert not db._locks[engine].locked()
    finally:
        db.dispose()
    assert not os.path.exists(str(db.broker_path(1)) + "-wal")  # the last connection removed it
    db.sync_wal(engine)
    assert len(synced) == 1

    normal = Database(tmp_path / "normal", sync="normal")
    try:
        with normal.write(normal.controller, durable=False) as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        normal.sync_wal(normal.controller)
        assert len(synced) == 1
    finally:
        normal.dispose()
