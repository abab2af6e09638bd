"""Kafka's default partitioner: murmur2 of the key, made positive, modulo the partitions."""
from __future__ import annotations

import pytest

from service.partitioner import murmur2, partition_for_key

# Kafka's UtilsTest.testMurmur2 vectors.
VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize("data,expected", VECTORS)
def test_murmur2_matches_kafka(data, expected):
    assert murmur2(data) == expected


def test_murmur2_is_a_signed_32_bit_int():
    for data in (b"", b"\xff" * 7, bytes(range(256))):
        assert -(2**31) <= murmur2(data) < 2**31


@pytest.mark.parametrize("data,expected", VECTORS)
def test_partition_for_key_is_kafkas_to_positive_modulo(data, expected):
    for n in (1, 3, 7, 100):
        assert partition_for_key(data, n) == (expected & 0x7FFFFFFF) % n


def test_keyed_routing_is_stable_and_spread():
    keys = [f"user-{i}".encode() for i in range(1000)]
    first = [partition_for_key(k, 6) for k in keys]
    assert first == [partition_for_key(k, 6) for k in keys]
    counts = [first.count(p) for p in range(6)]
    assert min(counts) > 100  # every partition gets a fair share
