"""The worker thread that answered a kept-alive connection waits a moment for its next
request (cli/gunicorn_worker.py ``_next_request_soon``), unless it is needed elsewhere."""
from __future__ import annotations

import io
import queue
import socket
import time
from types import SimpleNamespace

import pytest

from cli.gunicorn_worker import KEEP_SERVING_S, MAX_WORKERS, BalancedThreadWorker, _conns


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def _worker(threads=4, conns=1, queued=0, alive=True, slot=None):
    worker = BalancedThreadWorker.__new__(BalancedThreadWorker)  # no gunicorn set-up needed
    worker._slot = slot
    work = queue.SimpleQueue()
    for _ in range(queued):
        work.put(object())
    worker.alive, worker.nr_conns = alive, conns
    worker.cfg = SimpleNamespace(threads=threads)
    worker.tpool = SimpleNamespace(_work_queue=work)
    return worker


def _conn(sock, buffered=b""):
    return SimpleNamespace(sock=sock, is_http2=False, parser=SimpleNamespace(unreader=SimpleNamespace(
        buf=io.BytesIO(buffered))))


def test_the_next_request_arriving_within_the_wait_is_served_by_the_same_thread(pair):
    server, client = pair
    client.sendall(b"GET /health/live HTTP/1.1\r\n")
    assert _worker()._next_request_soon(_conn(server)) is True


def test_a_request_already_read_ahead_is_served_without_waiting(pair):
    server, _client = pair
    started = time.monotonic()
    assert _worker()._next_request_soon(_conn(server, b"GET / HTTP/1.1\r\n")) is True
    assert time.monotonic() - started < KEEP_SERVING_S


def test_a_quiet_connection_goes_back_to_the_event_loop_after_the_wait(pair):
    server, _client = pair
    started = time.monotonic()
    assert _worker()._next_request_soon(_conn(server)) is False
    assert KEEP_SERVING_S <= time.monotonic() - started < 1.0


@pytest.mark.parametrize("worker", [
    _worker(queued=1),  # a request of another connection waits for a thread
    _worker(threads=4, conns=5),  # more connections than threads: none keeps a thread
    _worker(alive=False),  # stopping
], ids=["another-request-waits", "more-connections-than-threads", "stopping"])
def test_the_thread_does_not_wait_when_it_is_needed_elsewhere(pair, worker):
    server, client = pair
    client.sendall(b"GET /health/live HTTP/1.1\r\n")
    assert worker._next_request_soon(_conn(server)) is False


def test_connections_idle_in_keep_alive_do_not_count_against_the_threads(pair):
    """The count the worker publishes (busy connections) decides, not every open one."""
    server, client = pair
    slot = MAX_WORKERS - 1
    worker = _worker(threads=4, conns=9, slot=slot)
    try:
        _conns[slot] = 4  # five of the nine are long idle
        client.sendall(b"GET /health/live HTTP/1.1\r\n")
        assert worker._next_request_soon(_conn(server)) is True
        _conns[slot] = 5
        assert worker._next_request_soon(_conn(server)) is False
    finally:
        _conns[slot] = 0


def test_a_request_of_another_connection_ends_the_wait(pair):
    """Queued while the thread waits: it gives the thread back within one slice."""
    import threading

    server, _client = pair
    worker = _worker()
    threading.Timer(0.0005, worker.tpool._work_queue.put, (object(),)).start()
    assert worker._next_request_soon(_conn(server)) is False
