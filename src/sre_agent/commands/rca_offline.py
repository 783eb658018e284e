"""``sre-agent rca offline DIR``: post-incident RCA from exported metrics, no broker.

DIR holds

- ``graph.csv`` — header ``caller,callee``, one dependency edge per row;
- ``metrics.csv`` — header ``timestamp,service,metric,value`` (long format;
  Unix seconds — milliseconds are recognised — or ISO-8601; any interval;
  empty and ``NaN`` values are skipped as gaps);
- ``incident.json`` — ``{"start": <timestamp>, "symptom": {"service": ..., "metric": ...}}``
  (symptom optional);
- ``logs.csv`` (optional) — header ``timestamp,service,message``, one log line
  per row. Lines are mined into templates per service with the product's
  template miner; the level is the message's first word when it is one
  (``ERROR ...``), else error words decide. Time the export does not cover
  (no line of any service in a 10 s bin) counts as no data, not as silence;
- ``events.csv`` (optional) — header ``timestamp,service,kind,detail``: deploys
  (``kind`` ``deploy``), configuration changes (``config``) and Kubernetes
  events (``kind`` = the reason, e.g. ``OOMKilled``, ``CrashLoopBackOff``);
  ``detail`` is free text (may be empty).

The reference is the hour before ``start``, the judged window the 5 minutes
after it. It prints ``{"candidates": [{"service", "score", "cause_type",
"evidence"}, ...]}`` ranking every service, most likely root cause first
(``score`` is the fused evidence strength, 0 when nothing was seen).
Malformed input exits with status 2 and a message naming the file and line.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..cli import SettingsFactory, UsageError, command
from ..processors.rca_engine import ChangeEvent
from ..processors.rca_offline import analyze_offline

__all__ = ["InputError", "load_dir", "parse_time"]


class InputError(ValueError):
    """Malformed offline-RCA input; the message names the file and line."""


def parse_time(raw: Any, where: str) -> float:
    """Unix seconds (or milliseconds) or ISO-8601 -> Unix seconds.

    >>> parse_time("1700000000", "x"), parse_time(1700000000500, "x")
    (1700000000.0, 1700000000.5)
    >>> parse_time("2023-11-14T22:13:20Z", "x")
    1700000000.0
    """
    if isinstance(raw, bool):
        raise InputError(f"{where}: timestamp {raw!r} is neither Unix seconds nor ISO-8601")
    if isinstance(raw, (int, float)):
        t = float(raw)
    else:
        text = str(raw).strip()
        try:
            t = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
            except ValueError:
                raise InputError(f"{where}: timestamp {text!r} is neither Unix seconds nor "
                                 "ISO-8601") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
    if not math.isfinite(t) or t < 0:
        raise InputError(f"{where}: timestamp {raw!r} out of range")
    return t / 1000.0 if t > 1e11 else t


def _rows(path: Path, header: list[str]) -> Iterator[tuple[int, list[str]]]:
    if not path.is_file():
        raise InputError(f"{path.name}: missing (expected {path})")
    csv.field_size_limit(1 << 24)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            head = next(reader)
        except StopIteration:
            raise InputError(f"{path.name}: empty file, expected header {','.join(header)}") from None
        if [h.strip().lower() for h in head] != header:
            raise InputError(f"{path.name} line 1: header is {','.join(head)!r}, expected "
                             f"{','.join(header)!r}")
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(f"{path.name} line {reader.line_num}: {len(row)} fields, "
                                 f"expected {len(header)} ({','.join(header)})")
            yield reader.line_num, [c.strip() for c in row]


def load_dir(directory: Path) -> dict[str, Any]:
    """Read and validate the files; return kwargs for :func:`analyze_offline`."""
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    edges = []
    for line, (caller, callee) in _rows(directory / "graph.csv", ["caller", "callee"]):
        if not caller or not callee:
            raise InputError(f"graph.csv line {line}: caller and callee must not be empty")
        edges.append((caller, callee))
    rows = []
    for line, (ts, svc, metric, value) in _rows(directory / "metrics.csv",
                                               ["timestamp", "service", "metric", "value"]):
        where = f"metrics.csv line {line}"
        if not svc or not metric:
            raise InputError(f"{where}: service and metric must not be empty")
        if value == "" or value.lower() in ("nan", "null", "none"):
            continue
        try:
            v = float(value)
        except ValueError:
            raise InputError(f"{where}: value {value!r} is not a number") from None
        if not math.isfinite(v):
            continue
        rows.append((parse_time(ts, where), svc, metric, v))
    if not rows:
        raise InputError("metrics.csv: no samples")
    path = directory / "incident.json"
    try:
        inc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"incident.json: missing (expected {path})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"incident.json line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(inc, dict) or "start" not in inc:
        raise InputError('incident.json: expected an object with "start"')
    start = parse_time(inc["start"], "incident.json start")
    symptom = inc.get("symptom")
    if symptom is not None and not (isinstance(symptom, dict) and isinstance(
            symptom.get("service", ""), str)):
        raise InputError('incident.json: "symptom" must be {"service": ..., "metric": ...}')
    if not any(t >= start for t, *_ in rows):
        raise InputError(f"metrics.csv: no samples at or after the incident start {inc['start']}")
    logs = []
    if (directory / "logs.csv").exists():
        for line, (ts, svc, message) in _rows(directory / "logs.csv",
                                              ["timestamp", "service", "message"]):
            where = f"logs.csv line {line}"
            if not svc:
                raise InputError(f"{where}: service must not be empty")
            logs.append((parse_time(ts, where), svc, message))
    events = []
    if (directory / "events.csv").exists():
        for line, (ts, svc, kind, detail) in _rows(directory / "events.csv",
                                                   ["timestamp", "service", "kind", "detail"]):
            where = f"events.csv line {line}"
            if not svc or not kind:
                raise InputError(f"{where}: service and kind must not be empty")
            events.append(ChangeEvent(parse_time(ts, where), svc, kind, detail))
    return {"edges": edges, "rows": rows, "start": start, "symptom": symptom, "logs": logs,
            "events": events}


def _args(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n", 1)[1] if __doc__ else None
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", choices=["offline"], help="offline: rank root causes from exported data")
    p.add_argument("directory", type=Path, help="folder with graph.csv, metrics.csv, incident.json "
                   "and optionally logs.csv, events.csv (formats above)")
    p.add_argument("--top", type=int, default=0, help="print only the first N candidates")


@command("rca", "root-cause analysis of exported data (rca offline DIR)", _args)
def _rca(args: argparse.Namespace, settings: SettingsFactory) -> int:
    try:
        data = load_dir(args.directory)
    except InputError as exc:
        raise UsageError(f"rca offline: {exc}") from None
    out = analyze_offline(**data)
    if args.top > 0:
        out["candidates"] = out["candidates"][: args.top]
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
