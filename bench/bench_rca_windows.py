"""The stream RCA's window rollup and feed, old vs new, side by side in one process.

``--base REV``'s ``streams/rca_windows.py`` and ``processors/rca_windows.py`` (read with
``git show``) against the working tree's, on the same batches, alternating runs.
The batches are the remote-write shape after the receiver's coalescing: ``--series``
series of 1 point each per round, messages of ``--per-message`` series, labels sent
once then refs, resolved by a :class:`SeriesDirectory` as the detection stage does.
The rollup is flushed once per round (the worker's 1 s timer at about a round per
second), so the feed gets one row per sample: its worst case.

    nice -n 10 .venv/bin/python bench/bench_rca_windows.py --base HEAD~1

Prints µs per sample (process CPU) of rollup (add_series + flush + encode) and feed
(add_raw of the encoded messages), median of ``--repeat`` alternating runs, and checks
that both produce the same messages and the same store windows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import orjson  # noqa: E402

from sre_agent.config import load_settings  # noqa: E402
from sre_agent.schemas import MetricBatch, encode  # noqa: E402
from sre_agent.schemas.series_refs import SeriesDirectory  # noqa: E402
from sre_agent.schemas.telemetry import series_id, series_key  # noqa: E402


def _old(rev: str, rel: str, package: str, name: str, **extra: Any) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{rel}"], check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType(f"{package}.{name}")
    mod.__package__ = package
    mod.__dict__.update(extra)
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"{rev}:{rel}", "exec"), mod.__dict__)
    return mod


def batches(n: int, per_message: int, rounds: int, t0: float = 1_700_000_000.0
            ) -> list[list[list[dict[str, Any]]]]:
    """Per round, the resolved series of each message (first round: labels, then refs)."""
    d = SeriesDirectory()
    defs = []
    for j in range(n):
        name = "container_memory_ratio" if j % 10 == 0 else "http_request_duration_ms"
        labels = {"instance": f"10.{j // 65536 % 256}.{j // 256 % 256}.{j % 256}:9090",
                  "job": "kubernetes-pods", "namespace": "prod", "pod": f"pod-{j}",
                  "service": f"svc{j % 200}"}
        defs.append((name, labels, series_key(series_id(name, labels))))
    out = []
    for r in range(rounds):
        t = t0 + 15.0 * r
        msgs = []
        for start in range(0, n, per_message):
            part = defs[start:start + per_message]
            if r == 0:
                b = MetricBatch(series=[{"name": nm, "labels": lb, "id": k,
                                         "points": [(t, 50.0 + j % 7)]}
                                        for j, (nm, lb, k) in enumerate(part)])
            else:
                b = MetricBatch(series=[], refs=[{"id": k, "points": [(t, 50.0 + (j + r) % 7)]}
                                                 for j, (_, _, k) in enumerate(part)])
            msgs.append(d.expand(b).series)
        out.append(msgs)
    return out


def run(mods: tuple[types.ModuleType, types.ModuleType], data: list[list[list[dict[str, Any]]]],
        warm: int) -> tuple[float, float, list[bytes], Any]:
    streams, procs = mods
    st = load_settings(env={})
    rc = st.rca
    store = procs.WindowStore(horizon=streams.window_horizon(st), bucket=rc.bucket_seconds,
                              max_series=rc.max_series, max_log_lines=rc.max_log_lines)
    feed = streams.WindowFeed(st, store)
    rollup = streams.WindowRollup(rc.bucket_seconds, streams.window_horizon(st))
    for msgs in data[:warm]:
        for s in msgs:
            rollup.add_series(s)
        for w in rollup.flush("bench"):
            feed.add_raw("rca-windows", encode(w))
    n = sum(len(s) for msgs in data[warm:] for s in msgs)
    out: list[bytes] = []
    t = time.process_time()
    for msgs in data[warm:]:
        for s in msgs:
            rollup.add_series(s)
        out.extend(encode(w) for w in rollup.flush("bench"))
    roll = (time.process_time() - t) / n * 1e6
    t = time.process_time()
    for v in out:
        feed.add_raw("rca-windows", v)
    fed = (time.process_time() - t) / n * 1e6
    return roll, fed, out, store


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="HEAD", help="git revision of the old modules")
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--per-message", type=int, default=1_300)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    import sre_agent.processors.rca_windows as new_procs
    import sre_agent.streams.rca_windows as new_streams

    old_procs = _old(a.base, "src/sre_agent/processors/rca_windows.py", "sre_agent.processors",
                     "_old_rca_windows")
    old_streams = _old(a.base, "src/sre_agent/streams/rca_windows.py", "sre_agent.streams",
                       "_old_rca_windows")
    data = batches(a.series, a.per_message, a.rounds + 2)
    res: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    got = {}
    for i in range(a.repeat):
        for label, mods in (("old", (old_streams, old_procs)), ("new", (new_streams, new_procs))
                            )[:: 1 if i % 2 == 0 else -1]:
            roll, fed, msgs, store = run(mods, data, warm=2)
            res[label].append((roll, fed))
            got[label] = (msgs, store)
    cols = ("service", "metric", "t", "total", "count")
    same_msgs = [[[m[c] for c in cols] for m in map(orjson.loads, got[k][0])]
                 for k in ("old", "new")]
    same_msgs = same_msgs[0] == same_msgs[1]
    wa, wb = got["old"][1].window(0.0), got["new"][1].window(0.0)
    same_store = wa.series.keys() == wb.series.keys() and all(
        list(wa.series[k][0]) == list(wb.series[k][0])
        and list(wa.series[k][1]) == list(wb.series[k][1]) for k in wa.series)
    print(f"series {a.series}, {a.per_message} per message, {a.rounds} rounds x {a.repeat}"
          f" (base {a.base}); µs per sample, median [min-max]")
    for label in ("old", "new"):
        for k, name in ((0, "rollup"), (1, "feed")):
            xs = [r[k] for r in res[label]]
            print(f"  {label} {name:6s} {statistics.median(xs):.3f} [{min(xs):.3f}-{max(xs):.3f}]")
    mo = statistics.median(r[0] + r[1] for r in res["old"])
    mn = statistics.median(r[0] + r[1] for r in res["new"])
    print(f"  rollup+feed old {mo:.3f} new {mn:.3f} ratio {mn / mo:.2f}")
    print(f"  same messages: {same_msgs}; same store windows: {same_store}")
    return 0 if same_msgs and same_store else 1


if __name__ == "__main__":
    raise SystemExit(main())
