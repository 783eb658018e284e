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
