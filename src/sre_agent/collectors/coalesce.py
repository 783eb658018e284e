"""Coalescing where the data arrives: samples -> few, large ``metrics`` messages.

Prometheus pushes about 2,000 samples per remote-write request, spread over
every series shard: produced as they come, a ``metrics`` message would carry
~30 series, and a consumer pays its per-message costs ~30 times per 1,000
samples. :class:`Coalescer` holds samples per ``(source, shard)`` for a short
``linger`` (or until a message is full) and produces one message per shard, so
messages carry hundreds of series. Given ``route`` (shard -> the partition its
key goes to), it coalesces the shards that share a partition into one message,
keyed by the lowest of them (so it goes to that partition): with 64 shards on 4
partitions a message carries 16 times as many series, and each per-message cost
(producer request, Faust delivery, the consumer's decode and model step) is paid
16 times less often. A series still always goes to the one partition of its shard.

Guarantees:

* **nothing acknowledged before it is stored**: :meth:`Coalescer.submit`
  returns only once every message holding the caller's samples was
  acknowledged by the broker, and raises if one failed (the HTTP receiver then
  answers 503 and the sender retries);
* **bounded**: at most ``max_buffered_samples`` are held (waiting or in
  flight); a submit over that raises :class:`BufferFull` at once (HTTP 503
  with ``Retry-After``, which Prometheus retries), never queues without limit;
* **labels once per series** (schema v2): a series' name and labels travel in
  ``series`` (with ``id``) until a message carrying them was acknowledged,
  then only ``{"id", "points"}`` in ``refs``; again every ``label_refresh``
  seconds and in every new process (session), so consumers without saved
  state learn them (see :mod:`sre_agent.schemas.series_refs`).

>>> import asyncio
>>> sent = []
>>> async def send(key, value):
...     sent.append((key, orjson.loads(value)))
>>> async def main():
...     c = Coalescer(send, shards=4, linger=0.01)
...     cache = SeriesCache(4)
...     a = cache.of("cpu", {"pod": "a"})
...     await asyncio.gather(c.submit([(a, [(1.0, 0.5)])]), c.submit([(a, [(2.0, 0.6)])]))
...     await c.submit([(a, [(3.0, 0.7)])])
>>> asyncio.run(main())
>>> [(len(m["series"]), len(m["refs"])) for _, m in sent]
[(1, 0), (0, 1)]
>>> sent[0][1]["series"][0]["points"]
[[1.0, 0.5], [2.0, 0.6]]
"""

from __future__ import annotations

import asyncio
import time
from math import inf
from operator import itemgetter
import uuid
from sys import intern
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..processors.redact import redact_obj
from ..schemas.telemetry import MAX_LABELS, series_id, series_key, shard_of
from .prompb import TimeSeries

__all__ = ["BufferFull", "Coalescer", "SeriesCache", "SeriesMeta", "label_problem"]

#: the ``metrics`` schema's limits (see :class:`~sre_agent.schemas.MetricSeries`)
MAX_NAME, MAX_LABEL_NAME, MAX_LABEL_VALUE, MAX_POINTS = 256, 128, 512, 10_000

Point = tuple[float, float]
_points_of = itemgetter(1)


def label_problem(name: str, labels: dict[str, str]) -> str | None:
    """Why a series' name/labels break the ``metrics`` schema, or None.

    >>> label_problem("cpu", {"": "x"})
    'label name must be 1-128 characters'
    """
    if not name:
        return "series has no __name__ label"
    if len(name) > MAX_NAME:
        return f"metric name longer than {MAX_NAME} characters"
    if len(labels) > MAX_LABELS:
        return f"more than {MAX_LABELS} labels"
    for k, v in labels.items():
        if not 0 < len(k) <= MAX_LABEL_NAME:
            return f"label name must be 1-{MAX_LABEL_NAME} characters"
        if len(v) > MAX_LABEL_VALUE:
            return f"label value longer than {MAX_LABEL_VALUE} characters"
    return None


