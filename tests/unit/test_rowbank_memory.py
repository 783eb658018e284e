"""RowBank growth: the unused half of a doubled state matrix is not resident (issue 18)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import numpy as np

from sre_agent.models.rows import RowBank


def _rss() -> int:
    """Resident bytes from /proc (the project runs on Linux; elsewhere this fails loudly)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class _Wide(RowBank):
    width = 135  # the tail bank's row (state v7)


def test_growth_keeps_rows_and_zeroes_the_rest() -> None:
    b = _Wide(capacity=4)
    for i in range(5):
        s = b.add(np.full(_Wide.width, float(i + 1)))
        assert s == i
    assert b.S.shape == (8, _Wide.width)
    assert (b.S[:5] == np.arange(1, 6)[:, None]).all() and not b.S[5:].any()
    assert len(b) == 5


def test_unused_half_of_a_grown_matrix_is_not_resident() -> None:
    """Measured in a fresh interpreter: in a test process that ran other tests, the
    allocator may hand back memory already touched, and process RSS counted it (a CI run
    saw +37 MB where a fresh process sees ~0)."""
    code = f"""
import gc, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_rowbank_memory import _Wide, _rss
b = _Wide(capacity=32_768)  # 35 MB at 135 columns: large allocations are mapped lazily
b.S[:] = 1.0
del b._free[:]
gc.collect()
before = _rss()
b.add()  # doubles to 70 MB; the old 35 MB is freed
gc.collect()
print(_rss() - before, b.S.nbytes)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    grew, nbytes = int(out[0]), int(out[1])
    # vstack wrote the new half's zeros: +35 MB resident; zeros + copy: ~0
    assert grew < 0.25 * nbytes / 2, grew


def test_free_slots_cost_bytes_not_int_objects() -> None:
    """The free slots were a list of int objects (~36 B a slot; half the slots are free
    right after a doubling: 65,536 at 131,072); an ``array`` holds 8 B a slot (issue 18,
    memory). Slots still come out lowest first and removed slots are reused first."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        b = _Wide(capacity=1)
        b.S = np.zeros((1, 1))  # the rows' bytes are numpy's: only the bookkeeping traced
        b.width = 1
        for _ in range(65_537):
            b.add()
        used = tracemalloc.get_traced_memory()[0] - before - b.S.nbytes
    finally:
        tracemalloc.stop()
    free = b.S.shape[0] - len(b)
    assert free == 65_535 and used / free < 12, used / free
    b.remove(7)
    b.remove(3)
    assert b.add() == 3 and b.add() == 7 and b.add() == 65_537
