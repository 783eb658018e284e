"""The RCA window store's series as flat arrays (issue 18, memory): the same windows
as the deque-of-lists store it replaced, in a fraction of the memory."""

from __future__ import annotations

import math
import tracemalloc
from collections import OrderedDict, deque
from typing import Any

import numpy as np

from sre_agent.processors.rca_windows import WindowStore, _rows


class _DequeSeries:
    """The store's series before (commit bec0db6): a deque of ``[bucket, t, sum, count]``."""

    def __init__(self, horizon: float, bucket: float, max_series: int) -> None:
        self.horizon, self.bucket, self.max_series = horizon, bucket, max_series
        self.max_points = max(2, math.ceil(horizon / bucket) + 1)
        self.series: OrderedDict[tuple[str, str], deque[list[Any]]] = OrderedDict()
        self.clock = -math.inf
        self.dropped = 0

    def add_partial(self, service: str, metric: str, t: float, total: float, count: int) -> None:
        if not (math.isfinite(t) and math.isfinite(total)) or count < 1 \
                or t < self.clock - self.horizon:
            return
        key = (service, metric)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = deque()
            if len(self.series) > self.max_series:
                self.series.popitem(last=False)
                self.dropped += 1
        else:
            self.series.move_to_end(key)
        b = math.floor(t / self.bucket)
        if s and s[-1][0] == b:
            s[-1][1] = max(s[-1][1], t)
            s[-1][2] += total
            s[-1][3] += count
        elif not s or s[-1][0] < b:
            s.append([b, t, total, count])
            if len(s) > self.max_points:
                s.popleft()
        else:
            for row in s:
                if row[0] == b:
                    row[1] = max(row[1], t)
                    row[2] += total
                    row[3] += count
                    break
        self.clock = max(self.clock, t)

    def expire(self) -> None:
        lo = math.floor((self.clock - self.horizon) / self.bucket)
        for key in list(self.series):
            b = self.series[key]
            while b and b[0][0] < lo:
                b.popleft()
            if not b:
                del self.series[key]

    def window(self) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        out = {}
        for key, s in self.series.items():
            if not s:
                continue
            rows = sorted(s, key=lambda r: r[1])
            out[key] = (np.fromiter((r[1] for r in rows), float, len(rows)),
                        np.fromiter((r[2] / r[3] for r in rows), float, len(rows)))
        return out


def test_same_rows_and_windows_as_the_deque_store() -> None:
    """Random partials (late ones, too old ones, non-finite ones, a series bound that
    drops, more buckets than kept, expiry): the same series, the same rows, windows
    equal bit for bit, through both the row-by-row and the bulk fold."""
    rng = np.random.default_rng(11)
    ref = _DequeSeries(horizon=600, bucket=60, max_series=15)
    one = WindowStore(horizon=600, bucket=60, max_series=15)
    bulk = WindowStore(horizon=600, bucket=60, max_series=15)
    t0 = 1.7e9 + 13.0
    for step in range(400):
        cols: tuple[list[Any], ...] = ([], [], [], [], [])
        for _ in range(int(rng.integers(1, 60))):
            t = t0 + 7.0 * step + float(rng.uniform(0, 5))
            if rng.random() < 0.25:
                t -= float(rng.uniform(0, 1500))  # late: folded into its bucket or dropped
            total = float(rng.normal(3, 2)) * 10.0 ** float(rng.integers(-3, 4))
            if rng.random() < 0.02:
                total = float("nan")
            # 15 keys fill the bound; a rare 16th (and the first of each) drops one
            key = (f"s{rng.integers(0, 3)}", f"m{rng.integers(0, 5)}") \
                if rng.random() > 0.004 else (f"rare{step}", "m")
            row = (*key, t, total, int(rng.integers(0, 5)))
            ref.add_partial(*row)
            one.add_partial(*row)
            for c, x in zip(cols, row, strict=True):
                c.append(x)
        bulk.add_partials(*cols)
        if step % 37 == 36:
            for s in (ref, one, bulk):
                s.expire()
        assert ref.clock == one.clock == bulk.clock
    assert ref.dropped == one.dropped_series == bulk.dropped_series > 0
    for store in (one, bulk):
        assert list(store._series) == list(ref.series)
        assert [_rows(s) for s in store._series.values()] == \
            [[tuple(r) for r in s] for s in ref.series.values()]
        assert any(len(s) == store.max_points for s in ref.series.values())
        got, want = store.window(start=ref.clock).series, ref.window()
        assert list(got) == list(want)
        for key, (t, v) in want.items():
            assert got[key][0].tobytes() == t.tobytes()
            assert got[key][1].tobytes() == v.tobytes()
            assert got[key][0].flags.c_contiguous and got[key][1].flags.c_contiguous


