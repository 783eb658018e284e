"""Per-series state packed into table records that stay under a byte budget.

A Faust table write costs tens of µs (RocksDB put + a changelog record), so
one key per series would cost more than the model. Series are packed into
*leaves*, each one table record, and a record never grows past
``max_record_bytes`` (Kafka refuses records over ``message.max.bytes``, 1 MB by
default): a leaf that would is *split* in two.

Layout (version 2). Per partition, a binary trie on a 64-bit hash of the series
id (BLAKE2b, independent of the crc32 shard hash: the series of one shard
spread over every leaf). The leaf of depth ``d`` holding hash ``h`` is the
record ``"<partition>/t<d>.<h mod 2**d>"``; the root is ``"<p>/t0.0"``. A leaf
over the budget becomes a *split marker* (a two-byte record) after its two
children (depth ``d + 1``, split on bit ``d``) were written: the changelog keeps
a partition's records in order, so a reader that sees the marker finds both
children, and one that does not still finds the whole leaf. A reader walks
from the root, one record per level, once per leaf per process. Leaves are
never merged.

Version 1 (``"<p>/<crc32 % 64>"`` groups, magic ``B1``) used the shard's hash,
so with 64 shards one group held a 64th of *all* series and passed 1 MB near
80,000 series. Its records are **read once and rewritten**: on the first use of
a partition the 64 old groups are read, their series put in their v2 leaves
(where v2 holds no newer state of them) and written with the next checkpoint,
then the old keys are deleted. Rewriting rather than discarding keeps weeks of
learned baselines (daily profiles need a day to come back) across the upgrade.

What a checkpoint writes: every leaf holding a series that changed, whole
(its series not yet seen since a restart stay *cold*, bytes only, and are
written back with it). Pure: the caller passes the table's ``get`` and applies
the ``(key, value or None to delete)`` pairs :meth:`BlobStore.write` returns, in
order.

Examples
--------
>>> table = {}
>>> store = BlobStore(max_record_bytes=4096)
>>> store.activate(0, "cpu{pod=\\"a\\"}", table.get) is None   # nothing saved yet
True
>>> states = {"cpu{pod=\\"a\\"}": b"state-a"}
>>> take = lambda sids: {s: states[s] for s in sids}          # the model's serializer
>>> for key, value in store.write(0, states, take, table.get):
...     table[key] = value
>>> list(table)
['0/t0.0']
>>> fresh = BlobStore(max_record_bytes=4096)                   # after a restart
>>> fresh.activate(0, "cpu{pod=\\"a\\"}", table.get)
b'state-a'
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
import sys
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["BlobStore", "leaf_hash", "pack_leaf", "pack_v1", "unpack_leaf", "unpack_v1"]

log = logging.getLogger(__name__)

_LEAF, _SPLIT, _V1 = b"L2", b"S2", b"B1"
_HEAD = struct.Struct("<2sI")
_V1_HEAD = struct.Struct("<HI")
_MAX_DEPTH = 64
#: v1 groups per partition (``crc32(series) % 64``)
V1_GROUPS = 64

Get = Callable[[str], bytes | None]
#: ``sids -> {sid: state}`` for the series the model holds (it clears their dirty marks)
Take = Callable[[Iterable[str]], dict[str, bytes]]


def leaf_hash(sid: str) -> int:
    """64-bit hash of a series id that places it in the trie (not the shard's crc32)."""
    return int.from_bytes(hashlib.blake2b(sid.encode(), digest_size=8).digest(), "little")


def _u32(values: Iterable[int]) -> bytes:
    a = array("I", values)
    if sys.byteorder == "big":  # pragma: no cover - the format is little-endian
        a.byteswap()
    return a.tobytes()


def pack_leaf(entries: dict[str, bytes]) -> bytes:
    """``{series: state}`` -> a leaf record (columnar: counts, lengths, ids, states).

    >>> unpack_leaf(pack_leaf({"a": b"1", "b": b"22"}))
    {'a': b'1', 'b': b'22'}
    """
    text = "".join(entries)
    ids = text.encode()
    if len(ids) == len(text):  # ASCII (the usual): one encode for every id
        id_lens = _u32(map(len, entries))
    else:
        enc = [s.encode() for s in entries]
        id_lens = _u32(map(len, enc))
    states = entries.values()
    return b"".join([_HEAD.pack(_LEAF, len(entries)), id_lens, _u32(map(len, states)), ids,
                     *states])


def _packed_size(entries: dict[str, bytes]) -> int:
    """The size of :func:`pack_leaf` for ASCII ids (a lower bound otherwise)."""
    return (_HEAD.size + 8 * len(entries) + sum(map(len, entries))
            + sum(map(len, entries.values())))


def unpack_leaf(data: bytes) -> dict[str, bytes]:
    magic, n = _HEAD.unpack_from(data)
    if magic != _LEAF:
        raise ValueError("not a state leaf")
    lens = array("I")
    start = _HEAD.size + 8 * n
    lens.frombytes(data[_HEAD.size:start])
    if sys.byteorder == "big":  # pragma: no cover
        lens.byteswap()
    if start + sum(lens) != len(data):
        raise ValueError("state leaf has the wrong size")
    view = memoryview(data)
    out: dict[str, bytes] = {}
    i, j = start, start + sum(lens[:n])
    for k in range(n):
        a, b = lens[k], lens[n + k]
        out[str(view[i:i + a], "utf-8")] = bytes(view[j:j + b])
        i += a
        j += b
    return out


def pack_v1(states: dict[str, bytes]) -> bytes:
    """The version 1 group format (kept to read old records and to test the migration).

    >>> unpack_v1(pack_v1({"a": b"1", "b": b"22"}))
    {'a': b'1', 'b': b'22'}
    """
    parts = [_V1]
    for sid, state in states.items():
        k = sid.encode()
        parts += [_V1_HEAD.pack(len(k), len(state)), k, state]
    return b"".join(parts)


def unpack_v1(data: bytes) -> dict[str, bytes]:
    if data[:2] != _V1:
        raise ValueError("not a version 1 state group")
    out: dict[str, bytes] = {}
    i, n = 2, len(data)
    while i < n:
        klen, slen = _V1_HEAD.unpack_from(data, i)
        i += _V1_HEAD.size
        out[data[i:i + klen].decode()] = data[i + klen:i + klen + slen]
        i += klen + slen
    return out


@dataclass(slots=True)
class _Leaf:
    #: saved states of series not active in the model (since a restart, or migrated)
    cold: dict[str, bytes] = field(default_factory=dict)
    #: series active in the model: their state comes from ``take`` when written. A dict
    #: (values None), not a set: 21-33 B per member against a set's 36-84 at a leaf's
    #: 100-300 members (issue 18, memory)
    members: dict[str, None] = field(default_factory=dict)


@dataclass(slots=True)
class _Part:
    leaves: dict[tuple[int, int], _Leaf] = field(default_factory=dict)
    inner: set[tuple[int, int]] = field(default_factory=set)
    #: leaves to write at the next checkpoint whatever changed (migrated series)
    pending: set[tuple[int, int]] = field(default_factory=set)
    #: version 1 keys to delete once their series are written in version 2
    v1_keys: list[str] = field(default_factory=list)


@dataclass(slots=True)
class WriteStats:
    """What checkpoints wrote (cumulative)."""

    records: int = 0
    bytes: int = 0
    #: series states in the written records (changed ones and their leaf mates)
    series: int = 0
    #: series that had changed (what a one-record-per-series layout would write)
    changed: int = 0
    largest: int = 0
    splits: int = 0
    deleted: int = 0
    migrated: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


class BlobStore:
    """The trie of leaves per partition, the cold states, the active members.

    Parameters
    ----------
    max_record_bytes
        A leaf whose record would be larger is split (``worker.state_record_bytes``).
    """

    def __init__(self, max_record_bytes: int = 256 * 1024) -> None:
        self.max_record_bytes = max_record_bytes
        self._parts: dict[int, _Part] = {}
        self.stats = WriteStats()

    @staticmethod
    def key(partition: int, node: tuple[int, int]) -> str:
        return f"{partition}/t{node[0]}.{node[1]}"

    def __len__(self) -> int:
        """Leaves known in memory (all partitions)."""
        return sum(len(p.leaves) for p in self._parts.values())

    # ------------------------------------------------------------ reading
    def _part(self, partition: int, get: Get) -> _Part:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Part()
            self._migrate_v1(partition, part, get)
        return part

    def _leaf(self, partition: int, part: _Part, h: int, get: Get) -> tuple[int, int]:
        """The leaf node holding hash ``h``, its record read if not yet in memory."""
        d = 0
        while True:
            node = (d, h & ((1 << d) - 1))
            if node in part.leaves:
                return node
            if node in part.inner:
                d += 1
                continue
            raw = get(self.key(partition, node))
            leaf = _Leaf()
            if raw and raw[:2] == _SPLIT and d < _MAX_DEPTH:
                part.inner.add(node)
                d += 1
                continue
            if raw:
                try:
                    leaf.cold = unpack_leaf(raw)
                except (ValueError, struct.error, UnicodeDecodeError):
                    log.warning("state record %s is unreadable: its series relearn",
                                self.key(partition, node))
            elif d > 0:  # a split's children are written before its marker
                log.warning("state record %s is missing under its split marker",
                            self.key(partition, node))
            part.leaves[node] = leaf
            return node

    def activate(self, partition: int, sid: str, get: Get) -> bytes | None:
        """The saved state of ``sid`` (now active in the model), reading its leaf if needed."""
        part = self._part(partition, get)
        leaf = part.leaves[self._leaf(partition, part, leaf_hash(sid), get)]
        leaf.members[sid] = None
        return leaf.cold.pop(sid, None)

    def _migrate_v1(self, partition: int, part: _Part, get: Get) -> None:
        """Version 1 groups of ``partition`` -> their v2 leaves (written at the next write)."""
        moved = 0
        for g in range(V1_GROUPS):
            key = f"{partition}/{g}"
            raw = get(key)
            if not raw:
                continue
            part.v1_keys.append(key)
            try:
                states = unpack_v1(raw)
            except (ValueError, struct.error, UnicodeDecodeError):
                log.warning("version 1 state group %s is unreadable: its series relearn", key)
                continue
            for sid, state in states.items():
                node = self._leaf(partition, part, leaf_hash(sid), get)
                leaf = part.leaves[node]
                if sid not in leaf.cold and sid not in leaf.members:  # v2 holds newer state
                    leaf.cold[sid] = state
                    moved += 1
                part.pending.add(node)
        if part.v1_keys:
            self.stats.migrated += moved
            log.info("partition %d: %d series read from %d version 1 state groups; "
                     "rewritten in the version 2 layout at the next checkpoint",
                     partition, moved, len(part.v1_keys))

    # ------------------------------------------------------------ writing
    def write(self, partition: int, changed: Iterable[str], take: Take,
              get: Get) -> list[tuple[str, bytes | None]]:
        """The records for the leaves holding ``changed`` series (whole), splits and
        migration included: ``(key, value)`` to set in order, ``value`` None to delete."""
        part = self._part(partition, get)
        dirty = set(changed)
        touched = set(part.pending)
        part.pending.clear()
        covered: set[str] = set()
        if dirty:
            for node, leaf in part.leaves.items():
                if not leaf.members.keys().isdisjoint(dirty):
                    touched.add(node)
                    covered |= leaf.members.keys() & dirty
            for sid in dirty - covered:  # not activated here (e.g. moved from a partition)
                node = self._leaf(partition, part, leaf_hash(sid), get)
                leaf = part.leaves[node]
                leaf.members[sid] = None
                leaf.cold.pop(sid, None)
                touched.add(node)
        out: list[tuple[str, bytes | None]] = []
        st = self.stats
        st.changed += len(dirty)
        for node in sorted(touched):
            leaf = part.leaves[node]
            states = take(leaf.members)
            if len(states) < len(leaf.members):  # no longer in the model: nothing to save
                leaf.members = dict.fromkeys(m for m in leaf.members if m in states)
            entries = {**leaf.cold, **states} if leaf.cold else states
            self._emit(partition, part, node, entries, out)
        for key in part.v1_keys:
            out.append((key, None))
        st.deleted += len(part.v1_keys)
        part.v1_keys.clear()
        return out

    def _emit(self, partition: int, part: _Part, node: tuple[int, int],
              entries: dict[str, bytes], out: list[tuple[str, bytes | None]],
              hashes: dict[str, int] | None = None) -> None:
        st = self.stats
        can_split = len(entries) > 1 and node[0] < _MAX_DEPTH
        size = _packed_size(entries)
        if not (can_split and size > self.max_record_bytes):
            value = pack_leaf(entries)
            size = len(value)
            if len(value) <= self.max_record_bytes or not can_split:
                out.append((self.key(partition, node), value))
                st.records += 1
                st.bytes += len(value)
                st.series += len(entries)
                st.largest = max(st.largest, len(value))
                return
        # split on bits d .. d+k-1 at once, into children about half the budget (a child
        # still over it splits again): children first, then the markers, deepest first
        if hashes is None:
            hashes = {sid: leaf_hash(sid) for sid in entries}
        d, b = node
        k = max(1, min(_MAX_DEPTH - d, math.ceil(math.log2(2 * size / self.max_record_bytes))))
        leaf = part.leaves.pop(node)
        mask = (1 << k) - 1
        groups: list[dict[str, bytes]] = [{} for _ in range(1 << k)]
        for sid, state in entries.items():
            groups[hashes[sid] >> d & mask][sid] = state
        for bits, group in enumerate(groups):
            child = (d + k, b | bits << d)
            part.leaves[child] = _Leaf(
                cold={s: v for s, v in group.items() if s in leaf.cold} if leaf.cold else {},
                members=dict.fromkeys(s for s in group if s in leaf.members))
            self._emit(partition, part, child, group, out, hashes)
        for j in range(k - 1, -1, -1):  # the inner nodes between the node and its children
            for bits in range(1 << j):
                inner = (d + j, b | bits << d)
                part.inner.add(inner)
                out.append((self.key(partition, inner), _SPLIT))
                st.splits += 1
                st.records += 1
                st.bytes += len(_SPLIT)

    def forget(self, partitions: set[int]) -> None:
        """Drop what is known of revoked partitions."""
        for p in partitions:
            self._parts.pop(p, None)
