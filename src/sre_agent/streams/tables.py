"""Faust tables (RocksDB store, changelog-backed).

Tables are co-partitioned with the topic whose agent writes them, so their
partition count equals that topic's. Stages declare their own tables through
:meth:`Tables.declare` inside their ``register`` (before the app starts).

Memory: every table partition is a RocksDB database. Faust opens each with its own
2 GiB block cache and up to 3 x 64 MiB of memtables; a worker with 13 tables of 4
partitions (and standbys) could hold gigabytes, and did grow with the bytes it wrote:
every version of a 256 KiB state leaf that it read back stayed cached (issue 18:
6.1 KB per series of block cache, 2.4 KB of memtables at 100,000 series). Here all
databases of the worker share one block cache (``worker.rocksdb_block_cache_bytes``) and
one memtable budget (``worker.rocksdb_memtable_bytes``, a RocksDB write buffer manager).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb

from ..config import Settings

__all__ = ["STORE_URL", "SharedMemory", "SharedMemoryStore", "Tables"]

#: the store of every table: Faust's RocksDB store with :class:`SharedMemory`
STORE_URL = "sre-rocksdb://"
STORES.aliases.setdefault("sre-rocksdb", f"{__name__}:SharedMemoryStore")
#: app attribute holding the worker's :class:`SharedMemory`
SHARED_MEMORY = "sre_rocksdb_memory"


class SharedMemory:
    """One block cache and one memtable budget for every RocksDB database of a worker.

    A database's own memtable may grow to a quarter of the budget (so the busy table's
    partitions each fill one before the manager makes the one written to flush), at most
    Faust's 64 MiB; two per database (one filling while the other is written out).
    """

    def __init__(self, block_cache_bytes: int, memtable_bytes: int) -> None:
        import rocksdict

        self.block_cache_bytes, self.memtable_bytes = block_cache_bytes, memtable_bytes
        self.cache = rocksdict.Cache(block_cache_bytes)
        self.write_buffers = rocksdict.WriteBufferManager(memtable_bytes, False)
        self.write_buffer_size = max(2**20, min(64 * 2**20, memtable_bytes // 4))
        self.max_write_buffer_number = 2

    def usage(self) -> dict[str, int]:
        return {"block_cache": self.cache.get_usage(),
                "memtables": self.write_buffers.get_usage()}


class _SharedOptions(faust_rocksdb.RocksDBOptions):
    """Faust's options for one database (rocksdict), with the shared cache and budget."""

    shared = True

    def __init__(self, memory: SharedMemory, **kw: Any) -> None:
        super().__init__(write_buffer_size=memory.write_buffer_size,
                         max_write_buffer_number=memory.max_write_buffer_number,
                         block_cache_size=memory.block_cache_bytes, **kw)
        self.memory = memory

    def as_options(self) -> Any:
        import rocksdict

        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_max_open_files(self.max_open_files)
        opts.set_write_buffer_size(self.write_buffer_size)
        opts.set_target_file_size_base(self.target_file_size_base)
        opts.set_max_write_buffer_number(self.max_write_buffer_number)
        opts.set_write_buffer_manager(self.memory.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(self.memory.cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        opts.set_block_based_table_factory(table)
        return opts


_SHARED_KEYS = frozenset({"write_buffer_size", "max_write_buffer_number", "block_cache_size",
                          "use_rocksdict"})


class SharedMemoryStore(faust_rocksdb.Store):
    """Faust's RocksDB store whose databases use the app's :class:`SharedMemory`
    (without one, or with the python-rocksdb driver, Faust's own options)."""

    def __init__(self, url: Any, app: Any, table: Any, **kw: Any) -> None:
        super().__init__(url, app, table, **kw)
        memory = getattr(app, SHARED_MEMORY, None)
        if memory is not None and self.use_rocksdict:
            own = {k: v for k, v in self.options.items() if k not in _SHARED_KEYS}
            self.rocksdb_options = _SharedOptions(memory, **own, use_rocksdict=True)


class Tables:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._app = app
        self._partitions = settings.kafka.partitions
        w = settings.worker
        #: the RocksDB memory of every table (see the module's doc)
        self.memory: SharedMemory | None = None
        if w.rocksdb_block_cache_bytes and w.rocksdb_memtable_bytes:
            self.memory = SharedMemory(w.rocksdb_block_cache_bytes, w.rocksdb_memtable_bytes)
        setattr(app, SHARED_MEMORY, self.memory)
        self._all: dict[str, Any] = {}
        #: series id -> compact model state (bytes), written per batch
        self.baselines = self.declare("baselines", help="per-series online baseline state")

    def declare(self, name: str, raw: bool = True, **kw: Any) -> Any:
        """Declare a table with the topics' partition count.

        ``raw`` tables map ``str`` keys to ``bytes`` values (the stage encodes
        its own compact state); otherwise pass ``key_type``/``value_type``.
        """
        kw.setdefault("partitions", self._partitions)
        if raw:
            kw.setdefault("key_type", str)
            kw.setdefault("value_type", bytes)
            # the changelog must carry raw bytes too, or a worker taking over a partition
            # cannot replay it (Faust would build it with the 'json' serializers)
            kw.setdefault("changelog_topic", self._app.topic(
                f"{self._app.conf.id}-{name}-changelog", key_type=str, value_type=bytes,
                key_serializer="raw", value_serializer="raw", partitions=kw["partitions"],
                compacting=True, acks=False, internal=True))
        table = self._app.Table(name, **kw)
        if raw:
            # Faust derives table serializers from the types ('json' for str/bytes);
            # set them before the store is created (lazily, at first use)
            table.key_serializer = "raw"
            table.value_serializer = "raw"
        self._all[name] = table
        return table

    def __getitem__(self, name: str) -> Any:
        return self._all[name]

    def items(self) -> list[tuple[str, Any]]:
        return list(self._all.items())
