"""Worker process tuning from ``worker.*`` settings (streams/consumer_tuning.py)."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

from sre_agent.config import WorkerSettings
from sre_agent.streams import consumer_tuning


@pytest.fixture
def gc_thresholds():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_configure_sets_the_gc_young_threshold(gc_thresholds: None) -> None:
    """Python's 700 cost ~10 % of a remote-write worker's CPU (issue 18): the worker
    collects after ``worker.gc_threshold`` net allocations, older generations as before."""
    gc.set_threshold(700, 10, 10)
    app = SimpleNamespace()
    consumer_tuning.configure(app, WorkerSettings(gc_threshold=12_345))
    assert gc.get_threshold() == (12_345, 10, 10)
    assert app.sre_fetch_settings["_fetch_max_wait_ms"] == WorkerSettings().fetch_max_wait_ms


def test_gc_threshold_zero_keeps_pythons(gc_thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    consumer_tuning.configure(SimpleNamespace(), WorkerSettings(gc_threshold=0))
    assert gc.get_threshold() == (700, 10, 10)


def test_default_is_the_measured_one() -> None:
    assert WorkerSettings().gc_threshold == 50_000
