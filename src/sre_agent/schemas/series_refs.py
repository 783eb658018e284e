"""Labels once per series on ``metrics``: the consumer side of schema v2's ``refs``.

A v2 producer puts a series' name and labels in ``series`` (with ``id``, its
:func:`~sre_agent.schemas.telemetry.series_key`) the first time it sends the
series in a session, and again every few minutes; in between it sends only
``{"id", "points"}`` in ``refs``. A producer marks a series as defined only once
the broker acknowledged the message that carried its labels, and a series'
messages all go to one shard (one partition): a definition always precedes its
refs in the partition's log.

:class:`SeriesDirectory` learns definitions (after checking that the id is the
key of the labels it comes with: an event cannot bind a key to other labels)
and turns refs back into full series. A consumer that starts in the middle of
the log (restart, rebalance) recovers the definitions it did not see from its
own saved state: :meth:`SeriesDirectory.take_new` hands out the definitions
learned since the last call, which the metrics agent writes to its
``series-labels`` table in the same checkpoint as the model state, before the
offsets are committed; ``load`` reads them back on a miss. A consumer without
such state (an external one) learns every series within the producers'
refresh interval; a ref it cannot resolve is reported, never guessed.

>>> from sre_agent.schemas import MetricBatch
>>> from sre_agent.schemas.telemetry import series_id, series_key
>>> k = series_key(series_id("cpu", {"pod": "a"}))
>>> d = SeriesDirectory()
>>> first = MetricBatch(series=[{"name": "cpu", "labels": {"pod": "a"}, "id": k,
...                              "points": [(1.0, 0.5)]}])
>>> d.expand(first).series[0]["name"]
'cpu'
>>> later = MetricBatch(series=[], refs=[{"id": k, "points": [(2.0, 0.7)]},
...                                      {"id": "0123456789abcdef", "points": [(2.0, 1.0)]}])
>>> got = d.expand(later)
>>> got.series
[{'name': 'cpu', 'labels': {'pod': 'a'}, 'points': [(2.0, 0.7)], 'id': '905561b771158356'}]
>>> [r["id"] for r in got.unresolved]
['0123456789abcdef']
>>> list(d.take_new())
['905561b771158356']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from sys import intern
from dataclasses import dataclass, field
from typing import Any

import orjson

from .telemetry import MetricBatch, series_id, series_key

__all__ = ["Expanded", "SeriesDirectory", "definition_bytes"]

#: bound of :class:`SeriesDirectory`'s memo of label values (entries)
MAX_VALUE_MEMO = 16_384
#: label name sets given a key-sharing dict class (:func:`_shared_dict`); past it, or
#: past CPython's 30 shared keys, a series' labels are a plain dict
MAX_LABEL_KINDS = 1_024
_MAX_SHARED_KEYS = 30


def _shared_dict(kinds: dict[tuple[str, ...], type], names: tuple[str, ...]) -> dict[str, str]:
    """An empty dict whose keys table is shared by every dict of ``names`` (issue 18).

    CPython keeps the keys of an instance ``__dict__`` once per class (PEP 412), each
    dict holds only its values: 120 B for five labels instead of a plain dict's 184.
    The result is a plain ``dict`` (same type, equality, order, JSON), nothing holds
    the instance; on another interpreter or a change of the dict it is simply a
    plain dict again.
    """
    cls = kinds.get(names)
    if cls is None:
        if len(kinds) >= MAX_LABEL_KINDS or len(names) > _MAX_SHARED_KEYS:
            return {}
        cls = kinds[names] = type("Labels", (), {})
    return cls().__dict__


def definition_bytes(name: str, labels: dict[str, str]) -> bytes:
    """A definition as stored in the ``series-labels`` table: ``[name, labels]``."""
    # a copy of exact size: orjson's own bytes keep a 4 KiB allocation, held until saved
    return bytes(memoryview(orjson.dumps([name, labels])))


@dataclass(slots=True)
class Expanded:
    """A batch's series with refs resolved; what could not be resolved or trusted."""

    series: list[Any] = field(default_factory=list)
    #: refs whose key no definition names (yet)
    unresolved: list[Any] = field(default_factory=list)
    #: definitions whose ``id`` is not the key of their labels
    mismatched: list[str] = field(default_factory=list)


