"""Kafka's default partitioner on the client side (``--idempotent`` and ``--transactional-id``
must name each record's partition, since sequences count per partition).

Keyed records go where a Java producer would put them: ``toPositive(murmur2(key)) %
partitions``, the same function dlog applies to keyed records sent without a partition
(``service.partitioner``: a pure function, no server state, so the CLI shares it). Records without
a key stick to one partition per batch, the next batch taking the next partition (Kafka's
sticky partitioner, KIP-480).
"""
from __future__ import annotations

import random

from service.partitioner import murmur2, partition_for_key  # noqa: F401 (murmur2 is re-exported)


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
