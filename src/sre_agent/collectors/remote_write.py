"""Decode a Prometheus remote-write request into ``MetricSeries`` dicts.

The wire format is remote-write 1.0: the body is a snappy *block* (not framed)
compressed ``prometheus.WriteRequest`` protobuf, sent by Prometheus, Grafana
Agent/Alloy, Mimir's distributor tests, vmagent, OpenTelemetry collectors...
with ``Content-Encoding: snappy`` and ``Content-Type: application/x-protobuf``.

Errors raise :class:`RemoteWriteError` with the HTTP status to answer: 400 for
a payload that cannot be decoded (the sender must not retry it), 415 for an
encoding or protocol version the receiver does not speak (remote-write 2.0's
``io.prometheus.write.v2.Request``), 413 for a payload over the size limit or
with more series or samples than one request may carry.

Work per request is bounded before anything is built: the snappy preamble is
checked against ``max_decompressed_bytes``, the top-level entries are counted
on the wire before the protobuf is parsed (an empty ``TimeSeries`` is 2 bytes
on the wire, ~50 parsed), samples are counted per series before any Python
object is made for them. Series that break the ``metrics`` schema are counted
per reason and come back as *one* summary (:attr:`WriteResult.rejected`), never
one dead letter or log line per series.

Examples
--------
>>> import cramjam
>>> from sre_agent.collectors.prompb import WriteRequest
>>> req = WriteRequest()
>>> ts = req.timeseries.add()
>>> _ = ts.labels.add(name="__name__", value="http_requests_total")
>>> _ = ts.labels.add(name="job", value="api")
>>> _ = ts.samples.add(value=42.0, timestamp=1_700_000_000_500)
>>> _ = ts.samples.add(value=float("nan"), timestamp=1_700_000_015_500)
>>> body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
>>> got = decode_write_request(body, "snappy", "application/x-protobuf")
>>> got.series
[{'name': 'http_requests_total', 'labels': {'job': 'api'}, 'points': [(1700000000.5, 42.0)]}]
>>> got.dropped_samples
1
>>> bomb = bytes(cramjam.snappy.compress_raw(b"\\x0a\\x00" * 1_000_000))  # 1 M empty series
>>> try:
...     decode_write_request(bomb, max_series=100_000)
... except RemoteWriteError as exc:
...     print(exc.status, exc)
413 too many series in one request: more than 100000 (limit 100000)
>>> try:
...     decode_write_request(b"not snappy", "snappy", "application/x-protobuf")
... except RemoteWriteError as exc:
...     print(exc.status, exc)
400 invalid snappy block: ...
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from struct import Struct, unpack_from
from typing import Any

import cramjam
import orjson
from google.protobuf.message import DecodeError as ProtoDecodeError

from .coalesce import MAX_POINTS, SeriesCache, SeriesMeta, label_problem
from .normalize import Rejected
from .prompb import TimeSeries, WriteRequestRaw

__all__ = ["RemoteWriteError", "WriteResult", "count_entries", "decode_write_request",
           "snappy_length"]

#: examples of refused series kept in a request's summary
_EXAMPLES = 3
#: a series' one Sample, the last 18 bytes of its ``TimeSeries``: the field header
#: (0x12, length 16), 0x09, the double value, then 0x10 and a 6-byte varint timestamp
#: (kept together: the tag is part of the timestamps' memo key)
_ONE_SAMPLE = Struct("<2sBd7s")
_SAMPLE_HEAD = b"\x12\x10"
#: bound of the memo of 6-byte timestamp varints -> Unix seconds (a scrape's samples share
#: their timestamp: decoded once per request, not once per sample)
_MAX_TIMES = 4096


def _time6(raw: bytes) -> float | None:
    """0x10 and a 6-byte varint of milliseconds as Unix seconds; None unless it is one
    (the tag, each of the first five bytes continued, the last not) and the time is in
    range."""
    tag, b0, b1, b2, b3, b4, b5 = raw
    if not (tag == 0x10 and b0 & b1 & b2 & b3 & b4 & 0x80 and b5 < 0x80):
        return None
    t = ((b0 & 0x7F) | (b1 & 0x7F) << 7 | (b2 & 0x7F) << 14 | (b3 & 0x7F) << 21
         | (b4 & 0x7F) << 28 | b5 << 35) / 1000.0
    return t if t < 1e11 else None


class RemoteWriteError(ValueError):
    """A request the receiver refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class WriteResult:
    #: (series meta, points) of every valid series with at least one sample
    items: list[tuple[SeriesMeta, list[tuple[float, float]]]] = field(default_factory=list)
    samples: int = 0
    #: NaN (incl. Prometheus staleness markers) and infinite samples: not carried
    dropped_samples: int = 0
    #: series refused by the ``metrics`` schema (or with refused samples), per reason
    rejected_series: Counter[str] = field(default_factory=Counter)
    #: samples of refused series, and samples with a timestamp out of range
    rejected_samples: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def series(self) -> list[dict[str, Any]]:
        """The valid series as ``MetricSeries`` dicts."""
        return [{"name": m.name, "labels": m.labels, "points": p} for m, p in self.items]

    @property
    def rejected(self) -> list[Rejected]:
        """One summary of everything refused in the request (empty if nothing was)."""
        if not self.rejected_series and not self.rejected_samples:
            return []
        n = sum(self.rejected_series.values())
        reasons = "; ".join(f"{r} ({c})" for r, c in self.rejected_series.most_common(5))
        reason = (f"remote-write: {self.rejected_samples} samples of {n} series refused: "
                  f"{reasons}")
        payload = orjson.dumps({"rejected_series": dict(self.rejected_series),
                                "rejected_samples": self.rejected_samples,
                                "examples": self.examples})
        return [Rejected(payload, reason)]

    def _refuse(self, reason: str, labels: dict[str, str], samples: int) -> None:
        self.rejected_series[reason] += 1
        self.rejected_samples += samples
        if len(self.examples) < _EXAMPLES:
            self.examples.append({"reason": reason, "samples": samples,
                                  "labels": {k[:128]: v[:128] for k, v in
                                             list(labels.items())[:40]}})


