"""What ``dlog serve`` sets up in each gunicorn worker process (``DlogApplication.load``)."""
from __future__ import annotations

import gc
import sys

import pytest

from cli.gunicorn_app import DlogApplication
from service.config import Config


def test_a_worker_runs_with_the_configured_switch_interval(tmp_path):
    before, thresholds = sys.getswitchinterval(), gc.get_threshold()
    app = None
    try:
        app = DlogApplication(Config(data_dir=str(tmp_path / "data"), gil_switch_interval_ms=2.5)).load()
        assert sys.getswitchinterval() == pytest.approx(0.0025)
        assert app.extensions["dlog"].ready
    finally:
        sys.setswitchinterval(before)
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        if app is not None:
            app.extensions["dlog"].shut_down()


def test_the_switch_interval_setting_is_read_and_checked():
    assert Config.from_env({}).gil_switch_interval_ms == 1.0
    assert Config.from_env({"DLOG_GIL_SWITCH_INTERVAL_MS": "0.5"}).gil_switch_interval_ms == 0.5
    for bad in ("0", "-1", "fast", "nan", "inf"):
        with pytest.raises(ValueError, match="DLOG_GIL_SWITCH_INTERVAL_MS"):
            Config.from_env({"DLOG_GIL_SWITCH_INTERVAL_MS": bad})