def _decode_src(src: Any) -> tuple[str, dict[str, str]]:
    """Name and labels from a cache key: the labels' remote-write bytes (``Label``
    fields of a ``TimeSeries``), ``(name, *label pairs)``, or label pairs with ``__name__``."""
    if isinstance(src, bytes):
        pairs: Any = [(lab.name, lab.value) for lab in TimeSeries.FromString(src).labels]
    elif src and isinstance(src[0], str):
        return src[0], dict(src[1:])
    else:
        pairs = src
    labels = dict(pairs)
    return labels.pop("__name__", ""), labels


class SeriesMeta:
    """What is computed once per series: key, shard, JSON size.

    The name and labels are needed only for a definition (the first message of a
    series, then every ``label_refresh``): they are read back from ``src``, the
    cache key the series was found under (its labels' wire bytes), not kept a
    second time, so a cached series costs a few hundred bytes. Labels that
    redaction changed are the exception, kept as redacted (``fixed``).
    """

    __slots__ = ("src", "key", "shard", "size", "fixed")

    def __init__(self, src: Any, key: str, shard: int, size: int,
                 fixed: tuple[str, dict[str, str]] | None = None) -> None:
        self.src, self.key, self.shard, self.size, self.fixed = src, key, shard, size, fixed

    def definition(self) -> tuple[str, dict[str, str]]:
        """The series' name and (redacted) labels."""
        return self.fixed if self.fixed is not None else _decode_src(self.src)

    @property
    def name(self) -> str:
        return self.definition()[0]

    @property
    def labels(self) -> dict[str, str]:
        return self.definition()[1]

    @property
    def sid(self) -> str:
        return series_id(*self.definition())


#: bound of :class:`SeriesCache`'s memo of redacted label values (entries)
MAX_CLEAN_MEMO = 16_384


class SeriesCache:
    """Cache key -> :class:`SeriesMeta`, so a series' id, key and shard are computed
    once, not per sample. The key is the series' labels as they come on the wire
    (remote write) or ``(name, *label pairs)``. Cleared when it reaches ``max_entries``."""

    def __init__(self, shards: int, max_entries: int = 1_000_000) -> None:
        self.shards = shards
        self.max_entries = max_entries
        self._by: dict[Any, SeriesMeta] = {}
        #: ``dict.get`` of the cache: the hot path's lookup without a method call
        self.lookup = self._by.get
        #: (label name, value) -> the value redacted and cut: most values (job,
        #: namespace, service, the name) repeat over many series, and redacting one
        #: runs a dozen regular expressions (~2/3 of a new series' cost)
        self._clean: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._by)

    def make(self, name: str, labels: dict[str, str], src: Any) -> SeriesMeta:
        """The meta of a new series found under cache key ``src`` (which must decode to
        ``name`` and ``labels``); secrets in its labels are redacted here, at the source,
        once per series (a secret-named label loses its value)."""
        memo, clean = self._clean, {}
        for k, v in labels.items():
            c = memo.get((k, v))
            if c is None:  # redaction is per label (its name and value): memoised per pair
                c = redact_obj({k: v}, personal=False)[k][:MAX_LABEL_VALUE]
                if len(memo) >= MAX_CLEAN_MEMO:
                    memo.clear()
                memo[(k, v)] = c
            clean[k] = c
        sid = series_id(name, clean)
        size = len(name) + sum(len(k) + len(v) + 6 for k, v in clean.items()) + 40
        # interned: names and common values (namespace, job...) are shared by many series
        fixed = None if clean == labels else (
            intern(name), {intern(k): intern(v) for k, v in clean.items()})
        return SeriesMeta(src, series_key(sid), shard_of(sid, self.shards), size, fixed)

    def remember(self, fk: tuple[Any, ...], meta: SeriesMeta) -> SeriesMeta:
        if len(self._by) >= self.max_entries:
            self._by.clear()  # the same dict: ``lookup`` stays valid
        self._by[fk] = meta
        return meta

    def get(self, fk: tuple[Any, ...]) -> SeriesMeta | None:
        return self._by.get(fk)

    def of(self, name: str, labels: dict[str, str]) -> SeriesMeta:
        """The meta of a series already known to be valid (see :func:`label_problem`)."""
        fk = (name, *labels.items())
        meta = self._by.get(fk)
        if meta is None:
            meta = self.remember(fk, self.make(name, dict(labels), fk))
        return meta


