"""Block Kit replies of the ``/sre`` slash command, built from read-model views.

Examples
--------
>>> r = reply("Plan <p1> approved", [section("*ok* & done")])
>>> r["response_type"], r["blocks"][0]["text"]["text"]
('ephemeral', '*ok* &amp; done')
>>> r["text"]
'Plan &lt;p1&gt; approved'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..schemas import SimilarCase
from .views import IncidentDetail, IncidentSummary

__all__ = ["esc", "incident_list", "patterns", "rca", "reply", "section", "status"]

Block = dict[str, Any]
SEVERITY_ICON = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
MAX_TEXT = 2900  # Slack's section text limit is 3000


def esc(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": esc(text)[:MAX_TEXT]}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": esc(text)[:MAX_TEXT]}]}


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def reply(
    text: str, blocks: Sequence[Block] | None = None, in_channel: bool = False
) -> dict[str, Any]:
    """A slash-command response: fallback ``text`` plus ``blocks``."""
    return {
        "response_type": "in_channel" if in_channel else "ephemeral",
        "text": esc(text)[:MAX_TEXT],
        "blocks": list(blocks or [section(text)]),
    }


def status(summary: dict[str, Any], agent_status: str) -> dict[str, Any]:
    sev = summary.get("incidents_by_severity") or {}
    lines = [
        f"*Agent:* {agent_status}",
        f"*Open incidents:* {summary['incidents_open']}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(sev.items())) + ")" if sev else ""),
        f"*Open anomalies:* {summary['anomalies_open']}  *Predictions:* {summary['predictions']}",
        f"*Plans awaiting approval:* {summary['plans_pending']}",
    ]
    acts = summary.get("actions_by_outcome") or {}
    if acts:
        lines.append("*Actions:* " + ", ".join(f"{k} {v}" for k, v in sorted(acts.items())))
    return reply(
        f"SRE agent {agent_status}: {summary['incidents_open']} open incidents",
        [header("SRE agent status"), section("\n".join(lines))],
    )


def _incident_line(s: IncidentSummary) -> str:
    cause = (
        f" — likely {s.top_cause.cause_type} on {s.top_cause.service} "
        f"({s.top_cause.confidence:.0%})"
        if s.top_cause
        else ""
    )
    return (
        f"{SEVERITY_ICON.get(s.severity, '')} *{s.title}* `{s.incident_id}`\n"
        f"{s.status}, services: {', '.join(s.services) or '-'}{cause}"
        + (f", {s.pending_plans} plan(s) awaiting approval" if s.pending_plans else "")
    )


def incident_list(items: Sequence[IncidentSummary], total: int) -> dict[str, Any]:
    if not items:
        return reply("No open incidents.", [section(":white_check_mark: No open incidents.")])
    blocks: list[Block] = [header(f"Open incidents ({total})")]
    blocks += [section(_incident_line(s)) for s in items]
    if total > len(items):
        blocks.append(context(f"showing {len(items)} of {total}"))
    return reply(f"{total} open incidents", blocks)


def rca(d: IncidentDetail) -> dict[str, Any]:
    s = d.summary
    blocks: list[Block] = [
        header(f"RCA: {s.title}"[:150]),
        context(f"incident {s.incident_id} · {s.status}"),
    ]
    if d.rca is None or not d.rca.hypotheses:
        blocks.append(section("No root-cause analysis yet for this incident."))
        return reply(f"No RCA yet for {s.incident_id}", blocks)
    for i, h in enumerate(d.rca.hypotheses[:3], 1):
        ev = "\n".join(f"• [{e.kind}] {e.summary}" for e in h.evidence[:5])
        acts = ", ".join(h.recommended_actions[:5])
        blocks.append(
            section(
                f"*{i}. {h.cause_type}* on `{h.service}` — {h.confidence:.0%}\n{h.summary}"
                + (f"\n{ev}" if ev else "")
                + (f"\n_Recommended:_ {acts}" if acts else "")
            )
        )
    if d.rca.similar:
        blocks.append(
            context(
                "Similar: "
                + "; ".join(f"{c.title} ({c.similarity:.2f})" for c in d.rca.similar[:3])
            )
        )
    for pv in d.plans[-3:]:
        p = pv.plan
        blocks.append(
            context(f"plan {p.plan_id}: {p.risk_tier} ({p.risk_score:.2f}), {p.policy}, {p.status}")
        )
    top = d.rca.hypotheses[0]
    return reply(
        f"RCA {s.incident_id}: {top.cause_type} on {top.service} ({top.confidence:.0%})", blocks
    )


def patterns(query: str, items: Sequence[SimilarCase]) -> dict[str, Any]:
    if not items:
        return reply(f"No similar cases for “{query}”.")
    blocks: list[Block] = [header("Similar cases"), context(f"query: {query}")]
    for c in items:
        extra = ", ".join(x for x in (c.cause_type, c.resolution) if x)
        blocks.append(
            section(f"*{c.title}* ({c.kind}, {c.similarity:.2f})" + (f"\n{extra}" if extra else ""))
        )
    return reply(f"{len(items)} similar cases for “{query}”", blocks)


def silences(items: Sequence[Any]) -> dict[str, Any]:
    """Active silences and maintenance windows (``/sre silences``)."""
    if not items:
        return reply("No active silences.", [section("No active silences or maintenance windows.")])
    lines = []
    for x in items[:20]:
        m = " ".join(f"{k}={v}" for k, v in x.matchers.items())
        lines.append(f"`{x.silence_id}` {x.kind} {esc(m)} — {x.starts_at:%Y-%m-%d %H:%M} to "
                     f"{x.ends_at:%Y-%m-%d %H:%M} UTC by {esc(x.author)}: {esc(x.comment)[:200]}")
    return reply(f"{len(items)} active silences",
                 [header(f"Silences ({len(items)})"), section("\n".join(lines))])


def detected(found: dict[str, Any], service: str | None) -> dict[str, Any]:
    """What the detectors see now, with the patterns each anomaly matches (``/sre detect``)."""
    items = found.get("anomalies") or []
    where = f" on {service}" if service else ""
    if not items:
        return reply(f"No open anomalies{where}.",
                     [section(f":white_check_mark: The detectors see nothing anomalous{where}.")])
    blocks: list[Block] = [header(f"Open anomalies{where} ({len(items)})")]
    for a in items:
        pats = a.get("patterns") or []
        match = (f"\nmatches: {esc(pats[0].get('title', ''))} "
                 f"({float(pats[0].get('similarity', 0)):.0%})" if pats else "")
        blocks.append(section(
            f"*{esc(a['service'])}* `{esc(a['metric'])}` {a.get('direction', '')} — score "
            f"{float(a.get('score', a.get('peak_score', 0))):.2f}, observed "
            f"{float(a.get('observed', a.get('peak_value', 0))):.4g} vs expected "
            f"{float(a.get('expected', 0)):.4g}{match}"))
    if not found.get("knowledge_base"):
        blocks.append(context("knowledge base not available: no pattern matching"))
    return reply(f"{len(items)} open anomalies{where}", blocks)
