"""Connections opened together are spread over the gunicorn workers (cli/gunicorn_worker.py).

With plain gthread the first worker to wake accepts every waiting connection, so a client
pool that connects at once is often served by one process (one GIL) while the other idles.
"""
from __future__ import annotations

import os
import socket
import time

from cli.gunicorn_worker import connections_per_worker


def test_connections_opened_together_are_spread_over_the_workers(dlog):
    workers = dlog.wait_workers()
    assert len(workers) == 2
    clients = [socket.create_connection(("127.0.0.1", dlog.port)) for _ in range(8)]
    try:
        request = f"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:{dlog.port}\r\n\r\n".encode()
        for c in clients:
            c.sendall(request)
        for c in clients:  # every connection is answered and stays open (keep-alive)
            c.settimeout(10)
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
        ports = {c.getsockname()[1] for c in clients}
        counts: dict[int, int] = {}
        for _ in range(50):
            counts = connections_per_worker(dlog.pid, dlog.port, ports)
            if sum(counts.values()) == 8:
                break
            time.sleep(0.05)
        assert sum(counts.values()) == 8, counts
        # Least-connections first: 4 and 4 when both workers are idle; allow one stray.
        assert min(counts.values()) >= 3, counts
    finally:
        for c in clients:
            c.close()


def test_a_paused_worker_does_not_hold_new_connections_up(dlog):
    """A sibling with fewer connections that does not accept (SIGSTOP) delays a new
    connection by a few milliseconds at most: the running worker takes it."""
    import signal

    workers = dlog.wait_workers()
    paused = workers[0]
    os.kill(paused, signal.SIGSTOP)
    try:
        started = time.monotonic()
        for _ in range(6):
            with socket.create_connection(("127.0.0.1", dlog.port), timeout=10) as c:
                c.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                c.settimeout(10)
                assert c.recv(4096).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 5.0
    finally:
        os.kill(paused, signal.SIGCONT)


def test_requests_on_one_kept_alive_connection_are_all_answered_in_order(dlog):
    """One after the other (the thread that answered waits for the next request) and two
    pipelined in one write (the second is read ahead with the first): every one answered,
    in order, on the same connection."""
    with socket.create_connection(("127.0.0.1", dlog.port), timeout=10) as c:
        f = c.makefile("rb")

        def response() -> tuple[int, bytes]:
            status = int(f.readline().split()[1])
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            return status, f.read(length)

        for i in range(20):
            c.sendall(f"GET /v3/clusters/nope-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, body = response()
            assert status == 404 and f"nope-{i}".encode() in body
            time.sleep(0.003 if i % 2 else 0)  # now within, now beyond the thread's wait
        c.sendall(b"GET /v3/clusters/first HTTP/1.1\r\nHost: x\r\n\r\nGET /v3/clusters/second HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [b"first" in response()[1], b"second" in response()[1]] == [True, True]