class SeriesDirectory:
    """Series key -> (name, labels), learned from definitions; resolves refs.

    Parameters
    ----------
    load
        Optional ``key -> bytes | None`` reading a saved definition
        (:func:`definition_bytes`); called on a ref the directory does not know.
    """

    def __init__(self, load: Callable[[str], bytes | None] | None = None) -> None:
        self._load = load
        #: key -> (name, labels, tag)
        self._defs: dict[str, tuple[str, dict[str, str], int]] = {}
        #: tag -> definitions learned and not yet handed out by take_new
        self._new: dict[int, dict[str, bytes]] = {}
        #: label value -> the one copy the definitions share. Not ``sys.intern``: a
        #: value unique to its series (pod, instance) would cost an intern-table entry
        #: (~38 B) for nothing; bounded, so values that never repeat only churn it
        self._values: dict[str, str] = {}
        #: label names (in order) -> the class whose instance dicts share those keys
        self._kinds: dict[tuple[str, ...], type] = {}

    def __len__(self) -> int:
        return len(self._defs)

    def __contains__(self, key: object) -> bool:
        return key in self._defs

    def get(self, key: str) -> tuple[str, dict[str, str]] | None:
        d = self._defs.get(key)
        return (d[0], d[1]) if d is not None else None

    def _define(self, key: str, name: str, labels: dict[str, str], tag: int, new: bool) -> bool:
        if series_key(series_id(name, labels)) != key:
            return False
        # label names interned, values through the memo: shared by many series
        memo = self._values
        shared = _shared_dict(self._kinds, tuple(labels))
        for k, v in labels.items():
            c = memo.get(v)
            if c is None:
                if len(memo) >= MAX_VALUE_MEMO:
                    memo.clear()
                c = memo[v] = v
            shared[intern(k)] = c
        labels = shared
        self._defs[key] = (intern(name), labels, tag)
        if new:
            self._new.setdefault(tag, {})[key] = definition_bytes(name, labels)
        return True

    def _restore(self, key: str, tag: int) -> tuple[str, dict[str, str], int] | None:
        raw = self._load(key) if self._load is not None else None
        if not raw:
            return None
        try:
            name, labels = orjson.loads(raw)
            if not (isinstance(name, str) and isinstance(labels, dict)
                    and all(isinstance(v, str) for v in labels.values())):
                return None
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        if not self._define(key, name, labels, tag, new=False):
            return None
        return self._defs[key]

    def expand(self, batch: MetricBatch, tag: int = -1) -> Expanded:
        """Learn the batch's definitions; return its series with refs resolved.

        ``tag`` (the stream layer passes the partition) selects definitions in
        :meth:`take_new` and :meth:`forget`.
        """
        out = Expanded(series=batch.series)
        defs = self._defs
        for s in batch.series:
            key = s.get("id")
            if key is None:
                continue
            d = defs.get(key)
            if d is None:
                ok = self._define(key, s["name"], s["labels"], tag, new=True)
            else:  # labels sent again: the key must still be theirs
                ok = d[0] == s["name"] and d[1] == s["labels"]
            if not ok:
                out.mismatched.append(key)
                del s["id"]  # not its key: what reads "id" downstream can trust it
            else:  # the same labels, interned: what a model keeps shares the strings
                s["name"], s["labels"] = defs[key][0], defs[key][1]
        if batch.refs:
            out.series = resolved = list(batch.series)
            for r in batch.refs:
                key = r["id"]
                d = defs.get(key) or self._restore(key, tag)
                if d is None:
                    out.unresolved.append(r)
                else:
                    resolved.append({"name": d[0], "labels": d[1], "points": r["points"],
                                     "id": key})
        return out

    def take_new(self, tag: int | None = None) -> dict[str, bytes]:
        """Definitions learned since the last call (of ``tag``, or all): to save."""
        if tag is None:
            out: dict[str, bytes] = {}
            for part in self._new.values():
                out.update(part)
            self._new.clear()
            return out
        return self._new.pop(tag, {})

    def forget(self, tags: Iterable[int]) -> int:
        """Drop the definitions of ``tags`` (revoked partitions); return how many."""
        gone = set(tags)
        drop = [k for k, d in self._defs.items() if d[2] in gone]
        for k in drop:
            del self._defs[k]
        for t in gone:
            self._new.pop(t, None)
        return len(drop)
