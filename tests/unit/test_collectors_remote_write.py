"""Remote-write decoding and series normalization (no I/O)."""

from __future__ import annotations

import math
import struct

import cramjam
import orjson
import pytest

from sre_agent.collectors import RemoteWriteError, decode_write_request, to_batches
from sre_agent.collectors.normalize import MAX_POINTS_PER_SERIES
from sre_agent.collectors.prompb import WriteRequest
from sre_agent.schemas import MetricBatch, decode, encode, series_id, shard_of

#: Prometheus's staleness marker: a NaN with payload 2
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def _request(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> bytes:
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for k, v in labels.items():
            ts.labels.add(name=k, value=v)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def test_decodes_series_points_in_seconds_and_drops_stale_markers() -> None:
    body = _request([
        ({"__name__": "up", "job": "api", "instance": "a:9100"},
         [(1_700_000_000_000, 1.0), (1_700_000_001_000, STALE_NAN), (1_700_000_002_000, math.inf)]),
        ({"__name__": "latency_seconds", "service": "orders"}, [(1_700_000_000_250, 0.25)]),
    ])
    got = decode_write_request(body, "snappy", "application/x-protobuf")
    assert got.series == [
        {"name": "up", "labels": {"job": "api", "instance": "a:9100"}, "points": [(1_700_000_000.0, 1.0)]},
        {"name": "latency_seconds", "labels": {"service": "orders"}, "points": [(1_700_000_000.25, 0.25)]},
    ]
    assert got.samples == 2 and got.dropped_samples == 2 and not got.rejected


def test_series_without_name_is_rejected_with_reason() -> None:
    got = decode_write_request(_request([({"job": "x"}, [(1_700_000_000_000, 3.0)])]))
    assert got.series == []
    assert len(got.rejected) == 1
    assert "series has no __name__ label" in got.rejected[0].reason
    assert orjson.loads(got.rejected[0].payload)["examples"][0]["labels"] == {"job": "x"}


def test_unknown_fields_such_as_native_histograms_are_skipped() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="h")
    ts.samples.add(timestamp=1_700_000_000_000, value=2.0)
    raw = req.SerializeToString()
    # append TimeSeries field 4 (histograms, length-delimited) holding 3 arbitrary bytes
    inner = ts.SerializeToString() + b"\x22\x03\x08\x01\x10"
    raw = b"\x0a" + bytes([len(inner)]) + inner
    body = bytes(cramjam.snappy.compress_raw(raw))
    got = decode_write_request(body)
    assert got.series[0]["points"] == [(1_700_000_000.0, 2.0)]


@pytest.mark.parametrize(
    ("body", "encoding", "ctype", "status", "fragment"),
    [
        (b"", "snappy", "application/x-protobuf", 400, "empty body"),
        (b"\x05garbage", "snappy", "application/x-protobuf", 400, "invalid snappy block"),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), "snappy", None, 400,
         "invalid WriteRequest protobuf"),
        (b"x", "gzip", "application/x-protobuf", 415, "Content-Encoding"),
        (b"x", "snappy", "application/json", 415, "Content-Type"),
        (b"x", "snappy", "application/x-protobuf;proto=io.prometheus.write.v2.Request", 415,
         "remote-write 1.0"),
    ],
)
def test_bad_payloads_raise_with_status(body: bytes, encoding: str, ctype: str | None,
                                        status: int, fragment: str) -> None:
    with pytest.raises(RemoteWriteError) as err:
        decode_write_request(body, encoding, ctype)
    assert err.value.status == status
    assert fragment in str(err.value)


def test_decompression_bomb_is_refused_before_decompressing() -> None:
    body = bytes(cramjam.snappy.compress_raw(b"\0" * 200_000))
    with pytest.raises(RemoteWriteError) as err:
        decode_write_request(body, max_decompressed_bytes=100_000)
    assert err.value.status == 413


def test_v1_proto_parameter_is_accepted() -> None:
    body = _request([({"__name__": "x"}, [(1_000, 1.0)])])
    got = decode_write_request(body, "snappy", "application/x-protobuf;proto=prometheus.WriteRequest")
    assert got.samples == 1


def test_batches_are_keyed_by_series_shard_and_round_trip_the_codec() -> None:
    series = [{"name": "cpu", "labels": {"pod": f"p{i}"}, "points": [(1.7e9, float(i))]}
              for i in range(50)]
    out = to_batches(series, shards=8, source="remote-write")
    assert out.samples == 50 and not out.rejected
    for b in out.batches:
        again = decode(MetricBatch, encode(b))
        assert again.source == "remote-write" and again.key() == str(b.shard)
        for s in again.series:
            assert shard_of(series_id(s["name"], s["labels"]), 8) == b.shard


def test_batches_are_cut_to_the_message_size_cap() -> None:
    series = [{"name": "cpu", "labels": {"pod": "p", "i": str(i)},
               "points": [(1.7e9 + j, 1.0) for j in range(100)]} for i in range(40)]
    out = to_batches(series, shards=1, source="t", max_message_bytes=20_000)
    assert len(out.batches) > 1
    assert all(len(encode(b)) < 40_000 for b in out.batches)
    assert out.samples == 4000


