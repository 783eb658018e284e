"""SeriesDirectory shares repeated label values without interning unique ones (issue 18)."""

from __future__ import annotations

import sys

from sre_agent.schemas import MetricBatch
from sre_agent.schemas.series_refs import SeriesDirectory
from sre_agent.schemas.telemetry import series_id, series_key


def _batch(pods: list[str]) -> MetricBatch:
    series = []
    for p in pods:
        labels = {"job": "kubernetes-" + "pods", "pod": p}
        series.append({"name": "cpu", "labels": labels, "points": [(1.0, 0.5)],
                       "id": series_key(series_id("cpu", labels))})
    return MetricBatch(series=series)


def test_repeated_values_shared_unique_ones_not_interned() -> None:
    d = SeriesDirectory()
    pods = ["".join(["pod-unique-", str(i), "-h5mem"]) for i in range(3)]
    got = d.expand(_batch(pods)).series
    assert got[0]["labels"]["job"] is got[1]["labels"]["job"] is got[2]["labels"]["job"]
    stored = got[0]["labels"]["pod"]
    probe = "".join(["pod-unique-", "0", "-h5mem"])
    assert probe == stored and probe is not stored
    assert sys.intern(probe) is not stored  # not in the intern table: no entry paid
    names = [next(iter(s["labels"])) for s in got]
    assert names[0] is names[1] is sys.intern("job")


def _five_label_batch(n: int) -> MetricBatch:
    series = []
    for i in range(n):
        labels = {"instance": f"10.0.{i // 250}.{i % 250}:9090", "job": "kubernetes-pods",
                  "namespace": "prod", "pod": f"pod-{i}", "service": f"svc{i % 20}"}
        series.append({"name": "cpu", "labels": labels, "points": [(1.0, 0.5)],
                       "id": series_key(series_id("cpu", labels))})
    return MetricBatch(series=series)


def test_labels_of_one_name_set_share_their_keys_table() -> None:
    """A definition's labels: 184 B as a plain dict (five labels), 112 B as a dict
    sharing its keys table with every series of the same label names (issue 18);
    still a plain dict, equal to what came, in the same order."""
    import orjson

    d = SeriesDirectory()
    batch = _five_label_batch(2_000)
    sent = [dict(s["labels"]) for s in batch.series]
    got = d.expand(batch).series
    sizes = [sys.getsizeof(s["labels"]) for s in got]
    assert max(sizes) <= 120, max(sizes)  # 184 each before
    for s, want in zip(got, sent, strict=True):
        lb = s["labels"]
        assert type(lb) is dict and lb == want and list(lb) == list(want)
        assert orjson.dumps(lb) == orjson.dumps(want)
    # another label set, or one in another order, is its own kind; a change is a dict's
    lb = got[0]["labels"]
    lb["extra"] = "x"
    assert lb["extra"] == "x" and len(lb) == 6
    other = d.expand(MetricBatch(series=[{"name": "cpu", "labels": {"b": "1", "a": "2"},
                                          "points": [(1.0, 0.5)],
                                          "id": series_key(series_id("cpu", {"a": "2", "b": "1"}))}]))
    assert list(other.series[0]["labels"]) == ["b", "a"]
