"""State records (processors/blobs.py): bounded size whatever the number of series,
leaves split in order, cold members kept, the version 1 layout migrated."""

from __future__ import annotations

import logging
import zlib

import pytest

from sre_agent.processors.blobs import (
    V1_GROUPS,
    BlobStore,
    leaf_hash,
    pack_leaf,
    pack_v1,
    unpack_leaf,
    unpack_v1,
)
from sre_agent.schemas import series_id, shard_of

KAFKA_MAX = 1_048_588  # the broker's default message.max.bytes


def sids_of_one_shard(n: int, shards: int = 64, shard: int = 0) -> list[str]:
    """Prometheus-like series ids that all fall in one ``metrics`` shard."""
    out, j = [], 0
    while len(out) < n:
        sid = series_id("http_request_duration_ms", {
            "instance": f"10.{j // 65536 % 256}.{j // 256 % 256}.{j % 256}:9090",
            "job": "kubernetes-pods", "namespace": "prod", "pod": f"pod-{j}"})
        if shard_of(sid, shards) == shard:
            out.append(sid)
        j += 1
    return out


def state(sid: str, version: int = 0) -> bytes:
    """A 985-byte state (the detector's row size) that names its series."""
    head = f"{version}|{sid}".encode()
    return head + bytes(985 - len(head))


