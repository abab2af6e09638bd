"""The e2e oracle ``check_log`` finds every kind of violation it claims to (reliability.md:
"test the checker"). No processes: a fake service serves hand-made partitions."""
from __future__ import annotations

import json

from .conftest import b64, check_log


class FakeService:
    """Serves ``logs`` (partition -> list of (offset, value)) with a high watermark."""

    def __init__(self, logs: dict[int, list[tuple[int, str]]], hw: dict[int, int] | None = None) -> None:
        self.logs = logs
        self.hw = hw or {}

    def wait_high_watermark(self, topic, p, timeout=0):
        leo = (self.logs[p][-1][0] + 1) if self.logs[p] else 0
        return {"log_start_offset": 0, "log_end_offset": leo, "high_watermark": self.hw.get(p, leo)}

    def read_partition(self, topic, p, start=0, end=None):
        return [{"offset": o, "value": b64(json.dumps(v))} for o, v in self.logs[p] if start <= o < end]


def _history(acked=None, unknown=(), failed=(), refused=()):
    return {"acked": acked or {}, "unknown": list(unknown), "failed": {v: {} for v in failed},
            "refused": list(refused)}


def test_clean_history_passes():
    fake = FakeService({0: [(0, "a"), (1, "b"), (2, "u")], 1: [(0, "c")]})
    summary = check_log(fake, "t", [0, 1], [_history({"a": (0, 0), "b": (0, 1), "c": (1, 0)}, unknown=["u", "v"])])
    assert summary["problems"] == {}
    assert (summary["acked"], summary["unknown"], summary["unknown_stored"], summary["stored"]) == (3, 2, 1, 4)


def test_every_violation_is_found():
    fake = FakeService({0: [(0, "a"), (1, "x"), (3, "b"), (4, "b"), (5, "f"), (6, "r"), (7, "m")]}, hw={0: 7})
    history = _history({"a": (0, 0), "b": (0, 3), "lost": (0, 2), "m": (0, 9), "a2": (0, 0)},
                       failed=["f"], refused=["r"])
    problems = check_log(fake, "t", [0], [history])["problems"]
    assert set(problems) == {"not_dense", "hw_below_leo", "lost", "moved", "offset_shared", "duplicated",
                             "phantom", "failed_but_stored"}
    assert problems["phantom"] == [("x", [(0, 1)])]
    assert problems["duplicated"] == [("b", [(0, 3), (0, 4)])]
    assert {v for v, _ in problems["failed_but_stored"]} == {"f", "r"}
    assert problems["moved"] == [("m", (0, 9), [(0, 7)])]
    assert [v for v, _ in problems["lost"]] == ["lost", "a2"]
