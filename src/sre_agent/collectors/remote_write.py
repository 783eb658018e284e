"""Decode a Prometheus remote-write request into ``MetricSeries`` dicts.

The wire format is remote-write 1.0: the body is a snappy *block* (not framed)
compressed ``prometheus.WriteRequest`` protobuf, sent by Prometheus, Grafana
Agent/Alloy, Mimir's distributor tests, vmagent, OpenTelemetry collectors...
with ``Content-Encoding: snappy`` and ``Content-Type: application/x-protobuf``.

Errors raise :class:`RemoteWriteError` with the HTTP status to answer: 400 for
a payload that cannot be decoded (the sender must not retry it), 415 for an
encoding or protocol version the receiver does not speak (remote-write 2.0's
``io.prometheus.write.v2.Request``), 413 for a payload over the size limit.

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
>>> try:
...     decode_write_request(b"not snappy", "snappy", "application/x-protobuf")
... except RemoteWriteError as exc:
...     print(exc.status, exc)
400 invalid snappy block: ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cramjam
import orjson
from google.protobuf.message import DecodeError as ProtoDecodeError

from .normalize import Rejected
from .prompb import WriteRequest

__all__ = ["RemoteWriteError", "WriteResult", "decode_write_request", "snappy_length"]


class RemoteWriteError(ValueError):
    """A request the receiver refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class WriteResult:
    series: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    #: NaN (incl. Prometheus staleness markers) and infinite samples: not carried
    dropped_samples: int = 0
    #: series without a ``__name__`` label, for the DLQ
    rejected: list[Rejected] = field(default_factory=list)


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
    max_decompressed_bytes: int = 64 * 1024 * 1024,
) -> WriteResult:
    """Decompress and parse a remote-write body; timestamps become Unix seconds."""
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
    try:
        req = WriteRequest.FromString(raw)
    except ProtoDecodeError as exc:
        raise RemoteWriteError(f"invalid WriteRequest protobuf: {exc}") from None
    out = WriteResult()
    for ts in req.timeseries:
        labels = {lab.name: lab.value for lab in ts.labels}
        name = labels.pop("__name__", "")
        if not name:
            bad = {"labels": labels, "points": [(x.timestamp / 1000.0, x.value) for x in ts.samples]}
            out.rejected.append(Rejected(orjson.dumps(bad),
                                         "series has no __name__ label"))
            continue
        points = []
        for s in ts.samples:
            if math.isfinite(s.value):
                points.append((s.timestamp / 1000.0, s.value))
            else:
                out.dropped_samples += 1
        if points:
            out.samples += len(points)
            out.series.append({"name": name, "labels": labels, "points": points})
    return out
