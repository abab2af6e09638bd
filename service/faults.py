"""Named crash points for fault-injection tests (the reliability harness).

``DLOG_CRASH_POINTS`` holds a comma-separated list of point names; when the code reaches one
of them the process ends at once with ``os._exit`` (no cleanup, no reply), which is what a
kill -9 at that instant would do. Unset (the normal case), ``crash_point`` costs one set
lookup. Each point is named after the step it follows, e.g. ``produce.after_append``.
"""
from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

ENV = "DLOG_CRASH_POINTS"
_POINTS = frozenset(p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip())

# Every point the code knows, so tests can check they exist.
KNOWN_POINTS = {
    "produce.after_append": "the leader's append committed; the produce has not answered",
    "txn.after_prepare": "EndTxn's PrepareCommit/PrepareAbort is durable in controller.db; no marker written",
    "txn.after_marker": "one partition's COMMIT/ABORT marker is written; the others may not be",
    "txn.before_complete": "every marker is written; CompleteCommit/CompleteAbort is not",
    "txn.after_complete": "the transaction is complete in controller.db; EndTxn has not answered",
}


def crash_point(name: str) -> None:
    if name in _POINTS:
        logger.error("crash point %s reached: exiting now (%s)", name, ENV)
        os._exit(137)
