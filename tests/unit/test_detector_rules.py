"""A River detector per metric family, picked in the configuration (issue 13 item 5)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sre_agent.config import AnomalySettings
from sre_agent.models.river_detectors import Calibrated, CalibratedTail, make_detector
from sre_agent.processors.detect import MetricDetector
from sre_agent.schemas import MetricBatch

RULES = [{"match": "latency_*", "labels": {"service": "pay*"}, "detector": "half_space_trees"},
         {"match": "queue_*", "detector": "predictive"}]


def _feed(det: MetricDetector, series: list[tuple[str, dict[str, str]]], n: int = 400,
          spike_at: int = 350) -> list:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        v = 10.0 + 0.1 * rng.normal() if i != spike_at else 60.0
        out += det.update(MetricBatch(series=[{"name": name, "labels": labels,
                                               "points": [(1.7e9 + 15 * i, v)]}
                                              for name, labels in series]))
    return out


def test_rules_pick_the_detector_by_name_and_labels_first_match_wins() -> None:
    det = MetricDetector(AnomalySettings(detectors=RULES))
    assert det.detector_for("latency_p99", {"service": "payments"}) == "half_space_trees"
    assert det.detector_for("latency_p99", {"service": "api"}) == "calibrated_tail"
    assert det.detector_for("latency_p99", {}) == "calibrated_tail"
    assert det.detector_for("queue_depth", {"service": "api"}) == "predictive"
    assert det.detector_for("cpu", {}) == "calibrated_tail"


def test_unknown_detector_name_is_a_clear_configuration_error() -> None:
    with pytest.raises(ValidationError, match="detector"):
        AnomalySettings(detectors=[{"match": "*", "detector": "isolation_forest"}])


def test_configured_family_is_scored_by_its_river_detector_in_the_detection_path() -> None:
    """The worker's detection path (MetricDetector) scores a matched series with the
    configured River detector: its scores are exactly the detector's own, replayed
    alone; unmatched series keep the bank; both alert on the spike."""
    settings = AnomalySettings(warmup_samples=20, detectors=RULES)
    det = MetricDetector(settings)
    series = [("latency_p99", {"service": "payments"}), ("latency_p99", {"service": "api"})]
    scores: dict[str, list[float]] = {"payments": [], "api": []}
    rng = np.random.default_rng(3)
    ref = make_detector("half_space_trees", warmup=20)
    ref_scores = []
    opened = []
    for i in range(400):
        v = 10.0 + 0.1 * rng.normal() if i != 350 else 60.0
        t = 1.7e9 + 15 * i
        ref_scores.append(ref.score_one({"t": t, "y": v}))
        ref.learn_one({"t": t, "y": v})
        slots = np.array([det._slot(n, lb) for n, lb in series])
        sc = np.zeros(2)
        opened += det.update_arrays(slots, np.full(2, t), np.full(2, v), np.zeros(2, np.int64),
                                    scores=sc)
        scores["payments"].append(sc[0])
        scores["api"].append(sc[1])
    pay = det.slot_of[next(iter(det.slot_of))]
    assert isinstance(det._river[pay], Calibrated)
    assert len(det._river) == 1
    np.testing.assert_allclose(scores["payments"], ref_scores, rtol=0, atol=1e-12)
    assert scores["payments"] != scores["api"]
    assert {a.labels["service"] for a in opened if a.status == "open"} == {"payments", "api"}


def test_history_bootstrap_and_forget_reset_the_family_detector() -> None:
    det = MetricDetector(AnomalySettings(warmup_samples=20, detectors=RULES))
    _feed(det, [("queue_depth", {"service": "a"})], n=50, spike_at=-1)
    slot = next(iter(det._river))
    first = det._river[slot]
    det.update(MetricBatch(source="history:r1", series=[
        {"name": "queue_depth", "labels": {"service": "a"}, "points": [(1.8e9, 1.0)]}]))
    assert det._river[slot] is not first
    assert det.forget([-1]) == 1 and not det._river


def test_default_configuration_uses_the_vectorised_calibrated_tail() -> None:
    det = MetricDetector(AnomalySettings())
    out = _feed(det, [("latency_p99", {"service": "payments"})], n=200, spike_at=150)
    assert not det._river
    assert [a.status for a in out][:1] == ["open"]
    assert isinstance(make_detector("calibrated_tail"), CalibratedTail)
