"""Golden replay: the same input gives the same scores and anomaly events (issue 18).

A small recorded input (the first rows of two real KPIs of the AIOps Challenge 2018
data set, MIT licence, see ``../shared/devdata/kpi/README.md``) goes through the
stream's detector (:class:`~sre_agent.processors.detect.MetricDetector`, batches of
ten points per series as the worker receives them); every sample's score and every
open/resolve event must equal the recorded ones. Speed work on the bank cannot change
detection silently: a deliberate change of the model regenerates the record with

    .venv/bin/python tests/unit/test_detection_golden.py /path/to/devdata/kpi/kpi

and says why in its commit.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sre_agent.config import AnomalySettings
from sre_agent.processors.detect import MetricDetector
from sre_agent.schemas import MetricBatch

GOLDEN = Path(__file__).with_name("data") / "detection_golden.json.gz"
SOURCES = (("301c70d8-1630-35ac-8f96-bc1b6f4359ea.csv", 1500),
           ("05f10d3a-239c-3bef-9bdc-a2feeb0037aa.csv", 1500))
PER_BATCH = 10


def replay(series: list[dict[str, Any]]) -> tuple[list[list[float]], list[list[Any]]]:
    """Scores per series and the events, fed as the worker is fed."""
    det = MetricDetector(AnomalySettings())
    slots = [det._slot("kpi", {"service": s["name"]}) for s in series]
    scores: list[list[float]] = [[] for _ in series]
    events: list[list[Any]] = []
    n = max(len(s["t"]) for s in series)
    for a in range(0, n, PER_BATCH):
        parts = [(i, s["t"][a:a + PER_BATCH], s["v"][a:a + PER_BATCH]) for i, s in enumerate(series)]
        parts = [p for p in parts if p[1]]
        slot = np.concatenate([np.full(len(t), slots[i]) for i, t, _ in parts])
        t = np.concatenate([np.asarray(t, float) for _, t, _ in parts])
        v = np.concatenate([np.asarray(v, float) for _, _, v in parts])
        pos = np.concatenate([np.arange(len(t)) for _, t, _ in parts])
        sc = np.zeros(len(t))
        out = det.update_arrays(slot, t, v, pos, scores=sc)
        k = 0
        for i, tt, _ in parts:
            scores[i] += sc[k:k + len(tt)].tolist()
            k += len(tt)
        events += [[e.labels["service"], e.status, e.time.timestamp(), round(e.score, 9)] for e in out]
    # the same through MetricBatch (the worker's message path) gives the same events
    det2 = MetricDetector(AnomalySettings())
    ev2 = []
    for a in range(0, n, PER_BATCH):
        batch = MetricBatch(series=[{"name": "kpi", "labels": {"service": s["name"]},
                                     "points": list(zip(s["t"][a:a + PER_BATCH], s["v"][a:a + PER_BATCH]))}
                                    for s in series if s["t"][a:a + PER_BATCH]])
        ev2 += [[e.labels["service"], e.status, e.time.timestamp(), round(e.score, 9)]
                for e in det2.update(batch)]
    assert ev2 == events
    return scores, events


def test_same_input_same_scores_and_anomaly_events() -> None:
    rec = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    scores, events = replay(rec["series"])
    for got, want in zip(scores, rec["scores"]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert events == rec["events"]
    assert any(e[1] == "open" for e in events)  # the record does exercise alerts


def _record(kpi_dir: Path) -> None:
    series = []
    for name, rows in SOURCES:
        with (kpi_dir / name).open() as fh:
            r = list(csv.DictReader(fh))[:rows]
        series.append({"name": name[:8], "t": [float(x["timestamp"]) for x in r],
                       "v": [float(x["value"]) for x in r]})
    scores, events = replay(series)
    rec = {"source": "AIOps Challenge 2018 KPI (MIT), first rows of " + ", ".join(n for n, _ in SOURCES),
           "series": series, "scores": [[round(x, 12) for x in s] for s in scores], "events": events}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_bytes(gzip.compress(json.dumps(rec).encode(), mtime=0))
    print(f"wrote {GOLDEN}: {sum(len(s['t']) for s in series)} samples, {len(events)} events")


if __name__ == "__main__":
    _record(Path(sys.argv[1]))
