"""``sre-agent backtest INPUT OUTPUT``: score CSV history with the stream's own detector.

INPUT is a CSV file or a directory of CSV files (searched recursively) with the
header ``timestamp,value`` (other columns are ignored). OUTPUT is a file, or a
directory receiving same-named CSVs (same relative paths) with the header
``timestamp,value,anomaly_score``: one row per input row, in order, the score in
[0, 1] being what the live agent would have scored that sample. No labels are
read; each file is a fresh series. Files are processed side by side as rows of
one :class:`~sre_agent.processors.detect.MetricDetector` (the exact stream code),
so a directory goes about as fast as a single file.

Timestamps: ``2014-04-01 00:00:00``, ISO 8601 (``T``, fractions, ``Z`` or an
offset; naive means UTC) or Unix seconds/milliseconds. Any interval, regular or
not. An empty, ``NaN`` or infinite value is missing: it keeps its row with score
0 and is not learned; so is a timestamp not after its predecessor. A file that
cannot be read (no such header, text in ``value``, bad timestamp) is reported
with its line number and skipped; the others go on, and the exit status is 1.

Use it to tune ``anomaly_detection.threshold`` (and per-metric ``overrides``)
on your own history: anything scoring at or above the threshold would have
opened an anomaly.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..cli import IOFailure, SettingsFactory, command, error
from ..config import AnomalySettings
from ..processors.detect import MetricDetector

__all__ = ["BadFile", "Series", "backtest", "parse_time", "read_csv", "score_series"]

#: files scored together (rows of one bank); bounds memory on huge directories
GROUP = 64
#: rounds (samples per series) per progress step
ROUNDS_PER_STEP = 5_000


class BadFile(ValueError):
    """A CSV that cannot be backtested; the message names the line."""


@dataclass
class Series:
    path: Path
    rows: list[tuple[str, str]] = field(default_factory=list)  #: original text
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ok: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  #: learnable rows


def parse_time(text: str) -> float:
    """Unix seconds of a CSV timestamp.

    >>> parse_time("2014-04-01 00:00:00")
    1396310400.0
    >>> parse_time("2014-04-01T02:00:00+02:00"), parse_time("1396310400000")
    (1396310400.0, 1396310400.0)
    """
    s = text.strip()
    try:
        x = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(x):
            raise ValueError(f"not a time: {text!r}")
        return x / 1000.0 if x > 1e11 else x
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_csv(path: Path) -> Series:
    """Read one ``timestamp,value`` CSV; :class:`BadFile` when it cannot be used."""
    out = Series(path)
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise BadFile(f"cannot open: {exc.strerror or exc}") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise BadFile("empty file (expected the header 'timestamp,value')") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BadFile(f"line 1: not CSV text: {exc}") from None
        cols = [h.strip().lower() for h in header]
        if "timestamp" not in cols or "value" not in cols:
            raise BadFile(f"line 1: header must name 'timestamp' and 'value', got {header!r}")
        it, iv = cols.index("timestamp"), cols.index("value")
        width = max(it, iv) + 1
        ts: list[float] = []
        vs: list[float] = []
        ok: list[bool] = []
        last = -math.inf
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue  # blank line: not a row
                if len(row) < width:
                    raise BadFile(f"line {line}: expected at least {width} columns, got {len(row)}")
                traw, vraw = row[it], row[iv]
                try:
                    t = parse_time(traw)
                except ValueError:
                    raise BadFile(f"line {line}: bad timestamp {traw!r}") from None
                vtxt = vraw.strip()
                try:
                    v = float(vtxt) if vtxt else math.nan
                except ValueError:
                    raise BadFile(f"line {line}: value is not a number: {vraw!r}") from None
                good = math.isfinite(v) and t > last
                if good:
                    last = t
                out.rows.append((traw, vraw))
                ts.append(t)
                vs.append(v if math.isfinite(v) else 0.0)
                ok.append(good)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BadFile(f"line {reader.line_num}: not CSV text: {exc}") from None
    out.t, out.v, out.ok = np.asarray(ts, float), np.asarray(vs, float), np.asarray(ok, bool)
    return out


def score_series(group: list[Series], settings: AnomalySettings,
                 progress: Progress | None = None) -> list[np.ndarray]:
    """Score every row of every series (fresh series each), side by side."""
    det = MetricDetector(settings)
    parts = []
    for i, s in enumerate(group):
        slot = det._slot("backtest", {"file": str(i)})
        idx = np.flatnonzero(s.ok)
        parts.append((np.full(len(idx), slot), s.t[idx], s.v[idx], np.arange(len(idx)), i, idx))
    scores = [np.zeros(len(s.rows)) for s in group]
    if not parts:
        return scores
    slot = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    v = np.concatenate([p[2] for p in parts])
    pos = np.concatenate([p[3] for p in parts])
    owner = np.concatenate([np.full(len(p[5]), p[4]) for p in parts])
    row = np.concatenate([p[5] for p in parts])
    out = np.zeros(len(t))
    top = int(pos.max(initial=-1)) + 1
    for a in range(0, top, ROUNDS_PER_STEP):
        m = (pos >= a) & (pos < a + ROUNDS_PER_STEP)
        sub = np.zeros(int(m.sum()))
        det.update_arrays(slot[m], t[m], v[m], pos[m], emit=False, scores=sub)
        out[m] = sub
        if progress is not None:
            progress.add(int(m.sum()))
    for i in range(len(group)):
        sel = owner == i
        scores[i][row[sel]] = out[sel]
    return scores


class Progress:
    def __init__(self, total: int, every: float = 2.0) -> None:
        self.total, self.done, self.every = total, 0, every
        self.t0 = self._last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            rate = self.done / max(now - self.t0, 1e-9)
            print(f"  {self.done}/{self.total} samples ({100 * self.done / max(self.total, 1):.0f}%, "
                  f"{rate:,.0f}/s)", flush=True)


def _write(path: Path, s: Series, scores: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["timestamp", "value", "anomaly_score"])
        for (traw, vraw), sc in zip(s.rows, scores):
            w.writerow([traw, vraw, f"{min(max(float(sc), 0.0), 1.0):.6f}"])
    tmp.replace(path)


def _plan(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise BadFile(f"OUTPUT {dst} must be a directory when INPUT is one")
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
        return [(p, dst / p.relative_to(src)) for p in files]
    if not src.exists():
        raise BadFile(f"INPUT {src} does not exist")
    return [(src, dst / src.name if dst.is_dir() else dst)]


def backtest(src: Path, dst: Path, settings: AnomalySettings) -> int:
    """Run the backtest; return the number of files that failed."""
    plan = _plan(src, dst)
    if not plan:
        error(f"no .csv files under {src}")
        return 1
    failed = 0
    t0 = time.monotonic()
    for g in range(0, len(plan), GROUP):
        chunk = plan[g:g + GROUP]
        group: list[tuple[Series, Path]] = []
        for inp, outp in chunk:
            try:
                group.append((read_csv(inp), outp))
            except BadFile as exc:
                failed += 1
                error(f"{inp}: {exc}")
        total = sum(int(s.ok.sum()) for s, _ in group)
        prog = Progress(total) if total > 50_000 else None
        scores = score_series([s for s, _ in group], settings, prog)
        for (s, outp), sc in zip(group, scores):
            try:
                _write(outp, s, sc)
            except OSError as exc:
                failed += 1
                error(f"{outp}: cannot write: {exc}")
                continue
            thr = settings.threshold
            print(f"{s.path} -> {outp}: {len(s.rows)} rows, "
                  f"{int((sc >= thr).sum())} at or above {thr}")
    done = len(plan) - failed
    print(f"backtest: {done} file(s) scored, {failed} failed, "
          f"{time.monotonic() - t0:.1f}s")
    return failed


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="CSV file or directory of CSV files (timestamp,value)")
    p.add_argument("output", type=Path, help="output CSV file or directory")
    p.add_argument("--threshold", type=float, default=None,
                   help="only for the summary counts (default anomaly_detection.threshold)")


@command("backtest", "score CSV history (timestamp,value) with the live detector", _args)
def _backtest(args: argparse.Namespace, settings: SettingsFactory) -> int:
    ad = settings().anomaly_detection
    if args.threshold is not None:
        ad = ad.model_copy(update={"threshold": args.threshold})
    try:
        failed = backtest(args.input, args.output, ad)
    except BadFile as exc:
        raise IOFailure(str(exc)) from None
    return 1 if failed else 0
