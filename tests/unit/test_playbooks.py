"""Playbooks: defaults cover the RCA cause types; bad files fail naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sre_agent.processors.playbooks import ACTIONS, PlaybookError, PlaybookLibrary

CAUSES = ["bad_deploy", "memory_leak", "traffic_surge", "db_pool_exhaustion", "crash_loop",
          "disk_saturation", "dependency_failure", "config_change", "node_pressure",
          "slow_dependency", "resource_saturation"]


@pytest.fixture(scope="module")
def lib() -> PlaybookLibrary:
    return PlaybookLibrary.load()


@pytest.mark.parametrize("cause", CAUSES)
def test_every_cause_type_has_a_playbook(lib: PlaybookLibrary, cause: str) -> None:
    found = lib.plan_for(cause, "checkout", 0.9, {"namespace": "shop"})
    assert found is not None, cause
    pb, steps = found
    assert steps and all(s.action in ACTIONS for s in steps)
    assert all(0 <= s.risk <= 1 for s in steps)


def test_expected_actions(lib: PlaybookLibrary) -> None:
    def first(cause: str, **ctx: str) -> tuple[str, str]:
        found = lib.plan_for(cause, "checkout", 0.9, {"namespace": "shop", **ctx})
        assert found
        return found[1][0].action, found[1][0].target.ref()

    assert first("bad_deploy") == ("rollout_undo", "deployment/shop/checkout")
    assert first("traffic_surge") == ("scale", "deployment/shop/checkout")
    # memory leak: a named pod is restarted alone, else the whole deployment
    assert first("memory_leak", pod="checkout-7f9c") == ("restart_pod", "pod/shop/checkout-7f9c")
    assert first("memory_leak") == ("rollout_restart", "deployment/shop/checkout")
    # a service slow at its usual load is restarted (rate limiting only protects callers)
    assert first("slow_dependency") == ("rollout_restart", "deployment/shop/checkout")
    assert first("db_primary_failure", db_cluster="orders-db") == ("rds_failover", "rds/aws/orders-db")


def test_step_details_come_from_the_playbook(lib: PlaybookLibrary) -> None:
    _, steps = lib.plan_for("bad_deploy", "api", 0.9, {"namespace": "default"}) or (None, [])
    s = steps[0]
    assert s.verify == {"check": "anomaly_cleared", "metric": "http_error_ratio", "within": 600.0}
    assert s.rollback == "restore_snapshot" and s.prechecks == [{"previous_revision": True}]
    assert s.target.service == "api"


def test_min_confidence_and_unknown_cause(lib: PlaybookLibrary) -> None:
    assert lib.plan_for("bad_deploy", "api", 0.3, {"namespace": "d"}) is None  # below 0.5
    assert lib.plan_for("cosmic_rays", "api", 0.99, {"namespace": "d"}) is None


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """
name: custom-scale
priority: 1
triggers:
  - on_root_cause: {cause_types: [traffic_surge], services: ["web-*"]}
actions:
  - action: scale
    target: {kind: deployment, name: "{service}"}
    params: {replicas: 7}