class Model:
    """What the detector offers the store: serialized states of active series."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}
        self.taken: list[str] = []

    def take(self, sids: object) -> dict[str, bytes]:
        out = {s: self.states[s] for s in sids if s in self.states}  # type: ignore[attr-defined]
        self.taken += list(out)
        return out


def apply(table: dict[str, bytes], writes: list[tuple[str, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def saved(table: dict[str, bytes], partition: int, sids: list[str]) -> dict[str, bytes | None]:
    """What a fresh process (after a restart) reads back for ``sids``."""
    fresh = BlobStore()
    return {s: fresh.activate(partition, s, table.get) for s in sids}


def test_codecs_round_trip() -> None:
    entries = {"a": b"", "é{x=\"1\"}": b"\x00" * 985, "b" * 300: b"xyz"}
    assert unpack_leaf(pack_leaf(entries)) == entries
    assert unpack_leaf(pack_leaf({})) == {}
    assert unpack_v1(pack_v1(entries)) == entries
    with pytest.raises(ValueError):
        unpack_leaf(pack_leaf(entries)[:-1])


def test_one_shard_with_many_series_never_makes_a_record_over_the_budget() -> None:
    # Was a crash: version 1 grouped a partition's series by crc32 % 64, the shard's own
    # hash, so with 64 shards every series of a shard landed in one group: 2,000 series
    # of 985 bytes made one 2 MB record, and the worker's producer died on Kafka's 1 MB
    # limit (MessageSizeTooLargeError) near 80,000 series.
    sids = sids_of_one_shard(2000)
    assert len({zlib.crc32(s.encode()) % V1_GROUPS for s in sids}) == 1  # the old cause
    model, table = Model(), {}
    store = BlobStore(max_record_bytes=256 * 1024)
    for s in sids:
        assert store.activate(1, s, table.get) is None
        model.states[s] = state(s)
    writes = store.write(1, sids, model.take, table.get)
    apply(table, writes)
    sizes = [len(v) for _, v in writes if v is not None]
    assert max(sizes) <= 256 * 1024 < KAFKA_MAX
    payload = sum(len(s.encode()) + 985 + 8 for s in sids)
    assert sum(sizes) < payload + 64 * len(sizes)  # every state once, a few bytes per record
    assert store.stats.splits >= 7 and len(store) >= 8  # 2 MB / 256 KiB
    assert saved(table, 1, sids) == {s: state(s) for s in sids}


def test_budget_holds_for_any_budget_and_growth_in_steps() -> None:
    sids = sids_of_one_shard(1500, shards=7, shard=3)
    model, table = Model(), {}
    store = BlobStore(max_record_bytes=40_000)
    for step in range(3):  # the partition grows: 500 new series per checkpoint
        new = sids[500 * step:500 * (step + 1)]
        for s in new:
            store.activate(0, s, table.get)
            model.states[s] = state(s, step)
        writes = store.write(0, new, model.take, table.get)
        assert max(len(v) for _, v in writes if v) <= 40_000
        apply(table, writes)
    assert all(len(v) <= 40_000 for v in table.values())
    assert saved(table, 0, sids) == {s: model.states[s] for s in sids}


def test_a_checkpoint_writes_only_the_leaves_of_changed_series() -> None:
    sids = [f"cpu{{pod=\"p{i}\"}}" for i in range(3000)]
    model, table = Model(), {}
    store = BlobStore(max_record_bytes=64 * 1024)
    for s in sids:
        store.activate(2, s, table.get)
        model.states[s] = state(s)
    apply(table, store.write(2, sids, model.take, table.get))
    leaves = len(store)
    assert leaves >= 45
    model.taken.clear()
    model.states[sids[7]] = state(sids[7], 1)
    writes = store.write(2, [sids[7]], model.take, table.get)
    assert len(writes) == 1 and len(model.taken) <= 3000 / leaves * 2.5
    apply(table, writes)
    assert saved(table, 2, sids[:100])[sids[7]] == state(sids[7], 1)
    assert store.write(2, [], model.take, table.get) == []  # nothing changed: nothing written


def test_cold_members_are_written_back_after_a_restart_and_a_split() -> None:
    sids = [f"mem{{pod=\"p{i}\"}}" for i in range(400)]
    model, table = Model(), {}
    store = BlobStore(max_record_bytes=1 << 20)
    for s in sids:
        store.activate(0, s, table.get)
        model.states[s] = state(s)
    apply(table, store.write(0, sids, model.take, table.get))
    assert list(table) == ["0/t0.0"]
    # a restart with a smaller budget: only one series shows up and changes; its leaf is
    # written back whole (the 399 cold states with it) and splits on the way
    fresh, model2 = BlobStore(max_record_bytes=100_000), Model()
    assert fresh.activate(0, sids[0], table.get) == state(sids[0])
    model2.states[sids[0]] = state(sids[0], 1)
    writes = fresh.write(0, [sids[0]], model2.take, table.get)
    assert writes[-1] == ("0/t0.0", b"S2")  # the marker comes after the children
    apply(table, writes)
    assert saved(table, 0, sids) == {s: state(s, int(s == sids[0])) for s in sids}


def test_a_split_cut_short_leaves_the_whole_leaf_readable() -> None:
    sids = [f"disk{{dev=\"d{i}\"}}" for i in range(300)]
    model, table = Model(), {}
    store = BlobStore(max_record_bytes=1 << 20)
    for s in sids:
        store.activate(0, s, table.get)
        model.states[s] = state(s)
    apply(table, store.write(0, sids, model.take, table.get))
    small = BlobStore(max_record_bytes=50_000)
    for s in sids:
        small.activate(0, s, table.get)
    writes = small.write(0, sids, model.take, table.get)
    assert writes[-1][1] == b"S2"
    apply(table, writes[:-1])  # killed before the root's marker reached the changelog
    assert saved(table, 0, sids) == {s: state(s) for s in sids}
    apply(table, writes[-1:])
    assert saved(table, 0, sids) == {s: state(s) for s in sids}


def test_version_1_groups_are_read_once_rewritten_then_deleted(
        caplog: pytest.LogCaptureFixture) -> None:
    sids = [f"lat{{svc=\"s{i}\"}}" for i in range(500)]
    table: dict[str, bytes] = {}
    groups: dict[int, dict[str, bytes]] = {}
    for s in sids:  # what version 1 wrote for partition 3
        groups.setdefault(zlib.crc32(s.encode()) % V1_GROUPS, {})[s] = state(s)
    for g, members in groups.items():
        table[f"3/{g}"] = pack_v1(members)
    table["3/t0.0"] = pack_leaf({sids[5]: state(sids[5], 9)})  # newer v2 state wins
    model, store = Model(), BlobStore()
    with caplog.at_level(logging.INFO, "sre_agent.processors.blobs"):
        assert store.activate(3, sids[0], table.get) == state(sids[0])
    assert "version 1" in caplog.text
    assert store.activate(3, sids[5], table.get) == state(sids[5], 9)
    model.states[sids[0]] = state(sids[0], 1)  # the model holds what it activated
    model.states[sids[5]] = state(sids[5], 9)
    writes = store.write(3, [], model.take, table.get)  # nothing changed: migration only
    deleted = [k for k, v in writes if v is None]
    assert sorted(deleted) == sorted(f"3/{g}" for g in groups) and store.stats.deleted
    assert writes.index((deleted[0], None)) > max(i for i, (_, v) in enumerate(writes) if v)
    apply(table, writes)
    assert all(k.startswith("3/t") for k in table)
    got = saved(table, 3, sids)
    assert got == {s: state(s, 1 if s == sids[0] else 9 if s == sids[5] else 0) for s in sids}


def test_unreadable_records_relearn_instead_of_failing(caplog: pytest.LogCaptureFixture) -> None:
    table = {"0/t0.0": b"L2garbage", "0/7": b"B1\xff\xff"}
    store = BlobStore()
    with caplog.at_level(logging.WARNING, "sre_agent.processors.blobs"):
        assert store.activate(0, "x", table.get) is None
    assert "unreadable" in caplog.text


def test_forget_drops_a_partition() -> None:
    table: dict[str, bytes] = {}
    store, model = BlobStore(), Model()
    store.activate(0, "a", table.get)
    model.states["a"] = b"1"
    apply(table, store.write(0, ["a"], model.take, table.get))
    store.forget({0})
    assert len(store) == 0
    assert store.activate(0, "a", table.get) == b"1"


def test_the_trie_hash_spreads_one_shard() -> None:
    sids = sids_of_one_shard(4000)
    buckets = [leaf_hash(s) % 64 for s in sids]
    assert min(buckets.count(b) for b in range(64)) > 4000 / 64 / 3


def test_active_members_cost_a_dict_entry_not_a_set_slot() -> None:
    """A leaf's active members were a set: 36-84 B per member at a leaf's 100-300
    members (a set keeps a quarter to half of its slots free, 16 B each); a dict's
    entries are 21-33 B (issue 18, memory). 20,000 series over split leaves."""
    import sys

    n = 20_000
    sids = [f'cpu{{pod="p-{i}"}}' for i in range(n)]
    table: dict[str, bytes] = {}
    store = BlobStore(max_record_bytes=256 * 1024)
    for s in sids:
        store.activate(0, s, table.get)
    for key, value in store.write(0, sids, lambda ss: {s: b"x" * 1000 for s in ss}, table.get):
        table[key] = value
    leaves = store._parts[0].leaves.values()
    assert len(leaves) > 32 and sum(len(leaf.members) for leaf in leaves) == n
    per_member = sum(sys.getsizeof(leaf.members) for leaf in leaves) / n
    assert per_member < 36, per_member