def _traced_bytes(fill: Any) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = fill()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del keep
    return used


def test_a_series_costs_tens_of_bytes_per_bucket() -> None:
    """The deque store held ~1.1 KB per series with one bucket (a deque's 64-slot
    block, an object with its dict, a 4-list) and ~190 B per further bucket; the flat
    array ~160 B with the series' key and 32 B per bucket (+ the array's slack)."""
    n, width = 2_000, 60.0
    keys = [(f"svc{i % 50}", f'latency{{pod="p-{i}"}}') for i in range(n)]

    def fill(buckets: int) -> WindowStore:
        ws = WindowStore(horizon=4500.0, bucket=width, max_series=n)
        for b in range(buckets):
            ws.add_partials([k[0] for k in keys], [k[1] for k in keys],
                            [1.7e9 + width * b + 1.0] * n, [1.5] * n, [2] * n)
        return ws

    one = _traced_bytes(lambda: fill(1)) / n
    full = _traced_bytes(lambda: fill(76)) / n
    assert one < 300, one  # the OrderedDict entry and key tuple included
    assert (full - one) / 75 < 40, (full - one) / 75


def test_a_flushed_rollup_entry_holds_no_floats_of_its_own() -> None:
    """Between a series' partials (a 15 s scrape against a 1 s flush: most of the time)
    its rollup entry kept the last partial's time and sum, two float objects (48 B per
    series); a new partial sets every field, so the rows are the same
    (``test_rca_stream_windows``: rows equal folding every sample)."""
    from sre_agent.streams.rca_windows import WindowRollup

    n = 2_000
    labels = [{"service": f"s{i % 20}", "pod": f"p-{i}"} for i in range(n)]

    def batch() -> list[dict[str, Any]]:  # decoded anew, as each message is
        return [{"name": "latency", "labels": labels[i],
                 "points": [(1.7e9 + 1.0 + i * 1e-3, 0.5 + i)]} for i in range(n)]

    def fill() -> WindowRollup:
        r = WindowRollup(bucket=60.0, horizon=600.0)
        r.add_series(batch())
        del r.flush("w/0")[:]
        return r

    per_series = _traced_bytes(fill) / n
    assert per_series < 470, per_series  # 492 B before (the key strings included)
    r = fill()
    r.add_series(batch())
    assert [w.rows() for w in r.flush("w/0")][0][:1] == [
        ("s0", 'latency{pod="p-0"}', 1.7e9 + 1.0, 0.5, 1)]


def test_a_rollup_entry_is_one_list_without_a_key_tuple() -> None:
    """An entry was a 5-list and its key a (service, series key, row bytes) tuple
    (96 + 64 B); now one 7-list (112 B) under a dict per service: 460 -> 409 B per
    series in the fill above (issue 18). The rows are the same
    (``test_rca_stream_windows``)."""
    from sre_agent.streams.rca_windows import WindowRollup

    n = 2_000
    labels = [{"service": f"s{i % 20}", "pod": f"p-{i}"} for i in range(n)]

    def fill() -> WindowRollup:
        r = WindowRollup(bucket=60.0, horizon=600.0)
        r.add_series([{"name": "latency", "labels": labels[i],
                       "points": [(1.7e9 + 1.0 + i * 1e-3, 0.5 + i)]} for i in range(n)])
        del r.flush("w/0")[:]
        return r

    per_series = _traced_bytes(fill) / n
    assert per_series < 430, per_series  # 460 with the key tuple