"""


def test_extra_dir_adds_and_overrides(tmp_path: Path) -> None:
    write(tmp_path, "mine.yaml", GOOD)
    lib = PlaybookLibrary.load(tmp_path)
    pb, steps = lib.plan_for("traffic_surge", "web-1", 0.9, {"namespace": "n"}) or (None, [])
    assert pb is not None and pb.name == "custom-scale" and steps[0].params == {"replicas": 7}
    assert steps[0].risk == ACTIONS["scale"].risk  # default risk of the verb
    # not matching the service glob: the packaged playbook applies
    pb2, _ = lib.plan_for("traffic_surge", "api", 0.9, {"namespace": "n"}) or (None, [])
    assert pb2 is not None and pb2.name == "traffic-surge-scale"
    # same name as a default: replaces it
    write(tmp_path, "override.yaml", GOOD.replace("custom-scale", "bad-deploy-rollback")
          .replace("traffic_surge", "bad_deploy").replace('"web-*"', '"*"'))
    lib = PlaybookLibrary.load(tmp_path)
    pb3, steps3 = lib.plan_for("bad_deploy", "api", 0.9, {"namespace": "n"}) or (None, [])
    assert pb3 is not None and steps3[0].action == "scale"


@pytest.mark.parametrize("text, where", [
    (GOOD.replace("action: scale", "action: explode"), "actions[0]: unknown action 'explode'"),
    (GOOD.replace("kind: deployment", "kind: pod"), "actions[0]: action scale acts on"),
    (GOOD.replace("{replicas: 7}", "{replicas: -1}"), "actions[0].params: replicas: Input should be greater than"),
    (GOOD.replace("{replicas: 7}", "{replicas: 2, factor: 2}"), "actions[0].params: give exactly one of replicas"),
    (GOOD.replace("{replicas: 7}", "{replicas: 7, size_to: demand}"), "actions[0].params: size_to needs factor"),
    (GOOD.replace("{replicas: 7}", "{factor: 1.5, size_to: demand, max_factor: 50}"),
     "actions[0].params: max_factor: Input should be less than or equal to 10"),
    (GOOD.replace("params: {replicas: 7}", "params: {replicas: 7}\n    risk: 1.5"),
     "actions[0].risk: Input should be less than or equal to 1"),
    (GOOD.replace("priority: 1", "priorty: 1"), "priorty: Extra inputs are not permitted"),
    (GOOD.replace("on_root_cause", "on_alert"), "triggers[0].on_root_cause: Field required"),
    (GOOD.replace("name: custom-scale", "name: Custom Scale"), "name: String should match"),
    ("name: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "<root>: a playbook must be a mapping"),
])
def test_bad_playbook_names_file_and_field(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, "broken.yaml", text)
    with pytest.raises(PlaybookError) as err:
        PlaybookLibrary.load(tmp_path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    assert where in msg, msg


def test_duplicate_names_and_missing_dir(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(PlaybookError, match="duplicate playbook 'custom-scale'"):
        PlaybookLibrary.load(tmp_path)
    with pytest.raises(PlaybookError, match="playbooks directory not found"):
        PlaybookLibrary.load(tmp_path / "nope")


def test_list_form_names_the_item(tmp_path: Path) -> None:
    lines = GOOD.strip().splitlines()
    body = "playbooks:\n  - " + lines[0] + "\n" + "\n".join("    " + ln for ln in lines[1:])
    write(tmp_path, "ok.yaml", body)
    assert len(PlaybookLibrary.load(tmp_path, defaults=False)) == 1
    write(tmp_path, "ok.yaml", body.replace("action: scale", "action: nope"))
    with pytest.raises(PlaybookError, match=r"ok.yaml: playbooks\[0\].actions\[0\]"):
        PlaybookLibrary.load(tmp_path, defaults=False)


def test_for_each_peers_renders_the_step_per_peer_up_to_the_cap() -> None:
    from sre_agent.processors.playbooks import MAX_STEPS, Playbook
    pb = Playbook.parse({"name": "x", "triggers": [{"on_root_cause": {"cause_types": ["c"]}}],
                         "actions": [{"action": "rollout_restart", "for_each": "peers",
                                      "target": {"kind": "deployment", "name": "{service}"}}]},
                        "x.yaml")
    peers = [{"service": f"s{i}", "namespace": "ns"} for i in range(20)]
    steps = pb.render({"service": "a", "namespace": "ns"}, [{"service": "a", "namespace": "ns"},
                                                            *peers])
    refs = [s.target.ref() for s in steps]
    assert refs[:2] == ["deployment/ns/a", "deployment/ns/s0"] and len(refs) == MAX_STEPS
    assert len(set(refs)) == len(refs)  # a peer already in the plan is not added twice
    with pytest.raises(PlaybookError, match="for_each"):
        Playbook.parse({"name": "x", "triggers": [{"on_root_cause": {"cause_types": ["c"]}}],
                        "actions": [{"action": "rollout_restart", "for_each": "all",
                                     "target": {"kind": "deployment", "name": "{service}"}}]},
                       "x.yaml")
