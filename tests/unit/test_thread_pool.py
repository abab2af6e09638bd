"""LazyThreadPool: the small per-process pools (acks=0 appends, parallel steps, markers)."""
from __future__ import annotations

import threading
import time

from service.thread_pool import LazyThreadPool


def test_threads_start_on_first_use_and_shut_down_waits_for_the_work_under_way():
    pool = LazyThreadPool(2, "dlog-test")
    before = {t.name for t in threading.enumerate()}
    assert not any(n.startswith("dlog-test") for n in before)
    done: list[int] = []
    pool.submit(lambda: (time.sleep(0.05), done.append(1)))
    assert any(t.name.startswith("dlog-test") for t in threading.enumerate())
    pool.shut_down()
    assert done == [1]  # the work under way finished first
    assert pool.submit(lambda: 2).result(5) == 2  # started again after a shut-down
    pool.shut_down()
