"""``dlog bench`` against a real server: small runs, checked for honesty (counts add up)."""
from __future__ import annotations

import json

from cli.bench import percentile


def test_percentile_nearest_rank():
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_bench_creates_produces_reads_and_deletes(dlog):
    result = dlog("bench", "-n", "250", "-s", "64", "-c", "3", "-b", "40", "--acks", "all", "-p", "2", "-r", "1",
                  "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    p = doc["produce"]
    assert p["records"] == 250 and p["failed"] == 0 and p["requests"] == 7  # 6 x 40 + 10
    assert p["records_per_second"] > 0 and 0 < p["latency_ms"]["p50"] <= p["latency_ms"]["p99"] <= p["latency_ms"][
        "max"]
    assert doc["read"]["records"] == 250
    topics = dlog("topic", "list", "--json")
    assert doc["topic"] not in [t["topic_name"] for t in json.loads(topics.stdout)]  # deleted afterwards


def test_bench_existing_topic_text_output(dlog, make_topic, topic_name):
    make_topic(topic_name, 1)
    dlog("produce", topic_name, input="older\n")
    result = dlog("bench", topic_name, "-n", "30", "-b", "7", "-c", "2")
    assert result.exit_code == 0, result.output
    assert "produce: 30 records of 100 B, 5 requests" in result.stdout
    assert "request latency ms  p50" in result.stdout and "records/s" in result.stdout
    assert "read back: 30 records" in result.stdout  # only the range it produced
    assert len(dlog("consume", topic_name, "-e", "--json").stdout.splitlines()) == 31  # the topic is kept


def test_bench_no_read_and_keep(dlog):
    result = dlog("bench", "-n", "5", "--no-read", "--keep", "--json")
    doc = json.loads(result.stdout)
    assert "read" not in doc and doc["produce"]["records"] == 5
    assert dlog("topic", "describe", doc["topic"]).exit_code == 0
    dlog("topic", "delete", doc["topic"])


def test_bench_reports_failures(dlog, topic_name):
    result = dlog("bench", topic_name + "-none", "-n", "5")
    assert result.exit_code == 3 and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr
