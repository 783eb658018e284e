"""Local, offline text embeddings for the knowledge base: hashed lexical sparse vectors.

Why lexical by default (see ``docs/knowledge-base.md``): nothing may be
downloaded at run time, fastembed cannot load its model offline, and the one
packaged MiniLM pulls torch (~1.5 GB CPU build) and conflicts with faust's
click pin. Incident texts here are short and technical (service names, metric
names, k8s reasons, alert names, log templates), where exact-term overlap is
what matters, so a TF vector over normalised terms and term bigrams, feature-
hashed into Qdrant's 32-bit sparse index space and L2-normalised (dot product
= cosine in [0, 1]), works well, costs microseconds and needs no model.

Normalisation folds the vocabulary of the field onto canonical terms
(``p99``/``duration``/``slow`` -> ``latency``; ``5xx``/``exceptions`` -> ``error``;
``OOMKilled``/``OutOfMemory`` -> ``oom`` ...) and splits camelCase/snake_case.

Examples
--------
>>> emb = LexicalEmbedder()
>>> a = emb.embed("api error_rate up after deploy v8; latency p99 up")
>>> b = emb.embed("HighErrorRate on api, slow requests (duration) after a rollout")
>>> c = emb.embed("disk full on db volume")
>>> cosine(a, b) > cosine(a, c)
True
>>> round(cosine(a, a), 6)
1.0
>>> emb.terms("OOMKilled pods of payments-api")[:4]
['oom', 'pod', 'payment', 'api']
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass

__all__ = ["LexicalEmbedder", "SparseVec", "cosine"]

_SPLIT = re.compile(r"[^0-9a-zA-Z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOISE = re.compile(r"^(?:\d+(?:\.\d+)?[a-z]{0,2}|[0-9a-f]{8,}|v?\d+(?:\.\d+)+)$")

_STOP = frozenset("""a an and are as at be been by for from has have in into is it its of on or
that the their then there these this to was were will with after before over under up down
than via per vs not no during while when""".split())

#: canonical forms (after lower-casing and light stemming)
_CANON = {
    "p50": "latency", "p90": "latency", "p95": "latency", "p99": "latency", "duration": "latency",
    "slow": "latency", "latenc": "latency", "response": "latency", "rtt": "latency",
    "delay": "latency", "timeout": "timeout", "timedout": "timeout",
    "5xx": "error", "errors": "error", "err": "error", "exception": "error", "fail": "error",
    "failure": "error", "failed": "error", "fault": "error",
    "oomkilled": "oom", "oomkilling": "oom", "outofmemory": "oom", "memory": "memory",
    "mem": "memory", "heap": "memory", "rss": "memory",
    "cpu": "cpu", "throttl": "cpu", "throttling": "cpu",
    "deploy": "deploy", "deployment": "deploy", "rollout": "deploy", "release": "deploy",
    "sync": "deploy", "argocd": "deploy", "upgrade": "deploy",
    "connection": "connection", "conn": "connection", "connections": "connection",
    "hikari": "pool", "pgbouncer": "pool", "pool": "pool",
    "crashloopbackoff": "crashloop", "backoff": "crashloop", "crash": "crashloop",
    "restart": "restart", "restarting": "restart",
    "disk": "disk", "volume": "disk", "filesystem": "disk", "inode": "disk", "space": "disk",
    "requests": "traffic", "request": "traffic", "qps": "traffic", "rps": "traffic",
    "throughput": "traffic", "traffic": "traffic", "surge": "traffic", "spike": "traffic",
    "config": "config", "configuration": "config", "configmap": "config",
    "unavailable": "unavailable", "availability": "unavailable", "refused": "refused",
}


def _stem(w: str) -> str:
    for suf in ("ing", "ies", "es", "s"):
        if len(w) > len(suf) + 2 and w.endswith(suf) and not w.endswith("ss"):
            return w[: -len(suf)] + ("y" if suf == "ies" else "")
    return w


@dataclass(frozen=True, slots=True)
class SparseVec:
    indices: list[int]
    values: list[float]


def cosine(a: SparseVec, b: SparseVec) -> float:
    """Dot product of two L2-normalised sparse vectors."""
    bd = dict(zip(b.indices, b.values, strict=True))
    return sum(v * bd.get(i, 0.0) for i, v in zip(a.indices, a.values, strict=True))


class LexicalEmbedder:
    """Text -> L2-normalised hashed TF sparse vector (unigrams + bigrams).

    Parameters
    ----------
    bigram_weight
        Weight of term bigrams relative to unigrams.
    """

    name = "lexical-v1"

    def __init__(self, bigram_weight: float = 0.5) -> None:
        self.bigram_weight = bigram_weight

    def terms(self, text: str) -> list[str]:
        out = []
        for raw in _SPLIT.split(text):
            whole = raw.lower()
            parts = [whole] if whole in _CANON else _CAMEL.split(raw)
            for part in parts:
                w = part.lower()
                if not w or w in _STOP or _NOISE.match(w) or len(w) < 2:
                    continue
                w = _CANON.get(w) or _CANON.get(_stem(w)) or _stem(w)
                out.append(w)
        return out

    @staticmethod
    def _hash(term: str) -> int:
        return zlib.crc32(term.encode()) & 0x7FFFFFFF

    def embed(self, text: str) -> SparseVec:
        terms = self.terms(text)
        feats: Counter[int] = Counter()
        for t in terms:
            feats[self._hash(t)] += 1
        weights: dict[int, float] = {i: 1.0 + math.log(c) for i, c in feats.items()}
        bigrams: Counter[int] = Counter(self._hash(f"{a}_{b}") for a, b in zip(terms, terms[1:],
                                                                               strict=False))
        for i, c in bigrams.items():
            weights[i] = weights.get(i, 0.0) + self.bigram_weight * (1.0 + math.log(c))
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        idx = sorted(weights)
        return SparseVec(indices=idx, values=[weights[i] / norm for i in idx])
