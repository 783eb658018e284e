"""The knowledge base (RAG) in Qdrant: patterns, past incidents, runbooks.

Three collections (``<prefix>_patterns``, ``<prefix>_incidents``,
``<prefix>_runbooks``) hold one sparse named vector ``lex``
(:class:`~sre_agent.sinks.embeddings.LexicalEmbedder`, cosine via dot product of
normalised vectors). The client is qdrant-client's: embedded local mode by
default (``QdrantClient(path=...)`` under the worker's data dir, or
``":memory:"``), a server when ``qdrant.url`` is set.

* **patterns** are shaped like seed 003's (symptoms, root causes, solutions with
  confidence and risk, metadata: occurrence count, success rate, last seen),
  seeded from ``runbooks/patterns.yaml`` and updated by feedback — a human's
  verdict on the cause, and the verifier's outcome of an executed remediation
  (success rate; the pattern's confidence moves by :data:`OUTCOME_STEP`, half
  a human confirmation's step);
* **incidents** are past incidents with their confirmed (or rejected) cause;
* **runbooks** are Markdown files (optional YAML front matter with ``cause_type``).

:meth:`KnowledgeBase.search` is what other stages call (``ctx.services.knowledge``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from qdrant_client import AsyncQdrantClient, models

from ..config import KnowledgeSettings, QdrantSettings
from ..processors.rca_feedback import Lesson
from ..schemas import SimilarCase
from .embeddings import LexicalEmbedder

__all__ = ["PACKAGED_RUNBOOKS", "KnowledgeBase"]

log = logging.getLogger(__name__)

PACKAGED_RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"
VECTOR = "lex"
#: how far a verified action outcome moves a pattern's confidence (a human verdict: 0.1)
OUTCOME_STEP = 0.05
_NS = uuid.UUID("7b0e6c1e-33a5-4c1b-9a57-5b1d1f0c2a11")


def _pid(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{key}"))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def parse_runbook(path: Path) -> dict[str, Any]:
    """Front matter (optional YAML between ``---`` lines), H1 title and body."""
    text = path.read_text(encoding="utf-8")
    meta: dict[str, Any] = {}
    if text.startswith("---"):
        _, fm, body = text.split("---", 2) if text.count("---") >= 2 else ("", "", text)
        try:
            meta = yaml.safe_load(fm) or {}
        except yaml.YAMLError:
            meta = {}
        text = body
    title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), path.stem)
    return {"id": path.stem, "title": title, "body": text.strip(), "path": str(path),
            "cause_type": meta.get("cause_type"), "tags": list(meta.get("tags") or [])}


class KnowledgeBase:
    """Patterns, past incidents and runbooks in Qdrant; sets itself up on first use.

    Parameters
    ----------
    qdrant, knowledge
        Settings sections.
    data_dir
        Where the embedded store lives when neither ``qdrant.url`` nor ``qdrant.path`` is set.
    location
        ``":memory:"`` for an in-memory store (tests); overrides the above.
    """

    def __init__(self, qdrant: QdrantSettings, knowledge: KnowledgeSettings,
                 data_dir: Path | None = None, location: str | None = None) -> None:
        self.qdrant = qdrant
        self.settings = knowledge
        self.data_dir = data_dir
        self.location = location
        self.embedder = LexicalEmbedder()
        p = qdrant.collection_prefix
        self.collections = {"pattern": f"{p}_patterns", "incident": f"{p}_incidents",
                            "runbook": f"{p}_runbooks"}
        self._client: AsyncQdrantClient | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle
    def _make_client(self) -> AsyncQdrantClient:
        if self.location:
            return AsyncQdrantClient(location=self.location)
        if self.qdrant.url:
            key = self.qdrant.api_key.get_secret_value() if self.qdrant.api_key else None
            return AsyncQdrantClient(url=self.qdrant.url, api_key=key)
        path = self.qdrant.path or (self.data_dir or Path("./data")) / "qdrant"
        Path(path).mkdir(parents=True, exist_ok=True)
        return AsyncQdrantClient(path=str(path))

    async def setup(self) -> AsyncQdrantClient:
        """Connect, create collections, seed patterns and load runbooks (idempotent)."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is not None:
                return self._client
            client = self._make_client()
            for name in self.collections.values():
                if not await client.collection_exists(name):
                    await client.create_collection(
                        name, vectors_config={},
                        sparse_vectors_config={VECTOR: models.SparseVectorParams()})
            self._client = client
            n = await self._seed_patterns()
            r = await self.load_runbooks(self.settings.runbooks_dir or PACKAGED_RUNBOOKS)
            log.info("knowledge base ready: %d new patterns, %d runbooks", n, r)
            return client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ------------------------------------------------------------------ writes
    def _point(self, pid: str, text: str, payload: dict[str, Any]) -> models.PointStruct:
        v = self.embedder.embed(text)
        return models.PointStruct(id=pid, payload={**payload, "text": text[:4000]},
                                  vector={VECTOR: models.SparseVector(indices=v.indices,
                                                                      values=v.values)})

    @staticmethod
    def pattern_text(p: dict[str, Any]) -> str:
        return " ".join([p.get("title", ""), p.get("description", ""),
                         " ".join(p.get("symptoms", [])), " ".join(p.get("root_causes", [])),
                         str(p.get("cause_type", "")).replace("_", " ")])

    async def _seed_patterns(self) -> int:
        path = PACKAGED_RUNBOOKS / "patterns.yaml"
        seeds = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else []
        client = self._client
        assert client is not None
        ids = [_pid("pattern", p["pattern_id"]) for p in seeds]
        have = {str(r.id) for r in await client.retrieve(self.collections["pattern"], ids=ids)}
        new = []
        for pid, p in zip(ids, seeds, strict=True):
            if pid in have:
                continue  # keep what feedback learned
            p = {**p, "metadata": {"occurrence_count": 0, "last_seen": None, "success_rate": None,
                                   "attempts": 0, "successes": 0, "confidence": 0.5,
                                   "avg_resolution_time": None}}
            new.append(self._point(pid, self.pattern_text(p), p))
        if new:
            await client.upsert(self.collections["pattern"], points=new)
        return len(new)

    async def load_runbooks(self, directory: Path) -> int:
        """(Re)index every ``*.md`` file of ``directory``; return how many."""
        client = await self.setup() if self._client is None else self._client
        d = Path(directory)
        if not d.is_dir():
            log.warning("runbooks folder %s does not exist", d)
            return 0
        points = []
        for f in sorted(d.glob("*.md")):
            rb = parse_runbook(f)
            points.append(self._point(_pid("runbook", rb["id"]), f"{rb['title']} {rb['body']}", rb))
        if points:
            await client.upsert(self.collections["runbook"], points=points)
        return len(points)

    async def add_incident(self, incident_id: str, title: str, text: str, *,
                           cause_type: str | None, service: str | None = None,
                           resolution: str | None = None, confirmed: bool = False,
                           rejected: bool = False, when: str | None = None) -> None:
        """Upsert a past incident with its confirmed (or rejected) cause."""
        client = await self.setup()
        payload = {"incident_id": incident_id, "title": title, "cause_type": cause_type,
                   "service": service, "resolution": resolution, "confirmed": confirmed,
                   "rejected": rejected, "updated": when or _now()}
        await client.upsert(self.collections["incident"],
                            points=[self._point(_pid("incident", incident_id), text, payload)])

    async def add_pattern(self, pattern: dict[str, Any]) -> dict[str, Any]:
        """Upsert a pattern a person taught (seed 003's ``POST /api/patterns/learn``).

        ``pattern_id`` keeps an existing pattern's learned metadata; a new one starts
        at confidence 0.5 like the seeded patterns.
        """
        client = await self.setup()
        pid = _pid("pattern", pattern["pattern_id"])
        found = await client.retrieve(self.collections["pattern"], ids=[pid])
        meta = dict((found[0].payload or {}).get("metadata") or {}) if found else {
            "occurrence_count": 0, "last_seen": None, "success_rate": None, "attempts": 0,
            "successes": 0, "confidence": 0.5, "avg_resolution_time": None}
        pat = {**pattern, "metadata": {**meta, "last_seen": _now()}}
        await client.upsert(self.collections["pattern"],
                            points=[self._point(pid, self.pattern_text(pat), pat)])
        return pat

    async def pattern_for(self, cause_type: str) -> tuple[str, dict[str, Any]] | None:
        client = await self.setup()
        res, _ = await client.scroll(
            self.collections["pattern"], limit=1, with_payload=True,
            scroll_filter=models.Filter(must=[models.FieldCondition(
                key="cause_type", match=models.MatchValue(value=cause_type))]))
        return (str(res[0].id), dict(res[0].payload or {})) if res else None

    async def update_pattern(self, cause_type: str, *, confirmed: bool | None = None,
                             action_succeeded: bool | None = None, example: str = "",
                             when: str | None = None) -> dict[str, Any]:
        """Feedback on a cause: occurrence count, confidence, success rate, last seen."""
        client = await self.setup()
        found = await self.pattern_for(cause_type)
        if found is None:
            pid = _pid("pattern", f"PAT-LEARNED-{cause_type}")
            pat: dict[str, Any] = {
                "pattern_id": f"PAT-LEARNED-{cause_type}", "category": "learned",
                "cause_type": cause_type, "title": f"Learned: {cause_type.replace('_', ' ')}",
                "description": example[:500], "symptoms": [], "root_causes": [], "solutions": [],
                "metadata": {"occurrence_count": 0, "last_seen": None, "success_rate": None,
                             "attempts": 0, "successes": 0, "confidence": 0.5}}
        else:
            pid, pat = found
        meta = dict(pat.get("metadata") or {})
        conf = float(meta.get("confidence", 0.5))
        if confirmed is True:
            meta["occurrence_count"] = int(meta.get("occurrence_count", 0)) + 1
            conf += 0.1 * (1.0 - conf)
        elif confirmed is False:
            conf -= 0.15 * conf
        if action_succeeded is not None:
            if confirmed is None:  # the remediation for this cause healed it (or did not):
                # weaker evidence about the cause than a human verdict, half the step
                conf = conf + OUTCOME_STEP * (1.0 - conf) if action_succeeded else (
                    conf - OUTCOME_STEP * conf)
            meta["attempts"] = int(meta.get("attempts", 0)) + 1
            meta["successes"] = int(meta.get("successes", 0)) + int(action_succeeded)
            meta["success_rate"] = round(meta["successes"] / meta["attempts"], 4)
            step = 0.05 if action_succeeded else -0.1
            pat["solutions"] = [{**s, "confidence": round(min(0.99, max(0.01, float(
                s.get("confidence", 0.5)) + step)), 4)} if i == 0 else s
                for i, s in enumerate(pat.get("solutions", []))]
        meta["confidence"] = round(min(0.99, max(0.01, conf)), 4)
        meta["last_seen"] = when or _now()
        pat["metadata"] = meta
        if example and example not in pat.get("symptoms", []) and len(pat.get("symptoms", [])) < 20:
            pat["symptoms"] = [*pat.get("symptoms", []), example[:200]]
        pat.pop("text", None)
        await client.upsert(self.collections["pattern"],
                            points=[self._point(pid, self.pattern_text(pat), pat)])
        return pat

    async def learn(self, lesson: Lesson, incident_id: str, title: str, text: str,
                    when: str | None = None) -> dict[str, Any] | None:
        """Apply a feedback :class:`Lesson`: store the incident, update its cause's pattern."""
        if lesson.cause_type is None:
            return None
        if lesson.confirmed is not None:  # an action outcome alone keeps the stored verdict
            await self.add_incident(
                incident_id, title, text, cause_type=lesson.cause_type, service=lesson.service,
                resolution=lesson.note, confirmed=lesson.confirmed is True,
                rejected=lesson.confirmed is False, when=when)
        return await self.update_pattern(lesson.cause_type, confirmed=lesson.confirmed,
                                         action_succeeded=lesson.action_succeeded,
                                         example=title if lesson.confirmed else "", when=when)

    # ------------------------------------------------------------------ reads
    async def search(self, text: str, limit: int = 5) -> list[SimilarCase]:
        """Similar past incidents, patterns and runbooks, most similar first."""
        client = await self.setup()
        v = self.embedder.embed(text)
        if not v.indices:
            return []
        q = models.SparseVector(indices=v.indices, values=v.values)
        found: list[SimilarCase] = []
        for kind, name in self.collections.items():
            res = await client.query_points(name, query=q, using=VECTOR, limit=limit,
                                            with_payload=True)
            for pt in res.points:
                sim = round(float(pt.score), 4)
                if sim < self.settings.min_similarity:
                    continue
                found.append(self._case(kind, pt.payload or {}, sim))
        found.sort(key=lambda c: (-c.similarity, c.kind, c.id))
        return found[:limit]

    @staticmethod
    def _case(kind: str, p: dict[str, Any], sim: float) -> SimilarCase:
        if kind == "incident":
            cause = p.get("cause_type") if (p.get("confirmed") or p.get("rejected")) else None
            res = p.get("resolution")
            if p.get("rejected"):
                res = f"rejected: {res or 'rated bad'}"
            return SimilarCase(id=p["incident_id"], title=p.get("title", ""), similarity=sim,
                               cause_type=cause, resolution=res, kind="incident",
                               service=p.get("service"))
        if kind == "pattern":
            sols = p.get("solutions") or []
            meta = p.get("metadata") or {}
            res = ", ".join(f"{s.get('action')} ({s.get('risk')}, {s.get('confidence')})"
                            for s in sols[:3]) or None
            if meta.get("success_rate") is not None:
                res = f"{res}; success rate {meta['success_rate']:.0%}"
            return SimilarCase(id=p.get("pattern_id", "?"), title=p.get("title", ""),
                               similarity=sim, cause_type=p.get("cause_type"), resolution=res,
                               kind="pattern")
        return SimilarCase(id=p.get("id", "?"), title=p.get("title", ""), similarity=sim,
                           cause_type=p.get("cause_type"), resolution=p.get("path"),
                           kind="runbook")
