"""Liveness, readiness (only after start-up) and the OpenAPI document."""
from __future__ import annotations

import re

from service.api import create_app
from service.server import DlogServer


def test_live(client):
    r = client.get("/health/live")
    assert r.status_code == 200 and r.get_json() == {"status": "live"}


def test_ready(client, cluster_id):
    r = client.get("/health/ready")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "ready" and body["cluster_id"] == cluster_id
    assert body["brokers"] == {"0": "online", "1": "online", "2": "online"}


def test_not_ready_until_start_up_finished(config, clock):
    s = DlogServer(config, clock)
    try:
        client = create_app(server=s).test_client()
        r = client.get("/health/ready")
        assert r.status_code == 503 and r.get_json()["status"] == "starting"
        assert client.get("/health/live").status_code == 200
        s.start_up(background=False)
        assert client.get("/health/ready").status_code == 200
    finally:
        s.shut_down()


def test_openapi_lists_every_route(app, client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    missing = []
    count = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            count += 1
            if method.lower() not in paths.get(path, {}):
                missing.append((method, path))
    assert missing == []
    assert count >= 35  # every family: health, v3 admin, v3 produce, v2
    assert sum(len(ops) for ops in paths.values()) == count
    for must in ("/v3/clusters/{cid}/topics/{topic_name}/records", "/topics/{topic_name}",
                 "/topics/{topic_name}/partitions/{partition_id}/records", "/health/ready"):
        assert must in paths
    op = paths["/v3/clusters/{cid}/topics/{topic_name}/records"]["post"]
    assert op["summary"] and {"404", "415", "422"} <= set(op["responses"])
