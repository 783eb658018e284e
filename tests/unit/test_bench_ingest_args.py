"""bench/bench_ingest.py refuses a round count whose marker spikes cannot fire.

The last round spikes one series per shard and the bench waits for their anomalies:
with fewer rounds than the detector's warm-up the series are still learning then, no
anomaly comes and the run waited forever (``--rounds 20`` against warmup_samples 30).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_too_few_rounds_for_the_markers_is_refused_before_anything_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    import bench_ingest

    with pytest.raises(SystemExit) as e:
        bench_ingest.main(["--rounds", "20", "--skip-memory", "--skip-scale"])
    assert e.value.code == 2
    assert "need at least 31 rounds" in capsys.readouterr().err


def test_checkpoint_part_is_per_sample_taken_not_per_sample_saved() -> None:
    """A deferred checkpoint saves fewer samples than the rounds brought: its CPU per
    sample *saved* (9.9 µs in a 23:20 run that saved 17,510 of 400,000 samples) was
    subtracted from the worker's CPU per sample *taken*, and "framework and the rest"
    came out negative (-1.4 µs)."""
    import bench_ingest

    before = {"cpu_seconds": 1.0, "samples_saved": 0.0, "bytes": 0.0, "records": 0.0,
              "series": 0.0, "changed": 0.0, "largest": 0.0, "label_bytes": 0.0}
    after = {**before, "cpu_seconds": 1.0 + 0.174, "samples_saved": 17_510.0}
    res = {"samples": 400_000, "cpu_us_per_sample": 15.3,
           "checkpoints": bench_ingest.state_delta(before, after)}
    bd = {"receive": 2.1, "decode": 2.1, "detector": 1.2, "early_warning": 0.2,
          "rca_window_rollup": 0.8, "rca_window_feed": 0.3}
    parts = bench_ingest.worker_parts(res, bd)
    assert parts["checkpoint (in the worker)"] == pytest.approx(0.435)
    assert parts["framework and the rest"] == pytest.approx(15.3 - 6.7 - 0.435)
