"""Kafka's default partitioner on the client side (``--idempotent`` and ``--transactional-id``
must name each record's partition, since sequences count per partition).

Keyed records go where a Java producer would put them: ``toPositive(murmur2(key)) %
partitions``, the same function dlog applies to keyed records sent without a partition
(``service.partitioner``; copied because the CLI never imports the server). Records without
a key stick to one partition per batch, the next batch taking the next partition (Kafka's
sticky partitioner, KIP-480).
"""
from __future__ import annotations

import random


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: a signed 32-bit hash of ``data`` (seed 0x9747b28c)."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = length % 4
    index = length & ~3
    if extra == 3:
        h ^= data[index + 2] << 16
    if extra >= 2:
        h ^= data[index + 1] << 8
    if extra >= 1:
        h ^= data[index]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class StickyPartitioner:
    """Explicit partition, else the key's murmur2 partition, else one partition per batch."""

    def __init__(self, partitions: int, explicit: int | None = None) -> None:
        self.partitions = partitions
        self.explicit = explicit
        self._sticky = random.randrange(partitions)

    def next_batch(self) -> None:
        """Unkeyed records of the next batch go to the next partition."""
        self._sticky = (self._sticky + 1) % self.partitions

    def partition(self, key: bytes | None) -> int:
        if self.explicit is not None:
            return self.explicit
        if key is not None:
            return partition_for_key(key, self.partitions)
        return self._sticky
