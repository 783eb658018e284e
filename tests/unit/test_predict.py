"""Early warning on plain batches: who is followed, when a prediction is emitted, state."""

from __future__ import annotations

import numpy as np

from sre_agent.config import LimitRule, PredictionSettings
from sre_agent.processors.predict import EarlyWarning, rule_for
from sre_agent.schemas import MetricBatch

T0 = 1_700_000_000.0


def feed(ew: EarlyWarning, name: str, fn, hours: float, labels: dict[str, str] | None = None,
         start_h: float = 0.0, per_batch_min: int = 5, seed: int = 1) -> list:
    """``fn(hour) -> value`` sampled every minute, ``per_batch_min`` minutes per batch."""
    rng = np.random.default_rng(seed)
    out = []
    minutes = int(hours * 60)
    for a in range(0, minutes, per_batch_min):
        pts = []
        for m in range(a, min(a + per_batch_min, minutes)):
            h = start_h + m / 60
            pts.append((T0 + h * 3600, fn(h) + 0.002 * float(rng.normal())))
        out += ew.update(MetricBatch(series=[{"name": name, "labels": labels or {"service": "api"},
                                              "points": pts}]))
    return out


def test_rules_match_saturation_metrics_only() -> None:
    rules = PredictionSettings().rules
    assert rule_for("memory_limit_ratio", rules).limit == 1.0  # type: ignore[union-attr]
    assert rule_for("disk_used_ratio", rules).limit == 0.9  # type: ignore[union-attr]
    assert rule_for("slo_error_budget_remaining_ratio", rules).direction == "below"  # type: ignore[union-attr]
    assert rule_for("http_latency_p99_seconds", rules) is None


def test_memory_leak_is_predicted_hours_ahead() -> None:
    ew = EarlyWarning(PredictionSettings())
    out = feed(ew, "memory_limit_ratio", lambda h: 0.40 + 0.06 * h, hours=9.6,
               labels={"service": "payments", "pod": "payments-7"})
    assert out, "no early warning"
    first = out[0]
    assert first.metric == "memory_limit_ratio" and first.service == "payments"
    assert first.limit == 1.0 and first.confidence >= 0.7
    # first warned while still 4-6 h away, and the ETA is right within 20%
    true_eta = (1.0 - (0.40 + 0.06 * (first.time.timestamp() - T0) / 3600)) / 0.06 * 3600
    assert 3.5 * 3600 <= first.seconds_to_breach <= 6 * 3600
    assert abs(first.seconds_to_breach - true_eta) < 0.2 * true_eta
    assert abs(first.slope_per_hour - 0.06) < 0.01
    assert abs(first.breach_at.timestamp() - first.time.timestamp() - first.seconds_to_breach) < 0.01
    # repeated at most every 30 min unless the ETA halves; critical within the last hour
    times = [p.time.timestamp() for p in out]
    assert all(b - a >= 1800 or out[i + 1].seconds_to_breach < out[i].seconds_to_breach / 2
               for i, (a, b) in enumerate(zip(times, times[1:])))
    assert out[-1].severity == "critical" and out[-1].seconds_to_breach < 3600


def test_flat_noisy_or_far_series_stay_quiet() -> None:
    ew = EarlyWarning(PredictionSettings())
    assert feed(ew, "memory_limit_ratio", lambda h: 0.6, hours=8) == []
    assert feed(ew, "disk_used_ratio", lambda h: 0.5 + 0.005 * h, hours=8) == []  # 80 h away
    assert feed(ew, "cpu_usage_cores", lambda h: 0.5 + 0.2 * h, hours=8) == []  # no limit


def test_error_budget_falling_to_zero() -> None:
    ew = EarlyWarning(PredictionSettings())
    out = feed(ew, "error_budget_remaining", lambda h: 0.5 - 0.1 * h, hours=2)
    assert out and out[0].limit == 0.0 and out[0].slope_per_hour < 0


def test_limit_from_a_label() -> None:
    ew = EarlyWarning(PredictionSettings(rules=[
        LimitRule(match="queue_depth", limit=1e9, limit_label="limit")]))
    out = feed(ew, "queue_depth", lambda h: 100 + 50 * h, hours=3,
               labels={"queue": "orders", "limit": "400"})
    assert out and out[0].limit == 400.0


