"""A gthread worker that leaves a new connection to a less busy sibling.

gunicorn's workers share one listening socket, and the first worker to wake accepts
whatever is waiting: clients that connect together (a pool of keep-alive connections, a
benchmark) often all land in one worker, whose threads and GIL then serve every request
while the other worker idles. Throughput then depends on luck (measured here: the same
4-connection load ran at 7,200 and 13,700 records/s in two rounds).

This worker publishes its count of busy connections (open ones, less those idle in
keep-alive for over ``IDLE_S``) in a table shared by the workers (created by the master
before it forks them). When a connection is waiting and another live worker
has fewer, it steps aside for a moment so that worker takes it; after ``DEFER_LIMIT_S`` it
accepts anyway, so a paused or stuck sibling never holds a client up for long. A hint only:
correctness never depends on it.

A thread that answered a request on a kept-alive connection waits up to ``KEEP_SERVING_S``
on that connection for the client's next request and serves it itself, as long as the worker
has no more busy connections than threads and no request of another connection is waiting
for a thread (looked at every ``_KEEP_SERVING_SLICE_S``). Otherwise gunicorn hands the
connection back to its event loop, whose thread must wake and win the GIL to see the next
request and pass it to the pool, whose thread must wake and win the GIL again, while the
other threads of a busy worker hold it (4 producers of 100-record batches, fresh servers in
alternation, 5 pairs: +2 % idempotent and +4 % transactional records/s; without the limit,
32 single-record connections on 4 threads per worker lost 4 %).

It also tells the master it is alive once a second, and looks for a changed parent twice a
second, instead of on every turn of the event loop (about once per request under load).
"""
from __future__ import annotations

import multiprocessing
import os
import select
import time

from gunicorn.workers.gthread import ThreadWorker

MAX_WORKERS = 64
DEFER_LIMIT_S = 0.02  # the longest a waiting connection is left to a sibling (> the GIL switch interval)
_DEFER_PAUSE_S = 0.0002
IDLE_S = 0.5  # a kept-alive connection unused this long does not count as load
KEEP_SERVING_S = 0.002  # how long a thread waits on its kept-alive connection for the next request
_KEEP_SERVING_SLICE_S = 0.001  # poll() counts whole milliseconds
# gunicorn's event loop tells the master it is alive (a utime syscall) and checks its parent
# on every turn, i.e. about once per request under load; once a second and twice a second do
# (the master's worker timeout is 30 s by default).
NOTIFY_EVERY_S = 1.0
PARENT_CHECK_EVERY_S = 0.5

# Created at import, which happens in the master (gunicorn resolves worker_class before it
# forks), so every worker shares them.
_pids = multiprocessing.RawArray("q", MAX_WORKERS)
_conns = multiprocessing.RawArray("q", MAX_WORKERS)
_claim_lock = multiprocessing.Lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_slot(pid: int) -> int | None:
    """A free slot (never used, or left by a dead worker) for this worker, or None if full."""
    locked = _claim_lock.acquire(timeout=1.0)  # a worker killed while holding it must not block us
    try:
        for i in range(MAX_WORKERS):
            if _pids[i] == 0 or not _alive(_pids[i]):
                _pids[i], _conns[i] = pid, 0
                return i
        return None
    finally:
        if locked:
            _claim_lock.release()


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's ThreadWorker, accepting new connections least-connections first."""

    _notified = float("-inf")  # when the master was last told this worker is alive
    _parent_checked = float("-inf")

    def init_process(self) -> None:
        self._slot = _claim_slot(os.getpid())
        self._deferring_since = 0.0
        super().init_process()

    def notify(self) -> None:
        now = time.monotonic()
        if now - self._notified >= NOTIFY_EVERY_S:
            self._notified = now
            super().notify()

    def is_parent_alive(self) -> bool:
        now = time.monotonic()
        if now - self._parent_checked < PARENT_CHECK_EVERY_S:
            return True
        self._parent_checked = now
        return super().is_parent_alive()

    def _busy_connections(self) -> int:
        """Open connections, less those idle in keep-alive for over ``IDLE_S``: a client's
        forgotten connection should not count as load."""
        idle_before = time.monotonic() + self.cfg.keepalive - IDLE_S  # conn.timeout = last use + keepalive
        idle = 0
        for conn in self.keepalived_conns:  # oldest first
            if conn.timeout >= idle_before:
                break
            idle += 1
        return self.nr_conns - idle

    def _publish(self) -> None:
        if self._slot is not None:
            _conns[self._slot] = self._busy_connections()

    def _a_sibling_has_fewer(self) -> bool:
        if self._slot is None:
            return False
        mine = self._busy_connections()
        for i in range(MAX_WORKERS):
            pid = _pids[i]
            if i != self._slot and pid and _conns[i] < mine and _alive(pid):
                return True
        return False

    def accept(self, listener) -> None:
        if self._a_sibling_has_fewer():
            now = time.monotonic()
            if not self._deferring_since:
                self._deferring_since = now
            if now - self._deferring_since < DEFER_LIMIT_S:
                time.sleep(_DEFER_PAUSE_S)  # the socket stays readable: a sibling may take it
                return
        self._deferring_since = 0.0
        super().accept(listener)
        self._publish()

    def handle(self, conn):
        """gunicorn's ``handle`` (one request), then the same connection's next requests in
        this thread while ``_next_request_soon``."""
        result = super().handle(conn)
        while result is True and self._next_request_soon(conn):
            result = super().handle(conn)
        return result

    def _next_request_soon(self, conn) -> bool:
        """Whether the connection's next request came (or is read ahead already) within
        ``KEEP_SERVING_S``, while this thread is not needed for another connection."""
        if not self.alive or conn.is_http2 or self._more_connections_than_threads() or self._requests_waiting():
            return False
        if conn.parser.unreader.buf.getvalue():
            return True  # read ahead with the last request
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        deadline = time.monotonic() + KEEP_SERVING_S
        while (left := deadline - time.monotonic()) > 0:
            if poller.poll(min(left, _KEEP_SERVING_SLICE_S) * 1000.0):
                return True  # a request, or the client closed: handle() sees which
            if self._requests_waiting():
                return False
        return False

    def _more_connections_than_threads(self) -> bool:
        """Busy connections (as published: long-idle kept-alive ones do not count) > threads."""
        busy = _conns[self._slot] if self._slot is not None else self.nr_conns
        return busy > self.cfg.threads

    def _requests_waiting(self) -> bool:
        """A request of another connection queued for a thread of the pool."""
        queue = getattr(self.tpool, "_work_queue", None)
        return queue is not None and queue.qsize() > 0

    def wait_for_and_dispatch_events(self, timeout) -> None:
        super().wait_for_and_dispatch_events(timeout)
        self._publish()  # connections closed or kept alive meanwhile


def connections_per_worker(master_pid: int, port: int, client_ports: set[int] | None = None) -> dict[int, int]:
    """Established connections to ``port`` held by each worker of the gunicorn master
    ``master_pid`` (only those from ``client_ports`` if given), read from /proc (Linux):
    how a benchmark or a test sees where its connections landed."""
    try:
        with open(f"/proc/{master_pid}/task/{master_pid}/children") as f:
            workers = [int(x) for x in f.read().split()]
    except OSError:
        return {}
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
            if local == port and fields[3] == "01" and (client_ports is None or remote in client_ports):
                inodes.add(fields[9])  # "01": ESTABLISHED
    counts = {}
    for pid in workers:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                n += target.startswith("socket:[") and target[8:-1] in inodes
        except OSError:
            continue
        counts[pid] = n
    return counts
