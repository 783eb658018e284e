"""The tables' RocksDB memory is bounded by settings, whatever a worker writes (issue 18).

Faust opened every table partition with its own 2 GiB block cache and up to 3 x 64 MiB
of memtables: at 100,000 series a worker held 6.1 KB per series of cached blocks (each
version of a 256 KiB state leaf it read back) and 2.4 KB of memtables. The databases of
the app built by ``create_app`` now share one cache and one memtable budget.
"""

from __future__ import annotations

import time
from pathlib import Path

from sre_agent.config import load_settings
from sre_agent.streams import create_app

CACHE, MEMTABLES = 4 * 2**20, 8 * 2**20
LEAF = 256 * 1024


def _dbs(tmp_path: Path) -> tuple[object, list[object]]:
    settings = load_settings(env={
        "SRE_AGENT_WORKER__DATA_DIR": str(tmp_path),
        "SRE_AGENT_WORKER__ROCKSDB_BLOCK_CACHE_BYTES": str(CACHE),
        "SRE_AGENT_WORKER__ROCKSDB_MEMTABLE_BYTES": str(MEMTABLES)})
    _app, ctx = create_app(settings)
    dbs = [ctx.tables[name].data._db_for_partition(p)
           for name in ("baselines", "forecasts") for p in range(2)]
    return ctx.tables, dbs


def _memtables(dbs: list[object]) -> int:
    return sum(int(db.property_int_value("rocksdb.cur-size-all-mem-tables")) for db in dbs)


def test_table_databases_share_one_bounded_cache_and_memtable_budget(tmp_path: Path) -> None:
    tables, dbs = _dbs(tmp_path)
    # four databases, 12 MiB each per version, three versions: 144 MiB written, each
    # version read back (as checkpoints and series activations do)
    for version in range(3):
        for d, db in enumerate(dbs):
            for k in range(48):
                db[b"leaf-%d" % k] = bytes([version, d, k]) * (LEAF // 3)
        for db in dbs:
            for k in range(48):
                assert db[b"leaf-%d" % k][:1] == bytes([version])
    deadline = time.monotonic() + 20  # background flushes catch up
    while _memtables(dbs) > MEMTABLES * 1.1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _memtables(dbs) <= MEMTABLES * 1.1
    for db in dbs:  # one cache, the setting's size (Faust: 2 GiB for each database)
        assert int(db.property_int_value("rocksdb.block-cache-capacity")) == CACHE
        assert int(db.property_int_value("rocksdb.block-cache-usage")) <= CACHE * 1.1
    usage = tables.memory.usage()
    assert usage["block_cache"] <= CACHE * 1.1 and usage["memtables"] <= MEMTABLES * 1.1


def test_memory_report_reads_the_shared_rocksdb_memory(tmp_path: Path) -> None:
    from sre_agent.streams import memory_report

    tables, dbs = _dbs(tmp_path)
    dbs[0][b"leaf"] = bytes(LEAF)
    rep = memory_report.report(tables, types=True)
    assert rep["smaps"]["Rss"] > 0 and rep["malloc"]["in_use"] > 0
    assert rep["rocksdb"]["baselines"]["dbs"] == 2
    assert rep["rocksdb_shared"]["memtables"] >= LEAF
    assert rep["gc_types"][0][1] > 0
