"""Loki 3 answers: a line's structured metadata (OpenTelemetry's trace_id) reaches the record."""

from __future__ import annotations

from sre_agent.collectors.loki import parse_streams, to_record
from sre_agent.config import LokiQuerySettings


def _answer(values: list[list[object]]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": {"service_name": "pay", "level": "info"}, "values": values}]}}


def test_categorised_and_flat_line_metadata_become_the_records_labels() -> None:
    body = _answer([
        ["1700000000000000000", "charge ok",
         {"structured_metadata": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
          "parsed": {"status": "200"}}],
        ["1700000001000000000", "charge ok", {"trace_id": "00f067aa0ba902b7a3ce929d0e0e4736"}],
        ["1700000002000000000", "no metadata"],
        ["1700000003000000000", "odd metadata", ["not", "a", "dict"]],
    ])
    entries = parse_streams(body)
    assert [e[1].get("trace_id") for e in entries] == [
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7a3ce929d0e0e4736", None, None]
    assert entries[0][1]["status"] == "200" and entries[0][1]["service_name"] == "pay"
    assert entries[2][1] == {"service_name": "pay", "level": "info"}  # the stream's own labels
    q = LokiQuerySettings(name="all", expr='{service_name=~".+"}', service_labels=["service_name"])
    rec = to_record(entries[0], q)
    assert rec.service == "pay" and rec.labels["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