def test_long_series_are_split_and_invalid_ones_rejected() -> None:
    long = {"name": "x", "labels": {}, "points": [(float(i), 1.0) for i in range(MAX_POINTS_PER_SERIES + 5)]}
    too_many_labels = {"name": "y", "labels": {f"l{i}": "v" for i in range(40)}, "points": [(1.0, 1.0)]}
    long_value = {"name": "z", "labels": {"a": "v" * 600}, "points": [(1.0, 1.0)]}
    out = to_batches([long, too_many_labels, long_value], shards=2, source="t")
    assert out.samples == MAX_POINTS_PER_SERIES + 5
    assert [r.reason.split(":")[0] for r in out.rejected] == ["labels", "labels.a"]


# ---------------------------------------------------------------- issue 18 / issue 15
def _odd_request() -> bytes:
    """Every shape the wire fast path must hand to protobuf or read the same way."""
    long = "x" * 200  # a label over 127 bytes
    series = [
        ({"__name__": "a", "pod": "p1"}, [(1_700_000_000_000, 1.5)]),
        ({"__name__": "a", "pod": "p2"}, [(1_700_000_000_000, 0.0)]),  # value omitted on wire
        ({"__name__": "a", "pod": "p3"}, [(0, 2.0)]),  # timestamp omitted on wire
        ({"__name__": "a", "pod": "p4"}, [(-5, 2.0)]),  # negative: out of range
        ({"__name__": "a", "pod": "p5"}, [(1_700_000_000_000, STALE_NAN)]),
        ({"__name__": "a", "pod": "p6"}, [(1_700_000_000_000, math.inf)]),
        ({"__name__": "a", "pod": "p7"}, [(1_700_000_000_000 + i, float(i)) for i in range(5)]),
        ({"__name__": "a", "pod": long}, [(1_700_000_000_000, 3.0)]),
        ({"__name__": "a", "pod": "p8"}, [(200_000_000_000_000, 3.0)]),  # year 8307: too far
        ({"__name__": "a", "pod": "p9"}, [(99_999_999_999_999, 4.0)]),  # 7-byte varint, fine
        ({"pod": "nameless"}, [(1_700_000_000_000, 1.0)]),
    ]
    return _request(series)


def test_known_series_read_off_the_wire_equal_the_protobuf_reading() -> None:
    from sre_agent.collectors.coalesce import SeriesCache

    body = _odd_request()
    cache = SeriesCache(8)
    first = decode_write_request(body, cache=cache)  # protobuf path; fills the cache
    again = decode_write_request(body, cache=cache)  # known series: the wire path
    assert again.series == first.series and again.samples == first.samples == 10
    assert again.dropped_samples == first.dropped_samples == 2
    assert again.rejected_series == first.rejected_series
    assert again.rejected_samples == first.rejected_samples == 3
    assert [m.key for m, _ in again.items] == [m.key for m, _ in first.items]


def test_a_body_of_a_million_empty_series_is_refused_at_once() -> None:
    """Issue 15: 94 KB of 1 M empty TimeSeries made 935,901 dead letters and 4.4 GB RSS."""
    import resource

    body = bytes(cramjam.snappy.compress_raw(b"\x0a\x00" * 1_000_000))
    assert len(body) < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RemoteWriteError) as info:
        decode_write_request(body)
    assert info.value.status == 413 and "too many series" in str(info.value)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # the 2 MB it decompresses to, not a parse of 1 M series


def test_too_many_samples_are_refused_and_bad_series_summarised_once() -> None:
    many = _request([({"__name__": "m", "i": str(i)}, [(1_700_000_000_000, 1.0)])
                     for i in range(300)])
    with pytest.raises(RemoteWriteError) as info:
        decode_write_request(many, max_samples=250)
    assert info.value.status == 413 and "too many samples" in str(info.value)
    mixed = _request([({"job": str(i)}, [(1_700_000_000_000, 1.0)]) for i in range(5000)]
                     + [({"__name__": "ok"}, [(1_700_000_000_000, 1.0)])])
    got = decode_write_request(mixed)
    assert got.samples == 1 and len(got.rejected) == 1  # one summary, not 5,000 letters
    assert got.rejected[0].reason.startswith("remote-write: 5000 samples of 5000 series")
    assert len(orjson.loads(got.rejected[0].payload)["examples"]) == 3


def test_known_one_sample_series_count_against_the_sample_limit() -> None:
    """The one-sample path (series known by their labels' bytes) counts its samples,
    dropped NaNs included, against ``max_samples`` like the general path."""
    from sre_agent.collectors.coalesce import SeriesCache

    cache = SeriesCache(8)

    def body(n: int, nan_every: int = 0) -> bytes:
        return _request([({"__name__": "m", "i": str(i)},
                          [(1_700_000_000_000, math.nan if nan_every and i % nan_every == 0
                            else float(i))]) for i in range(n)])

    first = decode_write_request(body(300), cache=cache)  # learns the 300 series
    assert first.samples == 300 and len(cache) == 300
    with pytest.raises(RemoteWriteError) as info:
        decode_write_request(body(300), max_samples=250, cache=cache)
    assert info.value.status == 413 and "too many samples" in str(info.value)
    with pytest.raises(RemoteWriteError):  # 200 carried + 100 dropped > 250
        decode_write_request(body(300, nan_every=3), max_samples=250, cache=cache)
    got = decode_write_request(body(300, nan_every=3), max_samples=300, cache=cache)
    assert (got.samples, got.dropped_samples) == (200, 100)
    assert got.series[0] == {"name": "m", "labels": {"i": "1"},  # i=0 was a NaN
                             "points": [(1_700_000_000.0, 1.0)]}
