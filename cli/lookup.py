"""Offsets for timestamps (Kafka's ``offsetsForTimes``) through the REST API.

dlog has no stateless offset-for-timestamp endpoint, but a v2 consumer instance can seek by
timestamp. ``TimestampLookup`` creates a throwaway instance in a private group
(``dlog-cli-lookup-<random>``, auto-commit off), assigns it the partitions by hand, and for
each timestamp: ``POST .../positions {"timestamps": [...]}``, commits the positions
(``POST .../offsets`` without a body) and reads them back from
``GET /v3/clusters/{cid}/consumer-groups/{g}/offsets``. On close it deletes the instance and
the group, so nothing is left behind. The offset found is the first record at or after the
timestamp, or the high watermark when there is none (as Kafka's ListOffsets).
"""
from __future__ import annotations

import uuid
from typing import Iterable

from cli.http import JSON, Client, DlogHTTPError, seg

V2_JSON = "application/vnd.kafka.v2+json"


class TimestampLookup:
    def __init__(self, client: Client, topic: str, partitions: Iterable[int]) -> None:
        self.client = client
        self.topic = topic
        self.partitions = sorted(set(partitions))
        self.group = f"dlog-cli-lookup-{uuid.uuid4().hex[:16]}"
        self.base: str | None = None

    def __enter__(self) -> "TimestampLookup":
        answer = self.client.post(f"/consumers/{seg(self.group)}",
                                  {"format": "binary", "auto.commit.enable": "false"},
                                  headers={"Content-Type": V2_JSON})
        self.base = f"/consumers/{seg(self.group)}/instances/{seg(answer['instance_id'])}"
        try:
            self.client.post(f"{self.base}/assignments",
                             {"partitions": [{"topic": self.topic, "partition": p} for p in self.partitions]})
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def offsets(self, timestamp_ms: int) -> dict[int, int]:
        """partition -> the first offset whose record's timestamp is >= ``timestamp_ms``."""
        assert self.base is not None, "use TimestampLookup as a context manager"
        self.client.post(f"{self.base}/positions", {"timestamps": [
            {"topic": self.topic, "partition": p, "timestamp": timestamp_ms} for p in self.partitions]})
        self.client.request("POST", f"{self.base}/offsets", headers={"Content-Type": JSON})
        committed = self.client.get(self.client.v3(f"/consumer-groups/{seg(self.group)}/offsets"))["data"]
        found = {o["partition_id"]: o["offset"] for o in committed if o["topic_name"] == self.topic}
        missing = [p for p in self.partitions if p not in found]
        if missing:
            raise DlogHTTPError(f"The timestamp lookup found no offset for {self.topic} partitions {missing}.")
        return {p: found[p] for p in self.partitions}

    def close(self) -> None:
        """Delete the instance and the private group; errors are ignored (an instance left
        behind expires after consumer.instance.timeout.ms)."""
        if self.base is not None:
            for call in (lambda: self.client.delete(self.base),
                         lambda: self.client.delete(self.client.v3(f"/consumer-groups/{seg(self.group)}"))):
                try:
                    call()
                except DlogHTTPError:
                    pass
            self.base = None


def offsets_for_times(client: Client, topic: str, partitions: Iterable[int],
                      timestamps: Iterable[int]) -> dict[int, dict[int, int]]:
    """timestamp -> partition -> offset, for every timestamp given, with one lookup instance."""
    wanted = sorted(set(timestamps))
    if not wanted:
        return {}
    with TimestampLookup(client, topic, partitions) as lookup:
        return {ts: lookup.offsets(ts) for ts in wanted}
