"""Log patterns on plain records: new error templates, error-template surges, windows, state."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sre_agent.config import AnomalySettings, LogPatternSettings
from sre_agent.processors.logs import RATE_METRIC, LogPatternDetector
from sre_agent.schemas import Anomaly, LogRecord

T0 = 1_700_000_000.0
NORMAL = [
    "GET /api/orders/{i} 200 in {ms}ms",
    "user {i} logged in from 10.0.{a}.{b}",
    "cache hit ratio {r} for shard {a}",
]
KNOWN_ERROR = "upstream timeout calling pricing-svc after {ms}ms (attempt {a})"


def rec(t: float, msg: str, level: str = "info", service: str = "checkout") -> LogRecord:
    return LogRecord(service=service, level=level, message=msg,
                     time=datetime.fromtimestamp(t, UTC))


def line(tpl: str, rng: random.Random) -> str:
    return tpl.format(i=rng.randint(1, 99999), ms=rng.randint(1, 900), a=rng.randint(0, 255),
                      b=rng.randint(0, 255), r=round(rng.random(), 3))


def run(det: LogPatternDetector, minutes: int, start_min: int = 0, per_min: int = 30,
        errors_per_min: int = 1, extra: list[tuple[int, str]] | None = None,
        surge: tuple[int, int] | None = None, seed: int = 1) -> list[Anomaly]:
    """Traffic of normal lines plus a steady trickle of a known error template."""
    rng = random.Random(seed)
    out: list[Anomaly] = []
    for m in range(start_min, start_min + minutes):
        base = T0 + 60 * m
        n_err = errors_per_min * (20 if surge and surge[0] <= m < surge[1] else 1)
        for k in range(per_min):
            out += det.add(rec(base + k * 60 / per_min, line(rng.choice(NORMAL), rng)))
        for k in range(n_err):
            out += det.add(rec(base + 30 + k * 0.1, line(KNOWN_ERROR, rng), "error"))
        for em, msg in extra or []:
            if em == m:
                out += det.add(rec(base + 45, msg, "ERROR"))
    return out


def settings(**kw: float) -> LogPatternSettings:
    return LogPatternSettings(**{"warmup_lines": 100, "warmup_seconds": 600, **kw})


def test_new_error_template_after_warmup_opens_and_resolves() -> None:
    det = LogPatternDetector(settings(), AnomalySettings())
    early = run(det, 5, extra=[(2, "Fatal: config key 'x' missing")])
    assert early == []  # still warming up: everything is new
    out = run(det, 20, start_min=5,
              extra=[(10, "NullPointerException in OrderMapper.map line 42"),
                     (12, "NullPointerException in OrderMapper.map line 77")])
    news = [a for a in out if a.metric == "log_new_error_template"]
    assert [a.status for a in news] == ["open", "resolved"]
    a = news[0]
    assert a.kind == "log" and a.service == "checkout" and a.template is not None
    assert a.template.startswith("NullPointerException in OrderMapper.map line")
    assert news[1].anomaly_id == a.anomaly_id and a.series.startswith("checkout/")
    assert a.labels["template"] == a.series.split("/", 1)[1]


def test_info_lines_never_alert_and_words_count_without_a_level() -> None:
    det = LogPatternDetector(settings(warmup_lines=0, warmup_seconds=0), AnomalySettings())
    assert det.add(rec(T0, "brand new info line number 1")) == []
    assert det.is_error(rec(T0, "job failed: disk full", level="unknown"))
    assert not det.is_error(rec(T0, "job failed: disk full", level="warn"))
    assert det.is_error(rec(T0, "x", level="CRITICAL"))


def test_error_template_surge() -> None:
    det = LogPatternDetector(settings(), AnomalySettings())
    quiet = run(det, 120)  # 2 h of a steady trickle: the rate baselines warm up
    assert [a for a in quiet if a.metric == RATE_METRIC] == []
    out = run(det, 30, start_min=120, surge=(125, 131))
    surges = [a for a in out if a.metric == RATE_METRIC]
    opened = [a for a in surges if a.status == "open"]
    assert opened, out
    assert {a.kind for a in surges} == {"log"} and all(a.direction == "up" for a in opened)
    assert any(a.template and a.template.startswith("upstream timeout calling pricing-svc")
               for a in opened)
    assert any(a.series == "checkout/_all" for a in opened)  # the service's total error rate
    first = min(a.time.timestamp() for a in opened)
    assert T0 + 60 * 125 <= first <= T0 + 60 * 128
    resolved = {a.anomaly_id for a in surges if a.status == "resolved"}
    assert {a.anomaly_id for a in opened} <= resolved  # the surge ends, the anomalies close


def test_tick_closes_windows_of_quiet_services() -> None:
    det = LogPatternDetector(settings(warmup_lines=0, warmup_seconds=0, quiet_windows=2),
                             AnomalySettings())
    run(det, 3)
    out = det.add(rec(T0 + 60 * 3 + 10, "Segfault in worker 12", "error"))
    assert [a.status for a in out] == ["open"]
    assert det.tick(T0 + 60 * 4) == []  # the window is not over yet
    later = det.tick(T0 + 60 * 9)
    assert [a.status for a in later if a.anomaly_id == out[0].anomaly_id] == ["resolved"]


def test_state_round_trip_and_forget() -> None:
    det = LogPatternDetector(settings(), AnomalySettings())
    run(det, 15)
    saved = det.take_dirty()
    rates = det.rates.take_dirty()
    assert list(saved) == ["checkout"] and len(saved["checkout"]) < 64 * 1024
    again = LogPatternDetector(settings(), AnomalySettings(), load_service=saved.get,
                               load_rate=rates.get)
    # known templates stay known after a restart: no "new template" anomalies
    assert [a for a in run(again, 3, start_min=15) if a.status == "open"] == []
    assert again.describe("checkout")[0]["lines"] > 15 * 30
    assert again.forget({-1}) == 1 and again.services == {}
