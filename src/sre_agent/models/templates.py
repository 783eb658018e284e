"""Drain-style online log template mining (He et al., ICWS 2017), one miner per service.

A line is masked (UUIDs, IPs, hex, numbers, quoted strings... become ``<*>``),
split into tokens, and routed through a fixed-depth tree: token count, then the
first ``depth`` tokens (a token with digits routes as ``<*>``). Among the
templates in that leaf, the most similar one (share of equal tokens, ``<*>``
matching anything) absorbs the line if similarity >= ``similarity``; differing
positions become ``<*>``. Otherwise the line founds a new template. A template's
id is fixed at creation, so it survives generalisation.

Examples
--------
>>> m = TemplateMiner()
>>> a = m.add("Connection to 10.0.0.12:5432 timed out after 3000 ms", error=True)
>>> b = m.add("Connection to 10.0.0.13:5432 timed out after 2500 ms", error=True)
>>> a.template_id == b.template_id, a.is_new, b.is_new
(True, True, False)
>>> b.template
'Connection to <*> timed out after <*> ms'
>>> c = m.add("user 42 logged in from 192.168.1.5")
>>> c.template, c.is_new
('user <*> logged in from <*>', True)
>>> m2 = TemplateMiner.from_bytes(m.to_bytes())
>>> m2.add("Connection to db-1 timed out after 12 ms").template_id == a.template_id
True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Match", "Template", "TemplateMiner", "mask"]

WILD = "<*>"
_MASKS = [
    re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"),  # IPv4[:port]
    re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}\b"),  # IPv6 (full forms)
    re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),  # e-mail
    re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b"),
    re.compile(r"\b0x[0-9a-fA-F]+\b"),
    re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b"),  # long hex ids (sha, trace ids)
    re.compile(r"\"[^\"]{0,200}\"|'[^']{0,200}'"),  # quoted values
    re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:ms|s|us|ns|m|h|kb|mb|gb|b|%)?\b"),
]
_SPLIT = re.compile(r"[\s=,;:()\[\]{}]+")
_HAS_DIGIT = re.compile(r"\d")
MAX_TOKENS = 64


def mask(line: str) -> list[str]:
    """Mask variable parts and tokenise a log line.

    >>> mask('GET /api/orders/123 took 45ms from 10.1.2.3 id=4f9c1e2a9b7d3c11aa')
    ['GET', '/api/orders/<*>', 'took', '<*>', 'from', '<*>', 'id', '<*>']
    """
    for rx in _MASKS:
        line = rx.sub(WILD, line)
    toks = [t for t in _SPLIT.split(line) if t]
    return toks[:MAX_TOKENS]


@dataclass(slots=True)
class Template:
    template_id: str
    tokens: list[str]
    count: int = 0
    errors: int = 0
    last_seen: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    @property
    def is_error(self) -> bool:
        """Most of its lines were errors."""
        return self.errors * 2 > self.count


@dataclass(frozen=True, slots=True)
class Match:
    template_id: str
    template: str
    is_new: bool
    is_error: bool


def _similarity(a: list[str], b: list[str]) -> float:
    same = sum(1 for x, y in zip(a, b) if x == y or x == WILD)
    return same / len(a) if a else 1.0


class TemplateMiner:
    """One service's templates.

    Parameters
    ----------
    similarity
        Least share of equal tokens for a line to join a template.
    depth
        Prefix tokens used as tree keys.
    max_templates
        Bound on templates; the least recently seen is evicted beyond it.
    """

    def __init__(self, similarity: float = 0.5, depth: int = 2, max_templates: int = 1000,
                 seed: str = "") -> None:
        self.similarity = similarity
        self.depth = depth
        self.max_templates = max_templates
        self.seed = seed  #: namespaces template ids (the service name)
        self.templates: dict[str, Template] = {}
        self._leaves: dict[tuple[str, ...], list[str]] = {}
        self.lines = 0
        self.first_t: float | None = None

    def _key(self, toks: list[str]) -> tuple[str, ...]:
        head = tuple(WILD if _HAS_DIGIT.search(t) else t for t in toks[: self.depth])
        return (str(len(toks)), *head)

    def add(self, line: str, error: bool = False, t: float = 0.0) -> Match:
        """Mine one line; return its template (``is_new`` when just founded)."""
        toks = mask(line) or [WILD]
        self.lines += 1
        if self.first_t is None:
            self.first_t = t
        key = self._key(toks)
        leaf = self._leaves.setdefault(key, [])
        best, best_sim = None, -1.0
        for tid in leaf:
            tpl = self.templates[tid]
            sim = _similarity(tpl.tokens, toks)
            if sim > best_sim:
                best, best_sim = tpl, sim
        is_new = best is None or best_sim < self.similarity
        if is_new:
            tid = hashlib.blake2b(f"{self.seed}\x00{' '.join(toks)}".encode(),
                                  digest_size=6).hexdigest()
            best = self.templates.get(tid)
            if best is None:
                best = self.templates[tid] = Template(tid, toks)
                leaf.append(tid)
                self._evict()
            else:  # an evicted-and-back or hash-equal template: not new
                is_new = False
        else:
            assert best is not None
            best.tokens = [x if x == y else WILD for x, y in zip(best.tokens, toks)]
        best.count += 1
        best.errors += int(error)
        best.last_seen = t
        return Match(best.template_id, best.text, is_new, best.is_error)

    def _evict(self) -> None:
        if len(self.templates) <= self.max_templates:
            return
        victim = min(self.templates.values(), key=lambda x: (x.last_seen, x.count))
        del self.templates[victim.template_id]
        for leaf in self._leaves.values():
            if victim.template_id in leaf:
                leaf.remove(victim.template_id)
                break

    # ------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1, "s": self.similarity, "d": self.depth, "m": self.max_templates,
            "seed": self.seed, "lines": self.lines, "first_t": self.first_t,
            "t": [[x.template_id, x.tokens, x.count, x.errors, x.last_seen]
                  for x in self.templates.values()],
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> TemplateMiner:
        return cls.from_dict(orjson.loads(data))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemplateMiner:
        m = cls(d["s"], d["d"], d["m"], d.get("seed", ""))
        m.lines, m.first_t = d["lines"], d["first_t"]
        for tid, toks, count, errors, last in d["t"]:
            m.templates[tid] = Template(tid, toks, count, errors, last)
            m._leaves.setdefault(m._key(toks), []).append(tid)
        return m
