"""GET /metrics under ``dlog serve``: every worker's requests are counted, whichever worker
answers the scrape (prometheus-client's multiprocess mode, set up by the command)."""
from __future__ import annotations

import socket

import requests
from prometheus_client.parser import text_string_to_metric_families


def _live_requests(url: str) -> float:
    r = requests.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "dlog_http_requests_total" and s.labels.get("endpoint") == "/health/live":
                return s.value
    return 0.0


def test_a_scrape_counts_the_requests_of_every_worker(dlog):
    assert len(dlog.wait_workers()) == 2
    # Eight connections opened together are spread over both workers (cli/gunicorn_worker.py).
    clients = [socket.create_connection(("127.0.0.1", dlog.port)) for _ in range(8)]
    try:
        for c in clients:
            c.sendall(f"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:{dlog.port}\r\n\r\n".encode())
        for c in clients:
            c.settimeout(10)
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for c in clients:
            c.close()
    # Each scrape is a new connection, answered by either worker: all of them see the eight.
    assert [_live_requests(dlog.url) for _ in range(6)] == [8.0] * 6
    assert sorted(p.name.split("_")[0] for p in (dlog.data_dir / ".prometheus").iterdir()) == \
        ["counter", "counter", "histogram", "histogram"]  # one of each per worker


def test_a_killed_runs_request_counts_do_not_reach_the_next_run(dlog):
    for _ in range(3):
        assert requests.get(f"{dlog.url}/health/live", timeout=10).status_code == 200
    assert _live_requests(dlog.url) == 3.0
    dlog.kill9()  # leaves its metrics files behind
    dlog.start()
    assert _live_requests(dlog.url) == 0.0
