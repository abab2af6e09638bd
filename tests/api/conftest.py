"""Fixtures of the API tests: URL prefixes and request shortcuts on the Flask test client."""
from __future__ import annotations

import pytest

from tests.api.helpers import V2_EMBEDDED_BINARY, V2_EMBEDDED_JSON, concat


@pytest.fixture
def v3(cluster_id) -> str:
    return f"/v3/clusters/{cluster_id}"


@pytest.fixture
def produce_v3(client, v3):
    """``produce_v3(topic, *records, **query)`` -> the response of a v3 produce."""

    def produce(topic: str, *records: dict, **query):
        return client.post(f"{v3}/topics/{topic}/records", data=concat(*records),
                           content_type="application/json", query_string=query)

    return produce


@pytest.fixture
def produce_v2(client):
    """``produce_v2(topic, records, fmt="json"|"binary", partition=None, **query)``."""

    def produce(topic: str, records: list[dict], fmt: str = "json", partition: int | None = None, **query):
        url = f"/topics/{topic}" if partition is None else f"/topics/{topic}/partitions/{partition}"
        return client.post(url, json={"records": records}, query_string=query,
                           content_type=V2_EMBEDDED_JSON if fmt == "json" else V2_EMBEDDED_BINARY)

    return produce


@pytest.fixture
def read_v2(client):
    """``read_v2(topic, partition, offset=0, fmt="binary", **query)`` -> response of the
    stateless read."""

    def read(topic: str, partition: int, offset: int = 0, fmt: str = "binary", **query):
        accept = V2_EMBEDDED_JSON if fmt == "json" else V2_EMBEDDED_BINARY
        return client.get(f"/topics/{topic}/partitions/{partition}/records",
                          query_string={"offset": offset, **query}, headers={"Accept": accept})

    return read
