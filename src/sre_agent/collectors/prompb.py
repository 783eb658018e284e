"""Prometheus remote-write 1.0 messages (``prometheus.WriteRequest``) for the protobuf runtime.

The messages are those of Prometheus's ``prompb/remote.proto`` and
``prompb/types.proto`` (package ``prometheus``), declared here as a
``FileDescriptorProto`` with the same field numbers and types, so the
maintained ``protobuf`` runtime (upb) parses the standard wire format without
generated code or a ``protoc`` step::

    message WriteRequest  { repeated TimeSeries timeseries = 1; reserved 2;
                            repeated MetricMetadata metadata = 3; }
    message TimeSeries    { repeated Label labels = 1; repeated Sample samples = 2;
                            repeated Exemplar exemplars = 3; /* histograms = 4 */ }
    message Label         { string name = 1; string value = 2; }
    message Sample        { double value = 1; int64 timestamp = 2; }
    message Exemplar      { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
    message MetricMetadata{ MetricType type = 1; string metric_family_name = 2;
                            string help = 4; string unit = 5; }

Native histograms (``TimeSeries`` field 4) are not declared: protobuf skips
them as unknown fields, and the agent's ``metrics`` topic carries float
samples only.

Examples
--------
>>> req = WriteRequest()
>>> ts = req.timeseries.add()
>>> _ = ts.labels.add(name="__name__", value="up")
>>> _ = ts.samples.add(value=1.0, timestamp=1_700_000_000_000)
>>> again = WriteRequest.FromString(req.SerializeToString())
>>> again.timeseries[0].labels[0].value, again.timeseries[0].samples[0].timestamp
('up', 1700000000000)
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["Label", "MetricMetadata", "Sample", "TimeSeries", "WriteRequest", "WriteRequestRaw"]

_F = descriptor_pb2.FieldDescriptorProto
_REPEATED, _OPTIONAL = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL


def _message(fd: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, int, int, str | None]]) -> descriptor_pb2.DescriptorProto:
    msg = fd.message_type.add(name=name)
    for fname, number, ftype, label, type_name in fields:
        f = msg.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name
    return msg


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="sre_agent/prompb/remote.proto",
                                            package="prometheus", syntax="proto3")
    _message(fd, "Label", [("name", 1, _F.TYPE_STRING, _OPTIONAL, None),
                           ("value", 2, _F.TYPE_STRING, _OPTIONAL, None)])
    _message(fd, "Sample", [("value", 1, _F.TYPE_DOUBLE, _OPTIONAL, None),
                            ("timestamp", 2, _F.TYPE_INT64, _OPTIONAL, None)])
    _message(fd, "Exemplar", [("labels", 1, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Label"),
                              ("value", 2, _F.TYPE_DOUBLE, _OPTIONAL, None),
                              ("timestamp", 3, _F.TYPE_INT64, _OPTIONAL, None)])
    _message(fd, "TimeSeries", [
        ("labels", 1, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Label"),
        ("samples", 2, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Sample"),
        ("exemplars", 3, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.Exemplar"),
    ])
    meta = _message(fd, "MetricMetadata", [
        ("type", 1, _F.TYPE_ENUM, _OPTIONAL, ".prometheus.MetricMetadata.MetricType"),
        ("metric_family_name", 2, _F.TYPE_STRING, _OPTIONAL, None),
        ("help", 4, _F.TYPE_STRING, _OPTIONAL, None),
        ("unit", 5, _F.TYPE_STRING, _OPTIONAL, None),
    ])
    enum = meta.enum_type.add(name="MetricType")
    for i, n in enumerate(["UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM",
                           "SUMMARY", "INFO", "STATESET"]):
        enum.value.add(name=n, number=i)
    req = _message(fd, "WriteRequest", [
        ("timeseries", 1, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.TimeSeries"),
        ("metadata", 3, _F.TYPE_MESSAGE, _REPEATED, ".prometheus.MetricMetadata"),
    ])
    req.reserved_range.add(start=2, end=3)
    # the same wire format with each TimeSeries left as bytes (split in C, parsed on demand)
    _message(fd, "WriteRequestRaw", [("timeseries", 1, _F.TYPE_BYTES, _REPEATED, None)])
    return fd


# a private pool: never clashes with another library registering "prometheus.*"
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"prometheus.{name}"))


WriteRequest: Any = _cls("WriteRequest")
TimeSeries: Any = _cls("TimeSeries")
Label: Any = _cls("Label")
Sample: Any = _cls("Sample")
MetricMetadata: Any = _cls("MetricMetadata")
#: ``WriteRequest`` whose ``timeseries`` are the serialized ``TimeSeries`` bytes
WriteRequestRaw: Any = _cls("WriteRequestRaw")
