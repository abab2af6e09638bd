"""Engines, pragmas and transactions: the only module that opens SQLite connections.

One engine per file per process: ``controller.db`` and ``broker-<id>.db``. Every connection
gets WAL, ``busy_timeout``, ``foreign_keys=ON`` and ``synchronous`` (FULL by default). The
pysqlite driver's own transaction handling is switched off and ``read()``/``write()`` issue
the statements themselves: plain ``BEGIN`` (a consistent read snapshot) for ``read()`` and
``BEGIN IMMEDIATE`` for ``write()``, so that a writer takes the file's write lock before it
reads the state it is about to check.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

logger = logging.getLogger(__name__)

CONTROLLER_FILE = "controller.db"


def broker_file(broker_id: int) -> str:
    if not isinstance(broker_id, int) or broker_id < 0:
        raise ValueError(f"invalid broker id {broker_id!r}")
    return f"broker-{broker_id}.db"


def make_engine(path: str | os.PathLike, *, sync: str = "full", busy_timeout_ms: int = 30000) -> Engine:
    """An engine on one SQLite file with dlog's pragmas and explicit BEGIN handling."""
    if sync not in ("full", "normal"):
        raise ValueError("sync must be 'full' or 'normal'")
    engine = create_engine(
        f"sqlite:///{Path(path)}",
        poolclass=QueuePool,
        pool_size=8,
        max_overflow=56,  # threads keep a connection each between transactions (Database._connection)
        # Every transaction here ends in an explicit COMMIT or ROLLBACK, so the pool's own
        # rollback on return would only cost a round trip.
        pool_reset_on_return=None,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000.0},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every test
        # Take transactions out of the driver's hands; SQLAlchemy's begin event emits them.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):  # pragma: no cover - exercised by every test
        # Inside Database.read/write the transaction is already open (they BEGIN on the
        # driver connection): SQLAlchemy's own begin, on a first Core statement, joins it.
        if not conn.connection.driver_connection.in_transaction:
            conn.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def _transaction(conn: Connection, begin: str) -> Iterator[None]:
    """BEGIN ... COMMIT (ROLLBACK on an exception) on ``conn``'s driver connection.

    Issued directly rather than through SQLAlchemy's ``Connection.begin()``, whose events and
    transaction objects cost more than a short transaction's own work (measured here: a
    one-statement read transaction 37 -> 19 us, a write transaction 47 -> 24 us). A Core statement inside still works: SQLAlchemy's
    autobegin joins the open transaction (see ``_on_begin``) and its rollback at close is a
    no-op once COMMIT ran.
    """
    raw = conn.connection.driver_connection
    raw.execute(begin)
    try:
        yield
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    try:
        raw.execute("COMMIT")
    except BaseException:
        # Never hand a connection back to the pool with its transaction still open.
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise


class _ThreadConnections:
    """The connections one thread keeps between its transactions, one per engine; they go
    back to their pools when the thread ends (its thread-local storage is dropped) or at
    ``Database.dispose``."""

    __slots__ = ("connections", "__weakref__")

    def __init__(self) -> None:
        self.connections: dict[Engine, Connection] = {}
        weakref.finalize(self, _close_all, self.connections)

    def close(self) -> None:
        _close_all(self.connections)


def _close_all(connections: dict) -> None:
    while connections:
        _engine, conn = connections.popitem()
        try:
            conn.close()
        except Exception:  # pragma: no cover - a connection that cannot close is dropped anyway
            logger.debug("closing a kept connection failed", exc_info=True)


