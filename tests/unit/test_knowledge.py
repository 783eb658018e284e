"""Knowledge base on real Qdrant (qdrant-client local mode): patterns, incidents, runbooks,
and the closed loop feedback -> knowledge base -> better RCA ranking."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sre_agent.config import KnowledgeSettings, QdrantSettings
from sre_agent.processors.rca import RootCauseAnalyzer, incident_text
from sre_agent.processors.rca_feedback import learn
from sre_agent.processors.topology import ServiceGraph
from sre_agent.schemas import Feedback, Incident, SignalRef
from sre_agent.sinks.embeddings import LexicalEmbedder, cosine
from sre_agent.sinks.knowledge import KnowledgeBase, parse_runbook

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def kb():  # type: ignore[no-untyped-def]
    k = KnowledgeBase(QdrantSettings(collection_prefix="t"), KnowledgeSettings(), location=":memory:")
    yield k
    await k.close()


async def test_seeded_patterns_and_runbooks_are_searchable(kb: KnowledgeBase) -> None:
    found = await kb.search("payments OOMKilled, container memory working set growing", limit=5)
    assert found, "nothing found"
    kinds = {c.kind for c in found}
    assert {"pattern", "runbook"} <= kinds
    top_pattern = next(c for c in found if c.kind == "pattern")
    assert top_pattern.cause_type == "memory_leak" and 0 < top_pattern.similarity <= 1
    assert "rollout_restart" in (top_pattern.resolution or "")
    rb = next(c for c in found if c.kind == "runbook")
    assert rb.cause_type == "memory_leak" and rb.resolution.endswith("memory-leak-oom.md")
    sims = [c.similarity for c in found]
    assert sims == sorted(sims, reverse=True)


async def test_db_pool_text_finds_the_db_runbook(kb: KnowledgeBase) -> None:
    found = await kb.search("HikariPool connection is not available, too many connections", 3)
    assert found[0].cause_type == "db_pool_exhaustion"


async def test_unrelated_text_finds_nothing(kb: KnowledgeBase) -> None:
    assert await kb.search("zebra giraffe savanna", 5) == []
    assert await kb.search("", 5) == []


async def test_feedback_updates_pattern_confidence_and_success_rate(kb: KnowledgeBase) -> None:
    _, before = await kb.pattern_for("db_pool_exhaustion")  # type: ignore[misc]
    assert before["metadata"]["occurrence_count"] == 0
    await kb.update_pattern("db_pool_exhaustion", confirmed=True, action_succeeded=True)
    await kb.update_pattern("db_pool_exhaustion", confirmed=True, action_succeeded=False)
    _, after = await kb.pattern_for("db_pool_exhaustion")  # type: ignore[misc]
    m = after["metadata"]
    assert m["occurrence_count"] == 2 and m["success_rate"] == 0.5 and m["attempts"] == 2
    assert m["confidence"] > before["metadata"]["confidence"] and m["last_seen"]
    # rejected: confidence goes down
    await kb.update_pattern("db_pool_exhaustion", confirmed=False)
    _, rej = await kb.pattern_for("db_pool_exhaustion")  # type: ignore[misc]
    assert rej["metadata"]["confidence"] < m["confidence"]
    # a cause without a seeded pattern gets a learned one
    learned = await kb.update_pattern("unknown", confirmed=True, example="weird outage")
    assert learned["pattern_id"] == "PAT-LEARNED-unknown" and learned["symptoms"] == ["weird outage"]


async def test_persistent_local_mode_survives_reopen(tmp_path: Path) -> None:
    q = QdrantSettings(path=tmp_path / "kb", collection_prefix="p")
    k1 = KnowledgeBase(q, KnowledgeSettings())
    await k1.add_incident("inc-1", "api latency after deploy", "api latency up deploy of api",
                          cause_type="bad_deploy", service="api", confirmed=True)
    await k1.update_pattern("bad_deploy", confirmed=True)
    await k1.close()
    k2 = KnowledgeBase(q, KnowledgeSettings())
    found = await k2.search("api latency up deploy of api", 3)
    assert found[0].id == "inc-1" and found[0].similarity > 0.9 and found[0].cause_type == "bad_deploy"
    _, pat = await k2.pattern_for("bad_deploy")  # type: ignore[misc]
    assert pat["metadata"]["occurrence_count"] == 1  # re-seeding kept the learned metadata
    await k2.close()


def test_parse_runbook_front_matter(tmp_path: Path) -> None:
    f = tmp_path / "x.md"
    f.write_text("---\ncause_type: disk_saturation\ntags: [a]\n---\n# Disk full\nbody\n")
    rb = parse_runbook(f)
    assert rb["title"] == "Disk full" and rb["cause_type"] == "disk_saturation"
    g = tmp_path / "y.md"
    g.write_text("no title here\n")
    assert parse_runbook(g)["title"] == "y"


async def test_custom_runbooks_folder(tmp_path: Path) -> None:
    (tmp_path / "kafka-lag.md").write_text("---\ncause_type: resource_saturation\n---\n"
                                           "# Kafka consumer lag\nconsumer lag growing, rebalance\n")
    k = KnowledgeBase(QdrantSettings(), KnowledgeSettings(runbooks_dir=tmp_path), location=":memory:")
    found = await k.search("kafka consumer lag growing", 3)
    assert found[0].id == "kafka-lag" and found[0].kind == "runbook"
    await k.close()


def test_lexical_embedding_similarity_orders_sensibly() -> None:
    e = LexicalEmbedder()
    q = e.embed("root db; services api db; db anomaly db_connections_active up; api anomaly "
                "error_rate up")
    same = e.embed("root db; services api db; db anomaly db_connections_active up; api anomaly "
                   "error_rate up; web anomaly latency up")
    other = e.embed("root cache; services cache; cache k8s OOMKilled")
    assert cosine(q, same) > 0.8 > cosine(q, other)


def ambiguous_incident(iid: str) -> Incident:
    sig = [
        SignalRef(kind="anomaly", ref="a1", service="api", time=T, metric="error_rate",
                  attrs={"direction": "up", "score": 0.97}),
        SignalRef(kind="anomaly", ref="a2", service="db", time=T.replace(second=10),
                  metric="db_connections_active", attrs={"direction": "up", "score": 0.97}),
        SignalRef(kind="anomaly", ref="a3", service="web", time=T.replace(second=20),
                  metric="latency", attrs={"direction": "up", "score": 0.97}),
    ]
    return Incident(incident_id=iid, title="api: error_rate up (+2 related: db, web)",
                    fingerprint=f"f-{iid}", opened_at=T, services=["api", "db", "web"],
                    root_service="api", signals=sig, candidate_changes=[{
                        "service": "api", "app": "api", "revision": "v8", "change_type": "deploy",
                        "time": T.replace(minute=59, hour=11).isoformat(), "event_id": f"d-{iid}"}])


async def test_feedback_makes_the_next_similar_incident_rank_the_confirmed_cause_higher(
        kb: KnowledgeBase) -> None:
    rca = RootCauseAnalyzer(ServiceGraph([("web", "api"), ("api", "db")]))
    first = ambiguous_incident("inc-A")
    r1 = rca.analyze(first, await kb.search(incident_text(first)))
    ranked1 = [(h.cause_type, h.service) for h in r1.hypotheses]
    assert ranked1[0] == ("bad_deploy", "api")
    # the on-call engineer confirms: it was the database pool, not the deploy
    fb = Feedback(incident_id="inc-A", kind="cause", confirmed_cause="db_pool_exhaustion",
                  confirmed_service="db", user="alice")
    lesson = learn(fb, r1.hypotheses[0].model_dump())
    await kb.learn(lesson, first.incident_id, first.title, incident_text(first))

    second = ambiguous_incident("inc-B")
    similar = await kb.search(incident_text(second))
    assert similar[0].id == "inc-A" and similar[0].cause_type == "db_pool_exhaustion"
    assert similar[0].similarity > 0.9
    r2 = rca.analyze(second, similar)
    ranked2 = [(h.cause_type, h.service) for h in r2.hypotheses]
    assert ranked2[0] == ("db_pool_exhaustion", "db")
    assert ranked2.index(("db_pool_exhaustion", "db")) < ranked1.index(("db_pool_exhaustion", "db"))
    assert any(e.kind == "similar" and e.ref == "inc-A" for e in r2.hypotheses[0].evidence)
    assert r2.similar and r2.similar[0].similarity == similar[0].similarity


async def test_bad_rating_lowers_the_rejected_cause_next_time(kb: KnowledgeBase) -> None:
    rca = RootCauseAnalyzer(ServiceGraph([("web", "api"), ("api", "db")]))
    first = ambiguous_incident("inc-C")
    r1 = rca.analyze(first, await kb.search(incident_text(first)))
    top1 = r1.hypotheses[0]
    lesson = learn(Feedback(incident_id="inc-C", kind="rca", rating="bad"), top1.model_dump())
    assert lesson.confirmed is False
    await kb.learn(lesson, first.incident_id, first.title, incident_text(first))
    second = ambiguous_incident("inc-D")
    r2 = rca.analyze(second, await kb.search(incident_text(second)))
    conf2 = {(h.cause_type, h.service): h.confidence for h in r2.hypotheses}
    assert conf2[(top1.cause_type, top1.service)] < top1.confidence
