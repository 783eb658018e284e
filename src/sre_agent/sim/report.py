"""Printing the scorecard: one row per scenario, then the overall figures vs targets.

Examples
--------
>>> fmt_seconds(None), fmt_seconds(42.0), fmt_seconds(5400.0), fmt_seconds(9000.0)
('-', '42s', '90.0m', '2.5h')
>>> fmt_rate(0.875), fmt_rate(None)
('87.5%', '-')
"""

from __future__ import annotations

from typing import Any

__all__ = ["fmt_rate", "fmt_seconds", "render"]


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 120:
        return f"{v:.0f}s"
    if v < 7200:
        return f"{v / 60:.1f}m"
    return f"{v / 3600:.1f}h"


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _yn(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _row(s: dict[str, Any]) -> list[str]:
    if not s["fault"]:
        return [s["name"], "(no fault)", "", "", f"{s['raw_signals']}->{s['incidents']}",
                f"false alarms {s['false_alarms']}", "", "", f"actions {s['sre_actions']}",
                "", "", ""]
    rca = (s["rca_top"][0] if s["rca_top"] else "-")
    mark = "+" if s["rca_top1"] else ("3" if s["rca_top3"] else "x")
    act = f"{s['action_chosen'] or '-'}{'+' if s['action_correct'] else 'x'}"
    pol = f"{s['policy'] or '-'}{'+' if s['policy_correct'] else 'x'}"
    lead = fmt_seconds(s["lead_time_seconds"]) if s["predictable"] else ""
    return [s["name"], _yn(s["detected"]), fmt_seconds(s["mttd_seconds"]), lead,
            f"{s['raw_signals']}->{s['incidents']}", f"{mark} {rca}",
            fmt_seconds(s["mtti_seconds"]), f"{'/'.join(s['expected_actions'])}", act, pol,
            _yn(s["remediated"]), fmt_seconds(s["mttr_seconds"])]


HEAD = ["scenario", "detected", "MTTD", "lead", "raw->inc", "RCA top-1 (+ ok, 3 in top-3)",
        "MTTI", "expected", "chosen", "policy", "healed", "MTTR"]

_OVERALL = [
    ("detection_rate", "detection rate", fmt_rate),
    ("mttd_seconds", "MTTD (to incident)", fmt_seconds),
    ("signal_mttd_seconds", "MTTD (first anomaly)", fmt_seconds),
    ("lead_time_seconds", "early-warning lead time", fmt_seconds),
    ("early_warning_rate", "slow faults warned before impact", fmt_rate),
    ("false_alarms_per_day", "false alarms per clean day", lambda v: "-" if v is None else f"{v}"),
    ("false_alarm_rate", "false alarms among incidents", fmt_rate),
    ("noise_reduction", "noise reduction (1 - incidents/raw)", fmt_rate),
    ("rca_top1", "RCA top-1", fmt_rate),
    ("rca_top3", "RCA top-3", fmt_rate),
    ("mtti_seconds", "MTTI (to first RCA)", fmt_seconds),
    ("action_correct", "action chosen = expected", fmt_rate),
    ("policy_correct", "policy tier correct", fmt_rate),
    ("remediation_success", "remediation success (when acted)", fmt_rate),
    ("remediation_coverage", "faults healed by the agent", fmt_rate),
    ("mttr_seconds", "MTTR", fmt_seconds),
    ("protected_auto_executions", "protected auto-executions", str),
    ("llm_tokens", "LLM tokens", str),
]


def _warmup_row(ov: dict[str, Any]) -> list[str]:
    return [f"(warm-up history {ov['warmup_hours']:g} h)", "(no fault)", "", "",
            f"{ov['warmup_raw_signals']}->{ov['warmup_incidents']}",
            f"false alarms {ov['warmup_incidents']}", "", "",
            f"actions {ov['warmup_sre_actions']}", "", "", ""]


def render(card: dict[str, Any]) -> str:
    """The scorecard as text."""
    ov = card["overall"]
    warm = [_warmup_row(ov)] if ov.get("warmup_hours") else []
    rows = [HEAD] + warm + [_row(s) for s in card["scenarios"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    targets = card["targets"]
    lines += ["", "overall (after the warm-up) " + "-" * 40]
    for key, label, fmt in _OVERALL:
        val = ov.get(key)
        t = targets.get(key)
        verdict = ""
        if t is not None:
            met = t["met"]
            verdict = f"  [{t['target']}: {'MET' if met else 'not met' if met is False else 'n/a'}]"
        lines.append(f"  {label:38} {fmt(val):>10}{verdict}")
    lines.append(f"  ({ov['scenario_count']} scenarios, {ov['fault_scenarios']} with a fault, "
                 f"{ov['clean_hours']} clean hours, {ov['raw_signals']} raw signals, "
                 f"{ov['incidents']} incidents, {ov['sre_actions']} sre-actions)")
    if ov.get("warmup_hours"):
        per_day = ov.get("warmup_incidents_per_day")
        lines.append(f"  warm-up history ({ov['warmup_hours']:g} h, baselines learning, no fault): "
                     f"{ov['warmup_incidents']} incidents"
                     + (f" ({per_day} per day)" if per_day is not None else "")
                     + f", {ov['warmup_sre_actions']} sre-actions; not in the rates above")
    return "\n".join(lines)
