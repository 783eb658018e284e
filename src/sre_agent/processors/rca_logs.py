"""Log evidence for RCA: template rates before and after the incident start.

Lines are mined per service with the product's own template miner
(:class:`~sre_agent.models.templates.TemplateMiner`, the one the log-pattern
stage runs), then each ``(service, template)`` count after the start is
compared with its count before:

* **covered time** — log exports often hold only some stretches (sampling,
  retention, chunks around events). A time bin counts as *covered* when any
  service logged in it; rates are counts per covered minute, so a missing
  stretch reads as "no data", not as silence;
* **surprise** — with ``a`` lines in ``T_ref`` covered minutes before and
  ``b`` in ``T_after`` after, the Gamma–Poisson predictive of ``b`` (a
  negative binomial with ``r = a + 1/2``, ``p = T_ref / (T_ref + T_after)``:
  Jeffreys prior on the rate) gives the tail probability of ``b`` or more
  (rise; a template never seen before is the extreme case) and of ``b`` or
  fewer (drop: a code path that stopped running). Short references widen
  the predictive on their own, so no extra floor is needed; the tail
  probability is reported as a normal z. (A quasi-Poisson correction for
  bursty templates was measured on the Nezha set and lowered accuracy: the
  references there hold earlier faults' error bursts, which made the next
  fault's errors look ordinary. It is not applied);
* **busy templates swing** — the rate of a busy template varies between
  periods with traffic far more than Poisson allows (41 -> 16 lines/min
  of an everyday WARN gave z = 6). The z is capped by the z of the log
  rate ratio under a multiplicative rate noise of :data:`RATE_CV` per
  period (the negative-binomial "NB2" variance ``mu + (cv·mu)²`` in the
  limit of many lines): a large count cannot make a modest relative change
  certain, while a new template or a several-fold change still scores high;
* **the mix of a service's templates** — many weak changes together (one
  statement stops, a sibling takes over) are judged as one test of the
  service's template shares, independent of its volume (:func:`mix_shift`);
* **errors count more** — a rise of an error template (level WARN/ERROR/…,
  or error words without a level) counts fully, a rise of another template
  and any drop count half (:data:`INFO_WEIGHT`, :data:`DROP_WEIGHT`);
* **where a failing request's errors start** — with trace ids in the lines,
  the service whose error line comes first in a request whose errors then
  reach its callers is where that failure began (:func:`error_origins`).

Examples
--------
>>> lines = [(60.0 * i + 5, "api", "INFO GET /orders took 12 ms") for i in range(30)]
>>> lines += [(1800.0 + 10 * i, "db", "ERROR connection pool exhausted (size 20)")
...           for i in range(12)]
>>> lines += [(1800.0 + 20 * i, "api", "INFO GET /orders took 40 ms") for i in range(6)]
>>> ev = log_evidence(lines, start=1800.0)
>>> top = max(ev, key=lambda e: e.score)
>>> top.service, top.change, top.is_error, round(top.score, 1) > 4
('db', 'new', True, True)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from ..models.templates import TemplateMiner

__all__ = ["COVER_BIN", "LogEvidence", "log_evidence", "line_level"]

#: width of the bins that decide which time the export covers (seconds)
COVER_BIN = 10.0
#: weight of a rise of a non-error template
INFO_WEIGHT = 0.5
#: weight of a drop of any template
DROP_WEIGHT = 0.5
#: coefficient of variation of a template's true rate between periods (traffic, batching)
RATE_CV = 0.5
#: weight of a change of a service's template mix (:func:`mix_shift`): as a rise of an
#: error template (a single non-error template counts half because it moves with
#: traffic; the mix test allows for that and for the number of templates compared)
MIX_WEIGHT = 1.0
#: fewest lines (before + after) of a template for it to enter the mix test
MIX_MIN = 2
#: share of a service's strongest stopped non-error statement added to its mix change
#: (log1p scale; as the engine's corroboration between kinds of evidence)
MIX_CORROBORATION = 0.25
#: trace id in a log line (``TraceID: 3f2a…``, ``trace_id=…``, ``"traceId":"…"``)
_TRACE = re.compile(r"trace[_-]?id\"?\s*[:=]\s*\"?([0-9A-Za-z][0-9A-Za-z._-]{7,})", re.I)
#: shortest hand-off gap: log timestamps' resolution (seconds)
HANDOFF_FLOOR = 0.001
#: a hand-off this much slower than the service's median one (log scale: x4) is slow
HANDOFF_RATIO = math.log(4.0)
#: the scales a service's hand-offs are judged at (log scale: x4, x16, x64 its median)
HANDOFF_SCALES = (HANDOFF_RATIO, 2 * HANDOFF_RATIO, 3 * HANDOFF_RATIO)
#: fewest reference hand-offs of a service to judge its hand-offs
HANDOFF_MIN = 5
#: weight of slower hand-offs: as a rise of an error template (a delay is a fault)
HANDOFF_WEIGHT = 1.0
#: most lines mined per analysis (the newest are kept): bounds the work
MAX_LINES = 500_000

_LEVEL = re.compile(r"^\s*\[?(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|"
                    r"SEVERE|PANIC|ALERT|EMERG)\b", re.I)
_ERROR_LEVELS = {"WARN", "WARNING", "ERROR", "ERR", "FATAL", "CRITICAL", "SEVERE", "PANIC",
                 "ALERT", "EMERG"}
_ERROR_WORDS = re.compile(r"\b(error|exception|fatal|panic|traceback|fail(ed|ure)?)\b", re.I)
_ND = NormalDist()


def line_level(message: str, level: str = "") -> tuple[str, bool]:
    """``(level, is_error)`` of a line: its own level word first, else ``level``.

    >>> line_level("ERROR c.s.ContactsServiceImpl#37 lookup failed")
    ('ERROR', True)
    >>> line_level("GET /x 200", "info"), line_level("request failed")
    (('INFO', False), ('', True))
    """
    m = _LEVEL.match(message)
    lvl = (m.group(1) if m else level).upper()
    if lvl:
        return lvl, lvl in _ERROR_LEVELS
    return "", bool(_ERROR_WORDS.search(message))


@dataclass(frozen=True, slots=True)
class LogEvidence:
    service: str
    template_id: str
    template: str
    is_error: bool
    #: "new" (never seen before the start), "up", "down", or "mix" (the service's
    #: template mix, :func:`mix_shift`; ``template`` then says how many templates)
    change: str
    #: lines per covered minute before / after the start
    rate_before: float
    rate_after: float
    #: normal z of the tail probability (before weighting)
    z: float
    #: weighted z: what the ranking uses
    score: float
    #: first line of the template after the start (rises only)
    onset: float | None


def _nb_logpmf(k: int, r: float, p: float) -> float:
    return (math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1) + r * math.log(p)
            + k * math.log1p(-p))


def _nb_cdf(b: int, r: float, p: float) -> float:
    """P(X <= b) of a negative binomial (failures before the r-th success)."""
    return min(1.0, sum(math.exp(_nb_logpmf(k, r, p)) for k in range(b + 1)))


def _nb_sf(b: int, r: float, p: float) -> float:
    """P(X >= b), summed from the side that is numerically safe."""
    if b <= 0:
        return 1.0
    mean = r * (1 - p) / p
    if b <= mean * 2 + 50:
        return max(0.0, 1.0 - _nb_cdf(b - 1, r, p))
    total, k = 0.0, b
    while True:  # terms fall geometrically beyond the mode
        term = math.exp(_nb_logpmf(k, r, p))
        total += term
        if term < total * 1e-12 or k > b + 100_000:
            return total
        k += 1


def _z(p: float) -> float:
    """Normal z of an upper-tail probability, finite for p down to 1e-300."""
    p = min(max(p, 1e-300), 0.5)
    if p > 1e-15:
        return -_ND.inv_cdf(p)
    return math.sqrt(-2.0 * math.log(p) - math.log(-2.0 * math.log(p)) - math.log(2 * math.pi))


@dataclass
class TemplateCounts:
    """Per ``(service, template id)`` line counts before and after the start."""

    before: Counter[tuple[str, str]]
    after: Counter[tuple[str, str]]
    #: first line of each template after the start
    first: dict[tuple[str, str], float]
    #: ``(template text, is_error)`` of each template
    info: dict[tuple[str, str], tuple[str, bool]]
    #: covered minutes before / after the start
    t_ref: float
    t_after: float


def count_templates(lines: Iterable[tuple[float, str, str]], start: float,
                    reference: float = 3600.0, after: float = 300.0,
                    levels: dict[int, str] | None = None,
                    miners: dict[str, TemplateMiner] | None = None) -> TemplateCounts:
    """Mine ``lines`` into templates per service and count them before / after ``start``."""
    lo, hi = start - reference, start + after
    rows = sorted(((t, i, s, m) for i, (t, s, m) in enumerate(lines) if lo <= t < hi),
                  key=lambda r: (r[0], r[1]))[-MAX_LINES:]
    miners = {} if miners is None else miners
    covered: set[int] = set()
    before: Counter[tuple[str, str]] = Counter()
    after_n: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], float] = {}
    info: dict[tuple[str, str], tuple[str, bool]] = {}
    for t, i, svc, msg in rows:
        covered.add(math.floor((t - start) / COVER_BIN))
        miner = miners.get(svc)
        if miner is None:
            miner = miners[svc] = TemplateMiner(seed=svc)
        lvl, err = line_level(msg, (levels or {}).get(i, ""))
        match = miner.add(msg, error=err, t=t)
        key = (svc, match.template_id)
        prev = info.get(key)
        info[key] = (match.template, err or (prev[1] if prev else False))
        if t < start:
            before[key] += 1
        else:
            after_n[key] += 1
            first.setdefault(key, t)
    t_ref = sum(1 for b in covered if b < 0) * COVER_BIN / 60.0
    t_after = sum(1 for b in covered if b >= 0) * COVER_BIN / 60.0
    return TemplateCounts(before, after_n, first, info, t_ref, t_after)


def judge_templates(c: TemplateCounts) -> list[LogEvidence]:
    """Evidence of every template whose rate changed (see the module's text)."""
    t_ref, t_after = c.t_ref, c.t_after
    if t_ref <= 0 or t_after <= 0:
        return []
    p = t_ref / (t_ref + t_after)
    out = []
    for key in set(c.before) | set(c.after):
        a, b = c.before[key], c.after[key]
        r = a + 0.5
        expect = r * (1 - p) / p
        if b > expect:
            z = _z(_nb_sf(b, r, p))
            change = "new" if a == 0 else "up"
            weight = 1.0 if c.info[key][1] else INFO_WEIGHT
        else:
            z = _z(_nb_cdf(b, r, p))
            change, weight = "down", DROP_WEIGHT
        z = min(z, _ratio_z(a, t_ref, b, t_after))
        if z <= 0:
            continue
        svc, tid = key
        out.append(LogEvidence(svc, tid, c.info[key][0][:300], c.info[key][1], change,
                               round(a / t_ref, 4), round(b / t_after, 4), round(z, 4),
                               round(z * weight, 4), c.first.get(key) if change != "down" else None))
    return out


def mix_shift(c: TemplateCounts) -> list[LogEvidence]:
    """Per service: did the *mix* of its templates change, whatever its volume did?

    A fault inside a code path rarely adds error lines (Train Ticket's injected
    exceptions write none); it changes which statements run and what they
    print: one template stops, a sibling of it takes over, a third fires more.
    Each of these alone is weak (a few sampled lines, and a single template's
    rate moves with traffic), so they are judged together: for every template
    with at least :data:`MIX_MIN` lines in the two periods, ``d`` is the
    change of its *share* of the service's lines (log scale, so the service's
    total volume cancels), with the variance of a log rate ratio under
    Poisson counts plus the :data:`RATE_CV` rate noise of each period. The
    sum of ``d² / var`` over ``k`` templates is a chi-square with ``k - 1``
    degrees of freedom under "same mix", reported as a normal z
    (Wilson–Hilferty), so a service with many templates is not favoured.
    """
    by: dict[str, list[tuple[int, int]]] = {}
    for key in set(c.before) | set(c.after):
        by.setdefault(key[0], []).append((c.before[key], c.after[key]))
    out = []
    for svc, rows in by.items():
        a_tot, b_tot = sum(r[0] for r in rows), sum(r[1] for r in rows)
        used = [(a, b) for a, b in rows if a + b >= MIX_MIN]
        df = len(used) - 1
        if a_tot == 0 or b_tot == 0 or df < 1:
            continue
        stat = 0.0
        for a, b in used:
            d = math.log((b + 0.5) / b_tot) - math.log((a + 0.5) / a_tot)
            stat += d * d / (1.0 / (a + 0.5) + 1.0 / (b + 0.5) + 2.0 * RATE_CV ** 2)
        z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
        if z <= 0:
            continue
        out.append(LogEvidence(svc, "*mix*", f"{len(used)} templates", False, "mix",
                               round(a_tot / c.t_ref, 4), round(b_tot / c.t_after, 4),
                               round(z, 4), round(z * MIX_WEIGHT, 4), None))
    return out


def _ratio_z(a: int, t_ref: float, b: int, t_after: float) -> float:
    """z of the log rate ratio under multiplicative rate noise of :data:`RATE_CV` per period."""
    if RATE_CV <= 0:
        return math.inf
    ratio = math.log((b + 0.5) / t_after) - math.log((a + 0.5) / t_ref)
    return abs(ratio) / (math.sqrt(2.0) * RATE_CV)


def log_evidence(lines: Iterable[tuple[float, str, str]], start: float, reference: float = 3600.0,
                 after: float = 300.0, levels: dict[int, str] | None = None,
                 miners: dict[str, TemplateMiner] | None = None,
                 edges: Iterable[tuple[str, str]] = ()) -> list[LogEvidence]:
    """Rate changes per ``(service, template)`` around ``start``.

    ``lines`` are ``(unix_seconds, service, message)``; ``levels`` optionally
    gives a level per line index (a stream record's own level) for lines whose
    message carries none. ``miners`` may pass the services' existing template
    miners (so template ids match the stream's); new ones are made otherwise.
    ``edges`` (caller, callee) say which services' errors can follow whose
    (:func:`error_origins`); without them any other service's may.
    """
    lines = lines if isinstance(lines, list) else list(lines)
    c = count_templates(lines, start, reference, after, levels, miners)
    if c.t_ref <= 0 or c.t_after <= 0:
        return []
    judged = judge_templates(c)
    return (judged + _with_stopped(mix_shift(c), judged)
            + handoff_delays(lines, start, reference, after)
            + error_origins(lines, c, start, reference, after, levels, edges))


def error_origins(lines: Iterable[tuple[float, str, str]], c: TemplateCounts, start: float,
                  reference: float = 3600.0, after: float = 300.0,
                  levels: dict[int, str] | None = None,
                  edges: Iterable[tuple[str, str]] = ()) -> list[LogEvidence]:
    """Per service: failing requests whose errors start there and reach its callers.

    Each service's *first* onset says little about who went bad first: a caller logs a
    request before its callee does, and an earlier fault's errors may still be running.
    One request orders its own errors: a callee that fails logs its error, then the
    callers it failed log theirs. So per trace id (error lines only: levels WARN/ERROR/…,
    never sampled away), the service with the first error line is where that request's
    failure began, when a later error of the request is at a (transitive) caller of it
    in ``edges`` (without a graph: at any other service). Such requests are counted per
    origin before and after ``start`` and judged like a template's lines
    (:func:`judge_templates`: the Gamma–Poisson tail over the covered minutes of ``c``,
    capped by the rate-noise z), as an error template's rise; only rises count.

    >>> lines = []
    >>> for i in range(20):  # before: db's errors alone, api fails by itself now and then
    ...     lines += [(60.0 * i, "db", f"ERROR timeout trace_id=a{i:07d}"),
    ...               (60.0 * i + 5, "api", f"ERROR bad input trace_id=b{i:07d}")]
    >>> for i in range(12):  # after: db's errors reach api in the same requests
    ...     lines += [(1200.0 + 10 * i, "db", f"ERROR timeout trace_id=c{i:07d}"),
    ...               (1200.0 + 10 * i + 0.2, "api", f"ERROR upstream 500 trace_id=c{i:07d}")]
    >>> c = count_templates(lines, 1200.0, 1200.0, 300.0)
    >>> [(e.service, e.change) for e in error_origins(lines, c, 1200.0, 1200.0, 300.0,
    ...                                                edges=[("api", "db")])]
    [('db', 'new')]
    """
    if c.t_ref <= 0 or c.t_after <= 0:
        return []
    callers: dict[str, set[str]] = {}
    for a, b in edges:
        callers.setdefault(b, set()).add(a)
    ups: dict[str, set[str]] = {}

    def upstream(s: str) -> set[str]:
        if s not in ups:
            seen, todo = set(), [s]
            while todo:
                for k in callers.get(todo.pop(), ()):
                    if k not in seen:
                        seen.add(k)
                        todo.append(k)
            ups[s] = seen
        return ups[s]

    lo, hi = start - reference, start + after
    traces: dict[str, list[tuple[float, str]]] = {}
    for i, (t, svc, msg) in enumerate(lines):
        if lo <= t < hi and line_level(msg, (levels or {}).get(i, ""))[1]:
            m = _TRACE.search(msg)
            if m and m.group(1).strip("0-._"):
                traces.setdefault(m.group(1), []).append((t, svc))
    before: Counter[str] = Counter()
    after_n: Counter[str] = Counter()
    first: dict[str, float] = {}
    for steps in traces.values():
        steps.sort()
        t0, origin = steps[0]
        later = {s for _, s in steps[1:] if s != origin}
        if not (later & upstream(origin) if callers else later):
            continue
        if t0 < start:
            before[origin] += 1
        else:
            after_n[origin] += 1
            first[origin] = min(first.get(origin, t0), t0)
    p = c.t_ref / (c.t_ref + c.t_after)
    out = []
    for svc, b in after_n.items():
        a = before[svc]
        if b <= (a + 0.5) * (1 - p) / p:
            continue
        z = min(_z(_nb_sf(b, a + 0.5, p)), _ratio_z(a, c.t_ref, b, c.t_after))
        if z > 0:
            out.append(LogEvidence(svc, "*origin*", f"{b} failing requests whose errors start "
                                   "here and reach its callers", True, "new" if a == 0 else "up",
                                   round(a / c.t_ref, 4), round(b / c.t_after, 4), round(z, 4),
                                   round(z, 4), first[svc]))
    return out


def _with_stopped(mixes: list[LogEvidence], judged: list[LogEvidence]) -> list[LogEvidence]:
    """A service's mix change counted together with its strongest stopped statement.

    The mix test (:func:`mix_shift`) says the service's code paths changed, whatever its
    traffic did; a non-error statement whose rate fell says which path stopped running.
    Together they are a code path that broke (an exception thrown before the statement),
    so the drop corroborates the mix as one kind of evidence corroborates another
    (log1p scale, :data:`MIX_CORROBORATION`). A *rise* of a non-error statement does
    not: it moves with traffic, which the mix test has just cancelled; nor does an error
    template that stopped (an earlier fault's errors ending is a recovery).
    """
    stopped: dict[str, float] = {}
    for e in judged:
        if e.change == "down" and not e.is_error:
            stopped[e.service] = max(stopped.get(e.service, 0.0), e.score)
    out = []
    for m in mixes:
        d = stopped.get(m.service, 0.0)
        if d > 0:
            hi, lo = max(m.score, d), min(m.score, d)
            m = replace(m, score=round(math.expm1(math.log1p(hi)
                                                  + MIX_CORROBORATION * math.log1p(lo)), 4))
        out.append(m)
    return out


def handoff_delays(lines: Iterable[tuple[float, str, str]], start: float,
                   reference: float = 3600.0, after: float = 300.0) -> list[LogEvidence]:
    """Slower hand-offs between services within a trace, from the trace ids in log lines.

    Lines that carry a trace id (``TraceID: …``, ``trace_id=…``, ``traceId":"…``)
    put one request's steps in order across services. The time from a line
    of one service to the next line of another service in the same trace is
    a *hand-off*: a call, its network and the callee's work up to its first
    line. A delay on a service's network (or anything that stalls it before
    it logs) makes every hand-off into and out of it slower, whoever the
    partner is, while its own lines and metrics may show nothing.

    Per service, a hand-off after the start is *slow* when its log gap is
    more than 4x the median of the service's reference hand-offs, gaps
    floored at 1 ms (log timestamps' resolution). The share of slow ones in
    the reference itself (smoothed, Jeffreys) is what is expected; the
    binomial tail of the count after is the evidence, as a normal z. The
    same is done at 16x and 64x (:data:`HANDOFF_SCALES`) and the most
    surprising scale counts, its tail multiplied by the number of scales
    (Bonferroni): a delay of a second on hand-offs of milliseconds shows
    far beyond the reference's everyday spread, which 4x alone mixes in.
    Every slowed hand-off implicates both its ends, so the services are
    explained away greedily, as an
    on-call engineer intersects the slow calls: the service with the
    strongest evidence keeps it, and its hand-offs are taken out before its
    partners are judged again (a partner slowed only through it has nothing
    left). Two ends with equal evidence (a pair that only talks to each other)
    are told apart by the call, not by name: the end deeper in the requests
    (later entry in its traces: the callee) is blamed, as slower calls are.
    """
    lo, hi = start - reference, start + after
    traces: dict[str, list[tuple[float, str]]] = {}
    for t, svc, msg in lines:
        if lo <= t < hi:
            m = _TRACE.search(msg)
            # an all-zero id is no trace (W3C: invalid, "not sampled"); it would join
            # every such line into one request
            if m and m.group(1).strip("0-._"):
                traces.setdefault(m.group(1), []).append((t, svc))
    hand: list[tuple[str, str, float, bool, str]] = []
    # how deep each service sits in the requests: its order of entry in its traces
    depth: dict[str, list[int]] = {}
    for tid, steps in traces.items():
        if len(steps) < 2:
            continue
        steps.sort()
        order: dict[str, int] = {}
        for _, s in steps:
            order.setdefault(s, len(order))
        for s, k in order.items():
            depth.setdefault(s, []).append(k)
        for (t1, s1), (t2, s2) in zip(steps, steps[1:]):
            if s1 != s2:
                hand.append((s1, s2, math.log(max(t2 - t1, HANDOFF_FLOOR)), t1 >= start, tid))
    by: dict[str, list[tuple[str, str, float, bool, str]]] = {}
    for h in hand:
        by.setdefault(h[0], []).append(h)
        by.setdefault(h[1], []).append(h)
    out: list[LogEvidence] = []
    taken: set[str] = set()
    while True:
        best: tuple[float, str, int, int, float, float, list[str], float] | None = None
        for svc in sorted(set(by) - taken):
            mine = [h for h in by[svc] if h[0] not in taken and h[1] not in taken]
            ref = np.array([h[2] for h in mine if not h[3]])
            now = [h for h in mine if h[3]]
            if len(ref) < HANDOFF_MIN or not now:
                continue
            med = float(np.median(ref))
            found = None
            # judged at each scale (4x, 16x, 64x its median): a network delay of a second
            # on millisecond hand-offs stands out far more at 64x than at 4x, where the
            # reference's everyday spread sits; the best scale, Bonferroni-corrected
            for ratio in HANDOFF_SCALES:
                cut = med + ratio
                p0 = (float(np.sum(ref > cut)) + 0.5) / (len(ref) + 1.0)
                slow = [h for h in now if h[2] > cut]
                # as for slower calls: one slowed partner cannot tell which end is slow
                if len({h[0] if h[1] == svc else h[1] for h in slow}) < min(
                        2, len({h[0] if h[1] == svc else h[1] for h in mine})):
                    continue
                # a delay holds up the typical request through the service, not a tail of
                # them (load makes some hand-offs of a busy service slower): at least half
                # of its hand-offs must be slow (a delay on one direction only, a pod's
                # egress, slows one of a request's two hand-offs with it), and most of its
                # requests, more than half: one slow request of two is no delay, however
                # many hand-offs each has
                if (not slow or 2 * len(slow) < len(now)
                        or 2 * len({h[4] for h in slow}) <= len({h[4] for h in now})):
                    continue
                zc = _z(min(1.0, len(HANDOFF_SCALES) * _binom_sf(len(slow), len(now), p0)))
                if zc > 0 and (found is None or zc > found[0]):
                    found = (zc, slow)
            if found is None:
                continue
            z, slow = found
            # equal evidence at both ends of the same slow hand-offs: the end deeper in
            # the requests (the callee) is blamed first, as slower calls are blamed on
            # their callee; never the service's name
            d = float(np.mean(depth.get(svc, [0])))
            if z > 0 and (best is None or (round(z, 9), d) > (round(best[0], 9), best[7])):
                best = (z, svc, len(slow), len(now), math.exp(med),
                        math.exp(float(np.median([h[2] for h in slow]))),
                        sorted({h[0] if h[1] == svc else h[1] for h in slow}), d)
        if best is None:
            return out
        z, svc, k, n, before, now_med, partners, _ = best
        out.append(LogEvidence(
            svc, "*handoff*", f"{k} of {n} hand-offs slower, with {', '.join(partners[:3])}"
            f"{' and more' if len(partners) > 3 else ''} (median {now_med:.3g} s vs "
            f"{before:.3g} s before)", True, "slow", round(before, 4), round(now_med, 4),
            round(z, 4), round(z * HANDOFF_WEIGHT, 4), None))
        # explained: its hand-offs are its own; its partners are judged again without them
        taken.add(svc)


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return min(1.0, sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                                 + i * math.log(p) + (n - i) * math.log1p(-p))
                        for i in range(k, n + 1)))