class BufferFull(Exception):
    """The coalescer holds its maximum: try again after ``retry_after`` seconds."""

    def __init__(self, buffered: int, limit: int, retry_after: int) -> None:
        super().__init__(f"ingest buffer full: {buffered} samples held (limit {limit}); "
                         f"retry in {retry_after}s")
        self.retry_after = retry_after


@dataclass(slots=True)
class _Waiter:
    fut: asyncio.Future[None]
    pending: int = 0


@dataclass(slots=True)
class _Chunk:
    source: str
    shard: int
    #: key -> (meta, points)
    entries: dict[str, tuple[SeriesMeta, list[Point]]] = field(default_factory=dict)
    samples: int = 0
    size: int = 0
    waiters: list[_Waiter] = field(default_factory=list)
    #: event-loop time the chunk's first sample came
    born: float = 0.0
    #: the coalescer's grouping when the chunk was made (see :meth:`Coalescer.regroup`)
    generation: int = 0


class Coalescer:
    """Per-shard buffers with a linger, bounded, acknowledged only once produced.

    Parameters
    ----------
    send
        ``async (key, value) -> None``: produce one ``metrics`` message and return
        once the broker acknowledged it (raise if it could not).
    shards
        Series shards (the ``metrics`` key).
    linger
        Seconds a sample waits for more of its shard before it is produced...
    min_series_per_message, max_linger
        ...unless its shard's message has fewer than ``min_series_per_message``
        series: then it waits up to ``max_linger`` (few samples per shard, as at a
        low rate or with many shards, would otherwise make many tiny messages).
    max_series_per_message, max_message_bytes
        A shard's message is produced at once when it reaches either.
    max_buffered_samples
        Samples held at most (waiting + in flight); more -> :class:`BufferFull`.
    label_refresh
        Seconds after which a series' labels are sent again in full.
    route
        ``shard -> partition`` of the ``metrics`` key ``str(shard)`` (None while
        unknown, e.g. before the producer has the topic's metadata). With it, the
        shards of one partition share messages (keyed by the lowest of them); it is
        asked again every ``regroup_every`` seconds after a message was produced,
        and labels are sent again when the grouping changed (partitions added).
    """

    def __init__(self, send: Callable[[bytes, bytes], Awaitable[None]], shards: int, *,
                 linger: float = 0.1, max_series_per_message: int = 2000,
                 max_message_bytes: int = 512 * 1024, max_buffered_samples: int = 200_000,
                 label_refresh: float = 300.0, max_known: int = 1_000_000,
                 min_series_per_message: int = 1, max_linger: float | None = None,
                 route: Callable[[int], int | None] | None = None,
                 regroup_every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self.shards = shards
        self.linger = linger
        self.max_series = max_series_per_message
        self.min_series = min_series_per_message
        self.max_linger = max(linger, max_linger if max_linger is not None else linger)
        self.max_bytes = max_message_bytes
        self.max_buffered = max_buffered_samples
        self.label_refresh = label_refresh
        self.max_known = max_known
        self._clock = clock
        self._route = route
        self.regroup_every = regroup_every
        #: shard -> the shard whose message carries it (the lowest one of its partition)
        self._group: list[int] | None = None
        self._grouped_at = -float("inf")
        #: bumped when the grouping changes: labels sent under an older one do not count
        self._generation = 0
        self._chunks: dict[tuple[str, int], _Chunk] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: series key -> when a message carrying its labels was acknowledged
        self._known: dict[str, float] = {}
        self.buffered = 0
        self.stats = {"messages": 0, "series": 0, "refs": 0, "samples": 0, "failed_messages": 0,
                      "refused_submits": 0}

    # ------------------------------------------------------------------ intake
    async def submit(self, items: Sequence[tuple[SeriesMeta, list[Point]]],
                     source: str = "remote-write") -> None:
        """Buffer ``items`` and return once all of them are acknowledged by the broker.

        Raises :class:`BufferFull` at once when the buffer cannot take them, or the
        producer's error when a message holding them could not be produced.
        """
        # one pass: the samples counted (the bound is checked before anything is held)
        # and the items split by message (shard, or partition group), so the loop
        # below touches one chunk at a time
        group = self._group
        by: dict[int, list[tuple[SeriesMeta, list[Point]]]] = {}
        n = 0
        for item in items:
            k = len(item[1])
            if k:  # a series without points would make the whole message invalid
                n += k
                shard = item[0].shard if group is None else group[item[0].shard]
                part = by.get(shard)
                if part is None:
                    by[shard] = [item]
                else:
                    part.append(item)
        if n == 0:
            return
        if self.buffered + n > self.max_buffered and self.buffered > 0:
            self.stats["refused_submits"] += 1
            raise BufferFull(self.buffered, self.max_buffered, 1)
        self.buffered += n
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future())
        now = loop.time()
        chunks = self._chunks
        known = self._known
        max_series, max_bytes = self.max_series, self.max_bytes
        for shard, part in by.items():
            chunk: _Chunk | None = chunks.get((source, shard))
            if chunk is not None and self._take_whole(chunk, part, waiter):
                continue
            if chunk is None and len(part) < max_series:
                chunk = chunks[(source, shard)] = _Chunk(
                    source, shard, born=now, generation=self._generation)
                if self._take_whole(chunk, part, waiter):
                    continue
            chunk = None
            entries: dict[str, tuple[SeriesMeta, list[Point]]] = {}
            size = samples = 0
            for meta, pts in part:
                if chunk is None:
                    chunk = chunks.get((source, shard))
                    if chunk is None:
                        chunk = chunks[(source, shard)] = _Chunk(
                            source, shard, born=now, generation=self._generation)
                    chunk.waiters.append(waiter)
                    waiter.pending += 1
                    entries, size, samples = chunk.entries, chunk.size, chunk.samples
                key = meta.key
                k = len(pts)
                held = entries.get(key)
                if held is None:  # the caller's list, held as it is: never mutated here
                    entries[key] = (meta, pts)
                    size += 44 * k + (30 if key in known else meta.size)
                elif len(held[1]) + k <= MAX_POINTS:
                    entries[key] = (meta, held[1] + pts)
                    size += 44 * k
                else:  # the series' points would pass the schema's limit: a new message
                    chunk.size, chunk.samples = size, samples
                    self._flush(chunk)
                    chunk = chunks[(source, shard)] = _Chunk(
                        source, shard, born=now, generation=self._generation)
                    chunk.waiters.append(waiter)
                    waiter.pending += 1
                    entries, samples = chunk.entries, 0
                    entries[key] = (meta, pts)
                    size = 44 * k + (30 if key in known else meta.size)
                samples += k
                if size >= max_bytes or len(entries) >= max_series:
                    chunk.size, chunk.samples = size, samples
                    self._flush(chunk)
                    chunk = None
            if chunk is not None:
                chunk.size, chunk.samples = size, samples
        if self._chunks and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._linger_over)
        await waiter.fut

    def _take_whole(self, chunk: _Chunk, part: list[tuple[SeriesMeta, list[Point]]],
                    waiter: _Waiter) -> bool:
        """Add ``part`` to ``chunk`` in one step when that is what the item-by-item loop
        of :meth:`submit` would do: every series new to the chunk, and the chunk stays
        below both message limits (so it is not produced yet). The entries are the
        caller's ``(meta, points)`` items, in order; False (nothing done) otherwise."""
        entries = chunk.entries
        if len(entries) + len(part) >= self.max_series:
            return False
        new = {item[0].key: item for item in part}
        if len(new) != len(part) or not entries.keys().isdisjoint(new):
            return False  # a series twice: its points are joined item by item
        known = self._known
        n_known = sum(map(known.__contains__, new))
        size = 30 * n_known + (0 if n_known == len(new) else
                               sum([m.size for m, _ in part if m.key not in known]))
        samples = sum(map(len, map(_points_of, part)))
        size += 44 * samples
        if chunk.size + size >= self.max_bytes:
            return False
        entries.update(new)
        chunk.size += size
        chunk.samples += samples
        chunk.waiters.append(waiter)
        waiter.pending += 1
        return True

    # ------------------------------------------------------------------ output
    def _linger_over(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for chunk in list(self._chunks.values()):
            if (len(chunk.entries) >= self.min_series
                    or now - chunk.born >= self.max_linger - 1e-3):
                self._flush(chunk)
        if self._chunks:  # small messages wait for more, up to max_linger
            oldest = min(c.born for c in self._chunks.values())
            wait = min(self.linger, max(0.0, oldest + self.max_linger - now))
            self._timer = loop.call_later(wait, self._linger_over)

    def _flush(self, chunk: _Chunk) -> None:
        """Detach ``chunk`` and produce it in the background."""
        ck = (chunk.source, chunk.shard)
        if self._chunks.get(ck) is chunk:
            del self._chunks[ck]
        task = asyncio.ensure_future(self._produce(chunk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def regroup(self) -> bool:
        """Ask ``route`` where each shard's key goes and share messages among the shards
        of one partition; True when the grouping changed (labels are then sent again:
        a series whose partition moved must be defined in its new partition first)."""
        self._grouped_at = self._clock()
        if self._route is None:
            return False
        parts = []
        for shard in range(self.shards):
            try:
                p = self._route(shard)
            except Exception:  # noqa: BLE001 - no metadata yet: per shard until there is
                p = None
            if p is None:
                return False
            parts.append(p)
        first: dict[int, int] = {}
        group = [first.setdefault(p, shard) for shard, p in enumerate(parts)]
        if group == self._group:
            return False
        if self._group is not None:
            self.forget_labels()
            self._generation += 1
        self._group = group
        return True

    def _payload(self, chunk: _Chunk, now: float) -> tuple[bytes, list[str]]:
        at = self._known.get
        fresh = now - self.label_refresh  # labels acknowledged after this: a ref will do
        entries = chunk.entries
        refs = [{"id": key, "points": e[1]} for key, e in entries.items()
                if at(key, -inf) > fresh]
        series: list[dict[str, Any]] = []
        defined: list[str] = []
        if len(refs) < len(entries):
            for key, (meta, pts) in entries.items():
                if not at(key, -inf) > fresh:
                    name, labels = meta.definition()
                    series.append({"name": name, "labels": labels, "points": pts, "id": key})
                    defined.append(key)
        body = {"schema_version": 2, "event_id": uuid.uuid4().hex,
                "time": datetime.now(UTC), "source": chunk.source, "shard": chunk.shard,
                "series": series, "refs": refs}
        self.stats["series"] += len(series)
        self.stats["refs"] += len(refs)
        return orjson.dumps(body), defined

    async def _produce(self, chunk: _Chunk) -> None:
        now = self._clock()
        error: BaseException | None = None
        try:
            value, defined = self._payload(chunk, now)
            await self._send(str(chunk.shard).encode(), value)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter
            error = exc
            self.stats["failed_messages"] += 1
        else:
            if len(self._known) + len(defined) > self.max_known:
                self._known.clear()
            if chunk.generation == self._generation:  # else: its partition may have moved
                for key in defined:
                    self._known[key] = now
            if self._route is not None and (self._group is None
                                            or now - self._grouped_at >= self.regroup_every):
                self.regroup()  # the producer has the topic's metadata now
            self.stats["messages"] += 1
            self.stats["samples"] += chunk.samples
        finally:
            self.buffered -= chunk.samples
        for w in chunk.waiters:
            if w.fut.done():
                continue
            if error is not None:
                w.fut.set_exception(error)
            else:
                w.pending -= 1
                if w.pending == 0:
                    w.fut.set_result(None)

    def forget_labels(self) -> None:
        """Send every series' labels again (e.g. after the topic was re-created)."""
        self._known.clear()

    async def close(self) -> None:
        """Produce what is held and wait for every message in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for chunk in list(self._chunks.values()):
            self._flush(chunk)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def health(self) -> dict[str, Any]:
        msgs = self.stats["messages"]
        return {**self.stats, "buffered_samples": self.buffered,
                "max_buffered_samples": self.max_buffered, "known_series": len(self._known),
                "message_groups": len(set(self._group)) if self._group else self.shards,
                "series_per_message": round((self.stats["series"] + self.stats["refs"])
                                            / msgs, 1) if msgs else None}
