"""``sre-agent backtest INPUT OUTPUT`` on CSV files, through the real CLI entry point."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from sre_agent.cli import main
from sre_agent.config import AnomalySettings
from sre_agent.processors.detect import MetricDetector
from sre_agent.schemas import MetricBatch

T0 = 1_396_310_400.0  # 2014-04-01 00:00:00 UTC, like the NAB corpus


def series(n: int = 600, spike_at: int | None = 500, seed: int = 1) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    out = [(T0 + 300 * i, 20 + float(rng.normal())) for i in range(n)]
    if spike_at is not None:
        out[spike_at] = (out[spike_at][0], 60.0)
    return out


def write(path: Path, rows: list[tuple[float, float]], fmt: str = "%Y-%m-%d %H:%M:%S") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for t, v in rows:
            w.writerow([datetime.fromtimestamp(t, UTC).strftime(fmt), f"{v:.3f}"])


def read(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def cli(*args: str) -> int:
    return main(list(args), env={})


def test_single_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "cpu.csv", tmp_path / "out.csv"
    write(src, series())
    assert cli("backtest", str(src), str(dst)) == 0
    rows = read(dst)
    inp = read(src)
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert len(rows) == len(inp)
    assert [r[:2] for r in rows[1:]] == inp[1:]  # same rows, same order, same text
    scores = [float(r[2]) for r in rows[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[500] >= 0.7 and max(scores[:500]) < 0.7
    assert max(scores[:30]) == 0.0  # warm-up


def test_scores_are_the_streams_scores(tmp_path: Path) -> None:
    """The same model code: the first row at/above the threshold is where the live
    detector, fed the same points in batches, opens its anomaly."""
    pts = series(spike_at=450)
    write(tmp_path / "in.csv", pts)
    assert cli("backtest", str(tmp_path / "in.csv"), str(tmp_path / "out.csv")) == 0
    scores = [float(r[2]) for r in read(tmp_path / "out.csv")[1:]]
    det = MetricDetector(AnomalySettings())
    opened = []
    for a in range(0, len(pts), 7):
        for an in det.update(MetricBatch(series=[{"name": "x", "labels": {},
                                                   "points": pts[a:a + 7]}])):
            if an.status == "open":
                opened.append(an.time.timestamp())
    first_hit = next(i for i, s in enumerate(scores) if s >= 0.7)
    assert opened and opened[0] == pts[first_hit][0]


def test_directory_with_a_bad_file_and_odd_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    write(src / "a.csv", series(seed=1))
    write(src / "nested" / "b.csv", series(seed=2, spike_at=None), fmt="%Y-%m-%dT%H:%M:%SZ")
    (src / "bad.csv").write_text("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,high\n")
    (src / "noheader.csv").write_text("1,2\n3,4\n")
    (src / "gaps.csv").write_text(
        "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,\n"
        "2014-04-01 00:04:00,3\n2014-04-01 00:10:00,nan\n1396311000,5\n")
    (src / "notes.txt").write_text("ignored")
    assert cli("backtest", str(src), str(dst)) == 1  # some files failed
    out, err = capsys.readouterr()
    # errors on stderr, one line each, the CLI's prefix (issue 17); the report on stdout
    assert "sre-agent: error: " in err and "bad.csv: line 3: value is not a number: 'high'" in err
    assert "noheader.csv: line 1: header must name 'timestamp' and 'value'" in err
    assert len(read(dst / "a.csv")) == 601 and len(read(dst / "nested" / "b.csv")) == 601
    gaps = read(dst / "gaps.csv")
    assert [r[1] for r in gaps[1:]] == ["1", "", "3", "nan", "5"]
    assert all(r[2] == "0.000000" for r in gaps[1:])
    assert not (dst / "bad.csv").exists() and not (dst / "notes.txt").exists()
    assert "backtest: 3 file(s) scored, 2 failed" in out


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("backtest", str(tmp_path / "nope.csv"), str(tmp_path / "o.csv")) == 4  # Exit.IO
    err = capsys.readouterr().err
    assert err.startswith("sre-agent: error: ") and "does not exist" in err


def test_timestamp_formats() -> None:
    from sre_agent.commands.backtest import parse_time

    assert parse_time("2014-04-01 00:00:00") == T0
    assert parse_time("2014-04-01T00:00:00Z") == T0
    assert parse_time("2014-04-01 01:00:00+01:00") == T0
    assert parse_time("1396310400") == T0 == parse_time("1396310400000")
    assert parse_time("2014-04-01 00:00:00.500") == T0 + 0.5
    with pytest.raises(ValueError):
        parse_time("yesterday")
