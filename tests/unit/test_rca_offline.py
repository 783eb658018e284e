"""``sre-agent rca offline DIR``: file formats, ranking, clear errors."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sre_agent.cli import main

START = 1_700_003_000
EDGES = [("frontend", "cart"), ("frontend", "catalog"), ("catalog", "db"), ("cart", "redis")]


def write_case(d: Path, root: str, metric: str = "latency", shift: float = 80.0,
               iso: bool = False, ms: bool = False, symptom: str | None = "frontend",
               extra_metric: str | None = None, seed: int = 1) -> Path:
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    (d / "graph.csv").write_text("caller,callee\n" + "".join(f"{a},{b}\n" for a, b in EDGES))
    lag = {root: 0}
    # symptoms propagate to (transitive) callers, a little later each hop
    frontier = [root]
    while frontier:
        nxt = []
        for s in frontier:
            for a, b in EDGES:
                if b == s and a not in lag:
                    lag[a] = lag[s] + 10
                    nxt.append(a)
        frontier = nxt
    services = sorted({s for e in EDGES for s in e})
    lines = ["timestamp,service,metric,value"]
    for i in range(600):
        t = START - 2400 + 5 * i
        for s in services:
            vals = {"latency": 20 + rng.gauss(0, 1), "availability": 0.999 + rng.gauss(0, 0.0003),
                    "cpu": 0.3 + rng.gauss(0, 0.02)}
            if extra_metric:
                vals[extra_metric] = 100 + rng.gauss(0, 2)
            if s in lag and t >= START + lag[s]:
                if s == root and metric != "latency":
                    vals[metric] += shift
                vals["latency"] += 80 if metric == "latency" or s != root else 0
            ts: object = t
            if iso:
                ts = datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
            elif ms:
                ts = t * 1000
            lines += [f"{ts},{s},{m},{v:.5f}" for m, v in vals.items()]
    (d / "metrics.csv").write_text("\n".join(lines) + "\n")
    inc: dict[str, object] = {"start": START}
    if symptom:
        inc["symptom"] = {"service": symptom, "metric": "latency"}
    (d / "incident.json").write_text(json.dumps(inc))
    return d


def run(d: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict | None, str]:
    code = main(["rca", "offline", str(d)], env={})
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


@pytest.mark.parametrize("root", ["db", "redis", "catalog"])
def test_ranks_the_injected_root_first(tmp_path: Path, capsys, root: str) -> None:
    code, out, _ = run(write_case(tmp_path / root, root), capsys)
    assert code == 0
    cands = out["candidates"]
    assert cands[0]["service"] == root
    assert {c["service"] for c in cands} == {"frontend", "cart", "catalog", "db", "redis"}
    assert all(set(c) >= {"service", "score", "evidence"} for c in cands)
    scores = [c["score"] for c in cands]
    assert scores == sorted(scores, reverse=True)
    assert any("latency up" in e for e in cands[0]["evidence"])


def test_availability_down_is_bad_and_cause_type(tmp_path: Path, capsys) -> None:
    code, out, _ = run(write_case(tmp_path, "redis", metric="availability", shift=-0.3), capsys)
    assert code == 0 and out["candidates"][0]["service"] == "redis"
    assert any("availability down" in e for e in out["candidates"][0]["evidence"])


def test_memory_root_gets_a_cause_type(tmp_path: Path, capsys) -> None:
    code, out, _ = run(write_case(tmp_path, "db", metric="memory_bytes", shift=600.0,
                                  extra_metric="memory_bytes"), capsys)
    assert code == 0 and out["candidates"][0]["service"] == "db"
    assert out["candidates"][0]["cause_type"] == "memory_leak"


@pytest.mark.parametrize("fmt", ["iso", "ms"])
def test_iso_and_millisecond_timestamps(tmp_path: Path, capsys, fmt: str) -> None:
    d = write_case(tmp_path, "db", iso=fmt == "iso", ms=fmt == "ms", symptom=None)
    if fmt == "iso":
        (d / "incident.json").write_text(json.dumps({"start": datetime.fromtimestamp(
            START, UTC).isoformat()}))
    code, out, err = run(d, capsys)
    assert code == 0, err
    assert out["candidates"][0]["service"] == "db"


def test_unknown_metric_names_count_in_both_directions(tmp_path: Path, capsys) -> None:
    code, out, _ = run(write_case(tmp_path, "redis", metric="frobnication", shift=-60.0,
                                  extra_metric="frobnication"), capsys)
    assert code == 0 and out["candidates"][0]["service"] == "redis"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: (d / "graph.csv").write_text("from,to\na,b\n"), "graph.csv line 1: header"),
    (lambda d: (d / "metrics.csv").write_text(
        "timestamp,service,metric,value\n1700000000,a,latency,fast\n"),
     "metrics.csv line 2: value 'fast' is not a number"),
    (lambda d: (d / "metrics.csv").write_text(
        "timestamp,service,metric,value\nyesterday,a,latency,1\n"),
     "metrics.csv line 2: timestamp 'yesterday'"),
    (lambda d: (d / "metrics.csv").write_text("timestamp,service,metric,value\n1,a,b\n"),
     "metrics.csv line 2: 3 fields"),
    (lambda d: (d / "incident.json").write_text("{nope"), "incident.json line 1: invalid JSON"),
    (lambda d: (d / "incident.json").write_text("{}"), 'expected an object with "start"'),
    (lambda d: (d / "incident.json").write_text('{"start": 9999999999}'),
     "no samples at or after the incident start"),
    (lambda d: (d / "graph.csv").unlink(), "graph.csv: missing"),
])
def test_malformed_input_is_a_clear_error(tmp_path: Path, capsys, mutate, message: str) -> None:
    d = write_case(tmp_path, "db")
    mutate(d)
    code, out, err = run(d, capsys)
    assert code == 2 and out is None
    assert message in err, err


def test_not_a_directory(tmp_path: Path, capsys) -> None:
    code, _, err = run(tmp_path / "missing", capsys)
    assert code == 2 and "not a directory" in err


def test_gaps_are_skipped(tmp_path: Path, capsys) -> None:
    d = write_case(tmp_path, "db")
    with (d / "metrics.csv").open("a") as fh:
        fh.write(f"{START + 5},db,latency,\n{START + 6},db,latency,NaN\n")
    code, out, _ = run(d, capsys)
    assert code == 0 and out["candidates"][0]["service"] == "db"
