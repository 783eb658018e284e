"""The demo's scenarios end to end, as ``sre-agent demo`` runs them (issues 14 and 16).

Real broker, real PostgreSQL, one real worker, the demo's defaults (12 h of history,
then a bad deploy of the API gateway and a bad deploy of the protected wallet
service). What the README promises the demo shows:

* the gateway fault: its own incident, RCA right, a rollback approved by the
  (simulated) on-call, applied, the platform healed, and the incident resolved once its
  signals recovered;
* the wallet fault: its own incident (not folded into the healed gateway incident),
  RCA right, its plan BLOCKED, nothing executed on the wallet, the on-call e-mailed;
* an honest account: the dry-run and auto-remediation settings stated, every incident
  listed (the warm-up history's too) and counted in the scorecard, a console link that
  signs in with a token, no negative durations or cut-off text.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from sre_agent.commands.demo import DEFAULT, run_demo
from sre_agent.config import ActionSettings
from sre_agent.sim.scorecard import related_incidents, when
from tests.actions_support import fresh_database

pytestmark = pytest.mark.integration


#: sample time of the first step, fixed: the test must not depend on the hour it runs (the
#: gateway fault lands at 10:00, the history spans a midnight; "now" put the fault within
#: minutes of market-data's midnight disk compaction at some hours of the day)
EPOCH = "2026-12-05T21:30:00+00:00"


def _revisions(record: Any, iid: str) -> list[Any]:
    return [o for o in record.observations if o.topic == "incidents"
            and o.payload["incident_id"] == iid]


def test_demo_scenarios_end_to_end(kafka_broker: Any, pg_dsn: str, tmp_path: Path) -> None:
    dsn = asyncio.run(fresh_database(pg_dsn))
    protected = list(ActionSettings().protected)
    printed: list[str] = []
    run = run_demo(DEFAULT, workdir=tmp_path, protected=protected,
                   broker_url=kafka_broker.url, pg_dsn=dsn, say=printed.append,
                   out=printed.append, epoch=EPOCH)
    rec, card = run.record, run.card
    gw_truth, wallet_truth = rec.truths
    gw, wallet = card["scenarios"]
    assert (gw["name"], wallet["name"]) == tuple(DEFAULT)
    assert rec.info["dlq"] == {}

    # ---- the gateway: detected, diagnosed, rolled back with one approval, healed, resolved
    assert gw["detected"] and gw["rca_top1"], gw
    assert gw["action_chosen"] == "rollout_undo" and gw["action_target"] == "api-gateway"
    assert gw["policy"] == "ONE_APPROVAL" and gw["remediated"] is True, gw
    gw_ids = related_incidents(rec, gw_truth)
    gw_inc = gw_ids[0]
    votes = [o.payload for o in rec.observations if o.topic == "approvals"]
    plans = {o.payload["plan_id"] for o in rec.observations if o.topic == "action-plans"
             and o.payload["incident_id"] == gw_inc}
    assert any(v["plan_id"] in plans and v["decision"] == "approve" for v in votes)
    healed = [o for o in rec.outcomes if o["incident_id"] == gw_inc
              and o["action"] == "rollout_undo"]
    assert healed and healed[0]["effect"] == "resolved", rec.outcomes
    last = _revisions(rec, gw_inc)[-1]
    assert last.payload["status"] == "resolved", "the healed incident was never closed"
    assert when(rec, last) < wallet_truth.start, "resolved only after the next fault began"

    # ---- the wallet: its own incident, diagnosed, BLOCKED, nothing executed, human told
    wallet_ids = related_incidents(rec, wallet_truth)
    assert wallet_ids and gw_inc not in wallet_ids, "wallet fault folded into the gateway's"
    # its own: opened after the gateway's was closed, whichever of its first signals came
    # first (the wallet rollout's, the gateway's error logs or the wallet's error-rate anomaly
    # of the same minute: the order depends on load), not an older incident it joined
    for iid in wallet_ids:
        opened = _revisions(rec, iid)[0]
        assert opened.payload["status"] == "open", opened.payload
        assert when(rec, opened, "opened_at") > when(rec, last), "not its own incident"
    assert any(r.payload["root_service"] == "wallet-service"
               for r in _revisions(rec, wallet_ids[0])), "the wallet never named as its root"
    assert wallet["detected"] and wallet["rca_top1"], wallet
    assert wallet["policy"] == "BLOCKED" and wallet["protected_auto_executions"] == 0
    wallet_plans = [o.payload for o in rec.observations if o.topic == "action-plans"
                    and o.payload["incident_id"] in wallet_ids]
    assert wallet_plans and all(p["policy"] == "BLOCKED" for p in wallet_plans)
    assert not any(s["target"]["name"] == "api-gateway" for p in wallet_plans
                   for s in p["steps"]), "a second gateway rollback for the wallet fault"
    assert not [o for o in rec.outcomes if "wallet-service" in o["targets"]
                and o["effect"] != "refused"], rec.outcomes
    assert any(m.incident_id in wallet_ids and "oncall@exchange.example" in m.to
               for m in run.mails), run.mails
    assert card["overall"]["protected_auto_executions"] == 0

    # ---- an honest account
    text = "\n".join(printed)
    assert "actions.dry_run = true" in text and "actions.auto_remediation = true" in text
    assert re.search(r"http://127\.0\.0\.1:\d+/console#token=\S{20,}", text)
    assert run.console_url in text
    every = {o.payload["incident_id"] for o in rec.observations if o.topic == "incidents"}
    for iid in every:  # every incident listed, the warm-up history's too
        assert iid in text
    warm = {i for i in every if when(rec, _revisions(rec, i)[0], "opened_at") < rec.scored_from}
    assert card["overall"]["warmup_incidents"] == len(warm)
    assert f"{len(warm)} incidents" in text and "warm-up history" in text
    told = run.text  # what the demo tells (progress lines aside)
    negative = [ln for ln in told if re.search(r"-\d+(\.\d+)? ?s\b|-\d+ ?min\b", ln)]
    assert not negative, negative
    cut = [ln for ln in told if "…" in ln or re.search(r"\w\.\.\.$|\w\.\.\.\s", ln)]
    assert not cut, cut