def snappy_length(block: bytes) -> int:
    """The uncompressed length a snappy block announces (its varint preamble).

    >>> import cramjam
    >>> snappy_length(bytes(cramjam.snappy.compress_raw(b"x" * 300)))
    300
    """
    value = shift = 0
    for i, byte in enumerate(block[:10]):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
        if i == 4:  # snappy lengths are at most 32 bits
            break
    raise RemoteWriteError("invalid snappy block: bad length preamble")


def count_entries(raw: bytes, limit: int) -> int:
    """Top-level ``timeseries`` entries of a serialized ``WriteRequest``, counting
    stops past ``limit`` (bounded work); malformed wire data is left to the parser.

    >>> count_entries(b"\\x0a\\x00" * 5 + b"\\x1a\\x00", 100)
    5
    """
    n = pos = 0
    end = len(raw)
    while pos < end and n <= limit:
        tag = raw[pos]
        pos += 1
        if tag & 0x80:  # field numbers >= 16: not ours, let the parser judge
            return n
        wire = tag & 7
        if wire == 2:
            got = _varint(raw, pos, end, 35)
            if got is None:
                return n
            length, pos = got
            pos += length
            n += tag == 0x0A
        else:
            return n
    return n


def _varint(buf: bytes, pos: int, end: int, max_shift: int) -> tuple[int, int] | None:
    """A protobuf varint at ``pos``: (value, position after it), or None when it runs
    past ``end`` or is longer than ``max_shift`` bits allow."""
    value = shift = 0
    while pos < end and shift <= max_shift:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    return None