class Database:
    """The engines of one data directory, created lazily, one per file, per process.

    Writes to one file from the threads of one process are serialised by a process-local lock
    before ``BEGIN IMMEDIATE``: correctness comes from SQLite's lock, the local lock only keeps
    threads from sleeping in SQLite's busy handler. Across processes SQLite's lock decides.
    """

    def __init__(self, data_dir: str | os.PathLike, *, sync: str = "full", busy_timeout_ms: int = 30000) -> None:
        self.data_dir = Path(data_dir)
        self.sync = sync
        self.busy_timeout_ms = busy_timeout_ms
        self._engines: dict[str, Engine] = {}
        self._locks: dict[Engine, threading.Lock] = {}
        self._guard = threading.Lock()
        self._local = threading.local()
        self._lock_fds: dict[Engine, int] = {}
        self._holders: weakref.WeakSet = weakref.WeakSet()  # the connections threads keep (_connection)

    def _engine(self, filename: str) -> Engine:
        engine = self._engines.get(filename)
        if engine is None:
            with self._guard:
                engine = self._engines.get(filename)
                if engine is None:
                    self.data_dir.mkdir(parents=True, exist_ok=True)
                    engine = make_engine(self.data_dir / filename, sync=self.sync,
                                         busy_timeout_ms=self.busy_timeout_ms)
                    self._locks[engine] = threading.Lock()
                    self._engines[filename] = engine
        return engine

    @property
    def controller(self) -> Engine:
        return self._engine(CONTROLLER_FILE)

    def broker(self, broker_id: int) -> Engine:
        return self._engine(broker_file(broker_id))

    def broker_path(self, broker_id: int) -> Path:
        return self.data_dir / broker_file(broker_id)

    @property
    def controller_path(self) -> Path:
        return self.data_dir / CONTROLLER_FILE

    @contextmanager
    def write(self, engine: Engine, durable: bool = True) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... COMMIT) on one file.

        Everything read inside it is current and stays so until COMMIT: checks that guard a
        write belong inside. An exception rolls the whole transaction back.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for this
        transaction only): still atomic, and durable with the file's next synchronous commit
        or ``sync_wal`` (WAL frames are written in order), but a power loss may undo it. For
        state that is recomputed after such a loss, such as a leader's record of its
        followers' positions and the high watermark (Kafka checkpoints those lazily too), or
        the Complete state of a transaction whose Prepare state recovery completes again; and
        for a follower's copy of records, which ``sync_wal`` makes durable once the lock is
        released and before the leader may count them (``ReplicaFetcher``).
        """
        lock = self._locks[engine]
        with lock, self._file_lock(engine), self._connection(engine) as conn:
            relaxed = not durable and self.sync == "full"
            raw = conn.connection.driver_connection
            if relaxed:
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with _transaction(conn, "BEGIN IMMEDIATE"):
                    yield conn
            finally:
                if relaxed:
                    raw.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _connection(self, engine: Engine) -> Iterator[Connection]:
        """A connection to ``engine`` for one transaction of this thread.

        Each thread keeps one connection per file between its transactions: checking one out of
        the pool and back in for every transaction cost about a tenth of the CPU of a
        replicated produce (py-spy, single-record acks=all). A nested transaction on the same
        file (rare) gets a pooled connection of its own. A connection whose transaction ended
        in an exception is closed rather than kept, so a broken one is never reused.
        """
        holder = getattr(self._local, "connections", None)
        if holder is None:
            holder = self._local.connections = _ThreadConnections()
            with self._guard:
                self._holders.add(holder)
        cached = holder.connections
        conn = cached.pop(engine, None)
        if conn is None:
            conn = engine.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.in_transaction():
            # A Core statement inside autobegan SQLAlchemy's transaction object; the COMMIT
            # already ran on the driver, so this only ends the object (as close() would).
            conn.rollback()
        if engine in cached or engine not in self._locks:
            conn.close()  # nested, or the engine was disposed meanwhile
        else:
            cached[engine] = conn

    def sync_wal(self, engine: Engine) -> None:
        """Make every transaction committed to ``engine`` so far durable: ``fdatasync`` of its
        WAL, outside any lock (a no-op with ``sync=normal``).

        For a ``durable=False`` write whose fsync should not hold the file's write lock while
        the other writers of the file wait: the caller syncs after the transaction, before
        anything may depend on it being on disk. The WAL is written in order, so this also
        covers every earlier commit to the file, and syncs of one file from several threads
        or processes at once share the disk's flush. The WAL is opened for each call: a
        descriptor kept open could outlive the file (SQLite removes the WAL when the file's
        last connection closes, after copying it into the database and syncing that).
        """
        if self.sync != "full":
            return
        try:
            fd = os.open(f"{engine.url.database}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # checkpointed into the database file and synced, then removed
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def _file_lock(self, engine: Engine) -> Iterator[None]:
        """An exclusive ``flock`` on ``<file>.lock`` around a write transaction.

        Writers of other processes then queue in the kernel and wake the moment the lock is
        free, instead of sleeping in SQLite's busy handler (1, 2, 5, 10 ... ms backoffs, the
        p99 of contended appends). Correctness still rests on BEGIN IMMEDIATE; the kernel
        drops the lock of a killed process.
        """
        fd = self._lock_fds.get(engine)
        if fd is None:
            with self._guard:
                fd = self._lock_fds.get(engine)
                if fd is None:
                    fd = os.open(f"{engine.url.database}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                    self._lock_fds[engine] = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def read(self, engine: Engine) -> Iterator[Connection]:
        """One read transaction: every SELECT inside it sees the same snapshot."""
        with self._connection(engine) as conn, _transaction(conn, "BEGIN"):
            yield conn

    def data_version(self, engine: Engine) -> int:
        """SQLite's ``PRAGMA data_version`` of the file, seen from a connection kept for it.

        It changes whenever any other connection commits to the file, so a cache over the file
        stays valid while it is unchanged; the check costs microseconds, not a transaction.
        """
        return self._probe(engine).execute("PRAGMA data_version").fetchone()[0]

    def query_one(self, engine: Engine, sql: str, params: tuple = ()) -> tuple | None:
        """The first row of one prepared read statement (from ``driver_sql``), run alone.

        A single statement is its own read transaction in SQLite, so this needs no BEGIN,
        no pool checkout and no SQLAlchemy result: hot polls (a waiting produce reading the
        high watermark) cost a few microseconds instead of a transaction.
        """
        return self._probe(engine).execute(sql, params).fetchone()

    def _probe(self, engine: Engine) -> sqlite3.Connection:
        probes = getattr(self._local, "probes", None)
        if probes is None:
            probes = self._local.probes = {}
        connection = probes.get(engine)
        if connection is None:
            # One probe connection per thread and file, outside the pool: no lock, no waiting on
            # other threads, and it closes when its thread ends. Autocommit: every statement
            # is its own (read) transaction.
            connection = probes[engine] = sqlite3.connect(engine.url.database, check_same_thread=False,
                                                          isolation_level=None,
                                                          timeout=self.busy_timeout_ms / 1000.0)
        return connection

    def dispose(self) -> None:
        with self._guard:
            self._local = threading.local()  # this thread's probes close when collected
            for holder in list(self._holders):
                holder.close()
            for fd in self._lock_fds.values():
                os.close(fd)
            self._lock_fds.clear()
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
            self._locks.clear()


def upgrade(db: Database, broker_ids: list[int]) -> None:
    """Create or upgrade the controller file and every broker file to the newest schema."""
    from service import migrate  # local: alembic is only needed when upgrading

    migrate.upgrade_engine(db.controller, "controller")
    for broker_id in broker_ids:
        migrate.upgrade_engine(db.broker(broker_id), "broker")


_SQLITE_DIALECT = None


def run(conn: Connection, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
    """Run one prepared statement (from ``driver_sql``) on ``conn``'s driver connection,
    inside ``conn``'s transaction, and return the driver's cursor (rows are plain tuples).

    For the hottest statements (appends, replication, producer state): it skips SQLAlchemy's
    execution context and result objects, which cost more than SQLite's own work here.
    """
    return conn.connection.driver_connection.execute(sql, params)


def run_many(conn: Connection, sql: str, rows: list) -> sqlite3.Cursor:
    """``executemany`` of one prepared statement inside ``conn``'s transaction (see ``run``)."""
    return conn.connection.driver_connection.executemany(sql, rows)


def driver_sql(stmt) -> tuple[str, tuple[str, ...]]:
    """Compile a Core statement once to the driver's SQL text and its parameter order.

    Hot paths (record appends and reads) run the text with ``Connection.exec_driver_sql`` and
    tuples, which costs a tenth of executing Core per call; the SQL still comes from
    ``service.schema``, never from strings.
    """
    global _SQLITE_DIALECT
    if _SQLITE_DIALECT is None:
        from sqlalchemy.dialects import sqlite

        _SQLITE_DIALECT = sqlite.dialect(paramstyle="qmark")
    compiled = stmt.compile(dialect=_SQLITE_DIALECT)
    return str(compiled), tuple(compiled.positiontup or ())