def test_history_is_learned_without_warnings_and_state_round_trips() -> None:
    ew = EarlyWarning(PredictionSettings())
    pts = [(T0 + 60 * m, 0.4 + 0.06 * m / 60) for m in range(4 * 60)]
    hist = MetricBatch(source="history:x", series=[{"name": "memory_limit_ratio",
                                                    "labels": {"service": "api"}, "points": pts}])
    assert ew.update(hist) == []
    saved = ew.take_dirty()
    assert len(saved) == 1 and all(len(v) < 2048 for v in saved.values())
    again = EarlyWarning(PredictionSettings(), load=saved.get)
    out = feed(again, "memory_limit_ratio", lambda h: 0.4 + 0.06 * h, hours=0.5, start_h=4.0)
    assert out and out[0].seconds_to_breach < 6 * 3600  # continues from the history
    assert again.forget({-1}) == 1 and again.tracked == {}


def test_disabled() -> None:
    ew = EarlyWarning(PredictionSettings(enabled=False))
    assert feed(ew, "memory_limit_ratio", lambda h: 0.4 + 0.1 * h, hours=4) == []


def test_a_resolved_series_is_found_by_its_key_and_a_wrong_key_is_not_trusted() -> None:
    """A series the directory resolved carries its key (``id``): the early warning finds
    it by that key (no canonical id rebuilt per sample), with the same predictions and
    state as the plain labels; a key that is not the labels' own is never bound to them;
    a forgotten partition's keys go with it."""
    from sre_agent.schemas import series_id
    from sre_agent.schemas.telemetry import series_key

    labels = {"service": "api", "pod": "p1"}
    key = series_key(series_id("memory_limit_ratio", labels))
    plain, keyed = EarlyWarning(PredictionSettings()), EarlyWarning(PredictionSettings())
    out_plain, out_keyed = [], []
    for a in range(0, 9 * 60, 5):
        pts = [(T0 + m * 60, 0.40 + 0.06 * m / 60) for m in range(a, a + 5)]
        s = {"name": "memory_limit_ratio", "labels": labels, "points": pts}
        out_plain += plain.update(MetricBatch(series=[dict(s)]), tag=1)
        out_keyed += keyed.update(MetricBatch(series=[dict(s, id=key)]), tag=1)
    assert out_plain and len(out_plain) == len(out_keyed)
    assert [p.seconds_to_breach for p in out_plain] == [p.seconds_to_breach for p in out_keyed]
    assert plain.take_dirty() == keyed.take_dirty()
    assert list(keyed._by_key) == [key]
    # a key not the labels' own: the series is followed by its labels, the key not kept
    other = {"service": "api", "pod": "p2"}
    keyed.update(MetricBatch(series=[{"name": "memory_limit_ratio", "labels": other,
                                      "points": [(T0, 0.5)], "id": "0" * 16}]), tag=2)
    assert series_id("memory_limit_ratio", other) in keyed.tracked
    assert "0" * 16 not in keyed._by_key
    assert keyed.forget([1]) == 1 and not keyed._by_key


def test_a_resolved_series_keeps_the_directorys_labels_not_a_copy() -> None:
    """A followed series resolved by the series directory keeps the directory's labels
    dict (the detector keeps the same one): no copy per followed series (issue 18,
    memory); its predictions carry labels of their own; unresolved series keep a copy."""
    from sre_agent.schemas import series_id
    from sre_agent.schemas.series_refs import SeriesDirectory
    from sre_agent.schemas.telemetry import series_key

    labels = {"service": "api", "pod": "p1"}
    key = series_key(series_id("memory_limit_ratio", labels))
    directory, early = SeriesDirectory(), EarlyWarning(PredictionSettings())
    out = []
    for a in range(0, 9 * 60, 5):
        pts = [(T0 + m * 60, 0.40 + 0.06 * m / 60) for m in range(a, a + 5)]
        batch = MetricBatch(series=[{"name": "memory_limit_ratio", "labels": dict(labels),
                                     "points": pts, "id": key}])
        got = directory.expand(batch).series  # as the metrics agent: no revalidation
        out += early.update(batch.model_copy(update={"series": got}), tag=1)
    kept = directory.get(key)[1]
    assert early.tracked[series_id("memory_limit_ratio", labels)].labels is kept
    assert out and out[0].labels == labels and out[0].labels is not kept
    plain = {"service": "api", "pod": "p2"}
    early.update(MetricBatch(series=[{"name": "memory_limit_ratio", "labels": plain,
                                      "points": [(T0, 0.5)]}]))
    assert early.tracked[series_id("memory_limit_ratio", plain)].labels is not plain