def _check_headers(content_encoding: str | None, content_type: str | None) -> None:
    enc = (content_encoding or "snappy").strip().lower()
    if enc != "snappy":
        raise RemoteWriteError(f"unsupported Content-Encoding {content_encoding!r}: "
                               "remote-write bodies are snappy-compressed", status=415)
    if content_type:
        media, _, params = content_type.partition(";")
        if media.strip().lower() not in ("application/x-protobuf", "application/octet-stream"):
            raise RemoteWriteError(f"unsupported Content-Type {content_type!r}: expected "
                                   "application/x-protobuf", status=415)
        proto = params.replace(" ", "").lower()
        if "proto=" in proto and "proto=prometheus.writerequest" not in proto:
            raise RemoteWriteError(f"unsupported remote-write message {content_type!r}: this "
                                   "receiver speaks remote-write 1.0 (prometheus.WriteRequest)",
                                   status=415)


def decode_write_request(
    body: bytes,
    content_encoding: str | None = "snappy",
    content_type: str | None = "application/x-protobuf",
    max_decompressed_bytes: int = 32 * 1024 * 1024,
    max_series: int = 100_000,
    max_samples: int = 200_000,
    cache: SeriesCache | None = None,
) -> WriteResult:
    """Decompress and parse a remote-write body; timestamps become Unix seconds.

    ``cache`` (shared across requests) keeps each series' id, key and shard, so a
    series seen before costs a lookup, not a validation and two hashes.
    """
    _check_headers(content_encoding, content_type)
    if not body:
        raise RemoteWriteError("empty body: expected a snappy-compressed WriteRequest")
    announced = snappy_length(body)
    if announced > max_decompressed_bytes:
        raise RemoteWriteError(f"payload too large: {announced} bytes uncompressed > "
                               f"{max_decompressed_bytes}", status=413)
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam.DecompressionError
        raise RemoteWriteError(f"invalid snappy block: {exc}") from None
    # parsed, each entry costs ~25 bytes beside the body: only a body over 1 MiB could
    # make that large before the count below, so only then is the wire counted first
    if (len(raw) > max(2 * max_series, 1 << 20)
            and count_entries(raw, max_series) > max_series):
        raise RemoteWriteError(f"too many series in one request: more than {max_series} "
                               f"(limit {max_series})", status=413)
    try:
        req = WriteRequestRaw.FromString(raw)
    except ProtoDecodeError as exc:
        raise RemoteWriteError(f"invalid WriteRequest protobuf: {exc}") from None
    del raw
    timeseries = req.timeseries
    if len(timeseries) > max_series:  # entries the wire count could not see (odd tags)
        raise RemoteWriteError(f"too many series in one request: {len(timeseries)} "
                               f"(limit {max_series})", status=413)
    cache = cache if cache is not None else SeriesCache(1)
    out = WriteResult()
    items = out.items
    budget = max_samples
    get = cache.lookup
    unpack = _ONE_SAMPLE.unpack_from
    times: dict[bytes, float | None] = {}
    #: samples taken by the one-sample path (carried, dropped): at most one per entry,
    #: so at most ``max_series``; counted against ``max_samples`` with the others
    fast_samples = fast_dropped = 0
    for sb in timeseries:
        # labels come first on the wire (Prometheus and protobuf write fields in order):
        # the labels' bytes name the series, so a known series costs one lookup
        n = len(sb)
        if n > 18:
            # the usual shape: known labels + one sample (value, 6-byte millisecond time)
            head, f1, v, tb = unpack(sb, n - 18)
            if head == _SAMPLE_HEAD and f1 == 0x09:
                meta = get(sb[:-18])
                if meta is not None:
                    t = times.get(tb, -1.0)
                    if t == -1.0:
                        t = _time6(tb)
                        if len(times) < _MAX_TIMES:
                            times[tb] = t
                    if t is not None:
                        if v - v != 0.0:
                            fast_dropped += 1
                        else:
                            fast_samples += 1
                            items.append((meta, [(t, v)]))
                        continue
        pos = 0
        while pos < n and sb[pos] == 0x0A:
            ln = sb[pos + 1] if pos + 1 < n else 0x80
            if ln & 0x80:
                pos = -1  # a label over 127 bytes: the general path
                break
            pos += 2 + ln
        meta = cache.get(sb[:pos]) if pos > 0 else None
        fast = _samples(sb, pos) if meta is not None else None
        if fast is None:
            got = _general(sb, cache, out)
            if got is None:
                continue
            meta, fast = got
        points, dropped = fast
        out.dropped_samples += dropped
        budget -= len(points) + dropped
        if budget - fast_samples - fast_dropped < 0:
            raise RemoteWriteError(f"too many samples in one request: more than {max_samples} "
                                   f"(limit {max_samples})", status=413)
        if points:
            out.samples += len(points)
            if len(points) <= MAX_POINTS:
                items.append((meta, points))
            else:
                for i in range(0, len(points), MAX_POINTS):
                    items.append((meta, points[i:i + MAX_POINTS]))
    if budget - fast_samples - fast_dropped < 0:
        raise RemoteWriteError(f"too many samples in one request: more than {max_samples} "
                               f"(limit {max_samples})", status=413)
    out.samples += fast_samples
    out.dropped_samples += fast_dropped
    return out


