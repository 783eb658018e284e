"""Where a worker's memory goes, for benchmarks (issue 18): a debug report.

With ``SRE_DEBUG_MEMORY_REPORT=<path>`` in its environment the worker writes a
JSON report to ``<path>`` when ``<path>.want`` appears, from a daemon thread (never on
the event loop): the kernel's view (``/proc/self/smaps_rollup``), glibc's allocator (``mallinfo2``:
bytes in use, free bytes held in its arenas), RocksDB per table (memtables, block cache,
table readers, summed over the table's partition databases), the producer's backlog,
the tracked container types if ``<path>.want`` says ``types`` and, if the process runs
under ``PYTHONTRACEMALLOC``, Python's own allocations (total and the top lines). It reads
only: nothing in the worker changes with it on or off, except the thread's own cost.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["mallinfo", "report", "rocksdb_usage", "smaps_rollup", "start"]

ENV = "SRE_DEBUG_MEMORY_REPORT"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


def mallinfo() -> dict[str, int]:
    """glibc's totals over every arena: ``in_use`` (malloc'ed, not freed), ``free_held``
    (freed but kept in arenas), ``mmapped`` (large blocks mapped one by one); {} off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _Mallinfo2
    m = fn()
    return {"arena": m.arena, "mmapped": m.hblkhd, "in_use": m.uordblks + m.hblkhd,
            "free_held": m.fordblks, "top_releasable": m.keepcost}


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in bytes (Rss, Anonymous, Private_Dirty, ...)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "kB":
            out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


_PROPS = {"memtables": "rocksdb.cur-size-all-mem-tables",
          "block_cache": "rocksdb.block-cache-usage",
          "table_readers": "rocksdb.estimate-table-readers-mem"}


def rocksdb_usage(tables: Any) -> dict[str, dict[str, int]]:
    """Per table: bytes of RocksDB memory summed over its open partition databases.

    ``block_cache`` counts a cache once per database; a cache shared by databases is
    counted once per table (its largest reading)."""
    out: dict[str, dict[str, int]] = {}
    for name, table in tables.items():
        store = getattr(table, "_data", None)  # not created yet: no database opened
        dbs = list(getattr(store, "_dbs", {}).values()) if store is not None else []
        row = {"dbs": len(dbs), **{k: 0 for k in _PROPS}}
        shared_cache = getattr(getattr(store, "rocksdb_options", None), "shared", False)
        for db in dbs:
            for key, prop in _PROPS.items():
                try:
                    v = int(db.property_int_value(prop) or 0)
                except Exception:  # noqa: BLE001  (closed meanwhile)
                    v = 0
                if key == "block_cache" and shared_cache:
                    row[key] = max(row[key], v)
                else:
                    row[key] += v
        out[name] = row
    return out


def gc_types(top: int = 25) -> list[list[Any]]:
    """The container types the cyclic collector tracks, most numerous first:
    ``[name, count, shallow bytes]`` (bytes and str are not tracked: their holders are)."""
    import gc
    import sys

    count: dict[str, int] = {}
    size: dict[str, int] = {}
    for obj in gc.get_objects():
        t = type(obj)
        name = f"{t.__module__}.{t.__qualname__}"
        count[name] = count.get(name, 0) + 1
        size[name] = size.get(name, 0) + sys.getsizeof(obj)
    return [[n, c, size[n]] for n, c in sorted(count.items(), key=lambda kv: -kv[1])[:top]]


def producer_backlog(app: Any) -> dict[str, int]:
    """Messages waiting in Faust's producer buffer and bytes in aiokafka's batches."""
    out = {"faust_pending": 0, "aiokafka_batches": 0, "aiokafka_batch_bytes": 0}
    producer = getattr(app, "_producer", None)
    if producer is None:
        return out
    buffer = getattr(producer, "buffer", None)
    out["faust_pending"] = int(getattr(buffer, "size", 0) or 0)
    client = getattr(producer, "_producer", None) or getattr(producer, "_producer_obj", None)
    acc = getattr(client, "_message_accumulator", None)
    for batches in list(getattr(acc, "_batches", {}).values()):
        for batch in list(batches):
            out["aiokafka_batches"] += 1
            try:
                out["aiokafka_batch_bytes"] += int(batch.size())
            except Exception:  # noqa: BLE001  (another aiokafka version)
                pass
    return out


def report(tables: Any = None, top: int = 25, app: Any = None,
           types: bool = False) -> dict[str, Any]:
    import tracemalloc

    rep: dict[str, Any] = {"time": time.time(), "smaps": smaps_rollup(), "malloc": mallinfo()}
    if app is not None:
        rep["producer"] = producer_backlog(app)
    if types:
        rep["gc_types"] = gc_types(top)
    if tables is not None:
        rep["rocksdb"] = rocksdb_usage(tables)
        shared = getattr(tables, "memory", None)
        if shared is not None:  # one cache and memtable budget for every database
            rep["rocksdb_shared"] = shared.usage()
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        stats = snap.statistics("lineno")
        rep["python"] = {"traced": sum(s.size for s in stats), "top": [
            [str(s.traceback[0]), s.size, s.count] for s in stats[:top]]}
        if _FIRST:  # what grew since the first report (the empty worker's)
            diff = snap.compare_to(_FIRST[0], "lineno")
            rep["python"]["grown"] = [[str(d.traceback[0]), d.size_diff, d.count_diff]
                                      for d in diff[:top]]
        else:
            _FIRST.append(snap)
    return rep


#: the first tracemalloc snapshot taken (the baseline of ``grown``)
_FIRST: list[Any] = []


def start(tables: Any, poll: float = 0.5, app: Any = None) -> threading.Thread | None:
    """Start the report thread if the environment asks for it: a report is written
    each time the file ``<path>.want`` appears (and that file removed), so a Python
    snapshot, which holds the interpreter for seconds at 100,000 series, is taken
    only when asked for."""
    path = os.environ.get(ENV)
    if not path:
        return None
    want = Path(path + ".want")

    def loop() -> None:
        while True:
            if want.exists():
                try:
                    tmp = path + ".tmp"
                    types = want.read_text().strip() == "types"
                    Path(tmp).write_text(json.dumps(report(tables, app=app, types=types)))
                    os.replace(tmp, path)
                    want.unlink(missing_ok=True)
                except Exception:  # noqa: BLE001  (a debug aid never stops the worker)
                    pass
            time.sleep(poll)

    t = threading.Thread(target=loop, name="memory-report", daemon=True)
    t.start()
    return t
