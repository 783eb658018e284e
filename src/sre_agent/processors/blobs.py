"""Pack the states of many series into a few table values per partition.

A Faust table write costs tens of µs (RocksDB put + a changelog record), so
checkpointing 10,000 series one key each costs about half a second. Instead,
series are grouped into ``buckets`` per partition (``crc32(series) % buckets``)
and each group is one table value ``"<partition>/<bucket>"`` holding every
series of the group: a checkpoint writes at most ``buckets`` values per
partition, however many series changed.

Pure: the caller passes the table's ``get`` and writes what :meth:`BlobStore.pack`
returns. A group is read once, when its first series is needed; its other
series stay *cold* (bytes only) until they show up, and are written back with
the group so nothing is lost.

Examples
--------
>>> table = {}
>>> store = BlobStore(buckets=4)
>>> store.activate(0, "cpu{pod=\\"a\\"}", table.get) is None   # nothing saved yet
True
>>> for key, value in store.pack(0, {"cpu{pod=\\"a\\"}": b"state-a"}).items():
...     table[key] = value
>>> fresh = BlobStore(buckets=4)                               # after a restart
>>> fresh.activate(0, "cpu{pod=\\"a\\"}", table.get)
b'state-a'
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

__all__ = ["BlobStore", "pack_blob", "unpack_blob"]

_MAGIC = b"B1"
_HEAD = struct.Struct("<HI")


def pack_blob(states: dict[str, bytes]) -> bytes:
    """``{series: state}`` -> bytes.

    >>> unpack_blob(pack_blob({"a": b"1", "b": b"22"}))
    {'a': b'1', 'b': b'22'}
    """
    parts = [_MAGIC]
    for sid, state in states.items():
        k = sid.encode()
        parts.append(_HEAD.pack(len(k), len(state)))
        parts.append(k)
        parts.append(state)
    return b"".join(parts)


def unpack_blob(data: bytes) -> dict[str, bytes]:
    if data[:2] != _MAGIC:
        raise ValueError("not a state blob")
    out: dict[str, bytes] = {}
    i, n = 2, len(data)
    size = _HEAD.size
    while i < n:
        klen, slen = _HEAD.unpack_from(data, i)
        i += size
        sid = data[i:i + klen].decode()
        i += klen
        out[sid] = data[i:i + slen]
        i += slen
    return out


class BlobStore:
    """Which group each series belongs to, and the groups' not-yet-active series.

    Parameters
    ----------
    buckets
        Groups per partition (a group's value must stay well under Kafka's 1 MB
        record limit: 64 groups of ~650-byte states hold ~100,000 series per
        partition).
    """

    def __init__(self, buckets: int = 64) -> None:
        self.buckets = buckets
        self._cold: dict[str, dict[str, bytes]] = {}
        self._members: dict[str, set[str]] = {}

    def key(self, partition: int, sid: str) -> str:
        return f"{partition}/{zlib.crc32(sid.encode()) % self.buckets}"

    def activate(self, partition: int, sid: str,
                 get: Callable[[str], bytes | None]) -> bytes | None:
        """The saved state of ``sid`` (now active), reading its group if needed."""
        key = self.key(partition, sid)
        cold = self._cold.get(key)
        if cold is None:
            raw = get(key)
            cold = {}
            if raw:
                try:
                    cold = unpack_blob(raw)
                except (ValueError, struct.error, UnicodeDecodeError):
                    cold = {}  # unreadable group: its series relearn
            self._cold[key] = cold
            self._members[key] = set()
        self._members[key].add(sid)
        return cold.pop(sid, None)

    def members(self, partition: int, sids: list[str]) -> dict[str, set[str]]:
        """The groups of ``sids`` in ``partition`` with all their active members."""
        out: dict[str, set[str]] = {}
        for sid in sids:
            key = self.key(partition, sid)
            m = self._members.setdefault(key, set())
            m.add(sid)  # a series that moved here from another partition joins
            self._cold.setdefault(key, {})
            out[key] = m
        return out

    def pack(self, partition: int, states: dict[str, bytes]) -> dict[str, bytes]:
        """Table values for the groups of ``states`` (every active member must be given)."""
        out: dict[str, bytes] = {}
        groups: dict[str, dict[str, bytes]] = {}
        for sid, state in states.items():
            key = self.key(partition, sid)
            g = groups.get(key)
            if g is None:
                g = groups[key] = dict(self._cold.get(key, {}))
                self._members.setdefault(key, set())
                self._cold.setdefault(key, {})
            self._members[key].add(sid)
            g[sid] = state
        for key, g in groups.items():
            out[key] = pack_blob(g)
        return out

    def forget(self, partitions: set[int]) -> None:
        """Drop the groups of revoked partitions."""
        for key in [k for k in self._cold if int(k.split("/", 1)[0]) in partitions]:
            del self._cold[key]
            self._members.pop(key, None)

    def discard(self, sid: str) -> None:
        for m in self._members.values():
            m.discard(sid)