def _samples(sb: bytes, pos: int) -> tuple[list[tuple[float, float]], int] | None:
    """The samples after the labels, read straight off the wire; None for anything but
    the plain encoding (labels after samples, long fields, odd tags): the caller then
    parses the series with protobuf."""
    points: list[tuple[float, float]] = []
    dropped = 0
    n = len(sb)
    while pos < n:
        tag = sb[pos]
        if pos + 1 >= n or sb[pos + 1] & 0x80:
            return None
        ln = sb[pos + 1]
        start, end = pos + 2, pos + 2 + ln
        if end > n:
            return None
        pos = end
        if tag == 0x1A or tag == 0x22:  # exemplars, native histograms: not carried
            continue
        if tag != 0x12:
            return None
        v, t, p = 0.0, 0, start
        while p < end:
            ft = sb[p]
            if ft == 0x09 and p + 9 <= end:
                v = unpack_from("<d", sb, p + 1)[0]
                p += 9
            elif ft == 0x10:
                got = _varint(sb, p + 1, end, 63)
                if got is None:
                    return None
                t, p = got
            else:
                return None
        if v - v != 0.0:  # NaN (staleness marker) or infinite
            dropped += 1
            continue
        ts = t / 1000.0  # a negative int64 reads as >= 2**63 here: out of range below
        if not 0.0 <= ts < 1e11:
            return None  # the general path counts it
        points.append((ts, v))
    return points, dropped


def _general(sb: bytes, cache: SeriesCache,
             out: WriteResult) -> tuple[SeriesMeta, tuple[list[tuple[float, float]], int]] | None:
    """One series parsed by protobuf: validated, cached by its labels' bytes."""
    try:
        ts = TimeSeries.FromString(sb)
    except ProtoDecodeError as exc:
        raise RemoteWriteError(f"invalid WriteRequest protobuf: {exc}") from None
    fk = tuple([(lab.name, lab.value) for lab in ts.labels])
    labels = dict(fk)
    name = labels.pop("__name__", "")
    problem = label_problem(name, labels)
    if problem is not None:
        out._refuse(problem, labels, len(ts.samples))
        return None
    # cached under the labels' bytes when the series uses the plain encoding (labels
    # first, each under 128 bytes: what the wire path reads), else under the label pairs
    parts = [lab.SerializeToString() for lab in ts.labels]
    prefix = (b"".join(b"\x0a" + bytes([len(x)]) + x for x in parts)
              if all(len(x) < 128 for x in parts) else b"")
    ck: Any = prefix if prefix and sb.startswith(prefix) else fk
    meta = cache.get(ck) or cache.get(fk) or cache.remember(ck, cache.make(name, labels, ck))
    if ck is not fk and cache.get(ck) is None:
        cache.remember(ck, meta)
    points: list[tuple[float, float]] = []
    dropped = bad_t = 0
    for s in ts.samples:
        v = s.value
        if v - v != 0.0:
            dropped += 1
            continue
        t = s.timestamp / 1000.0
        if 0.0 <= t < 1e11:
            points.append((t, v))
        else:
            bad_t += 1
    if bad_t:
        out._refuse("sample timestamp out of range", meta.labels, bad_t)
    return meta, (points, dropped)
