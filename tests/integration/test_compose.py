"""docker-compose.yml and the Dockerfile, checked without a Docker engine (issue 17, item 7).

No Docker engine runs on this machine or in CI, so nothing here starts a container.
The Compose file is loaded by the Compose Specification's own loader (compose-go, the
library ``docker compose`` is built on; scripts/compose-check, built with Go from the
module proxy and cached): its JSON schema, interpolation from an env file like
compose's ``.env``, normalization and consistency checks. The assertions then read the
resolved project. The Dockerfile is checked as text: layer order, health check.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
REQUIRED = ("POSTGRES_PASSWORD", "QDRANT_API_KEY", "SRE_AGENT_API__TOKENS",
            "SRE_AGENT_API__WEBHOOK_TOKEN")


@pytest.fixture(scope="module")
def compose_check() -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install-compose-check.sh")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"install-compose-check.sh failed:\n{proc.stderr[-3000:]}"
    return proc.stdout.strip().splitlines()[-1]


def load(compose_check: str, tmp_path: Path, env_text: str | None) -> subprocess.CompletedProcess[str]:
    """Resolve the compose file as ``docker compose config`` would, in a clean folder
    (a developer's own .env in the repository must not leak in)."""
    work = tmp_path / "project"
    work.mkdir(exist_ok=True)
    shutil.copy(COMPOSE, work / "docker-compose.yml")
    args = [compose_check, str(work / "docker-compose.yml")]
    if env_text is not None:
        (work / "test.env").write_text(env_text)
        args.append(str(work / "test.env"))
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=work)


@pytest.fixture
def project(compose_check: str, tmp_path: Path) -> dict[str, Any]:
    proc = load(compose_check, tmp_path, ENV_EXAMPLE.read_text())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_compose_refuses_to_start_without_its_secrets(compose_check: str, tmp_path: Path) -> None:
    proc = load(compose_check, tmp_path, "")
    assert proc.returncode != 0
    for var in REQUIRED:
        assert f"required variable {var} is missing a value: set {var} in .env" in proc.stderr, \
            proc.stderr
    assert set(env_example()) >= set(REQUIRED)


def test_kafka_data_is_persisted_where_the_image_writes(project: dict[str, Any]) -> None:
    kafka = project["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = {v["target"]: v for v in kafka["volumes"]}
    assert log_dirs in mounts and mounts[log_dirs]["type"] == "volume", (log_dirs, mounts)
    assert mounts[log_dirs]["source"] in project["volumes"]
    # a fixed, valid KRaft cluster id: the formatted data directory is reused on recreate
    cid = kafka["environment"]["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16 and not cid.startswith("-"), cid
    for name in ("postgres", "qdrant", "agent"):
        assert project["services"][name]["volumes"], name


def test_tokens_and_keys_are_wired(project: dict[str, Any]) -> None:
    env = env_example()
    agent = project["services"]["agent"]["environment"]
    assert agent["SRE_AGENT_API__TOKENS"] == env["SRE_AGENT_API__TOKENS"]
    assert json.loads(agent["SRE_AGENT_API__TOKENS"])  # a JSON object, as the agent reads it
    assert agent["SRE_AGENT_API__WEBHOOK_TOKEN"] == env["SRE_AGENT_API__WEBHOOK_TOKEN"]
    assert agent["SRE_AGENT_QDRANT__API_KEY"] == env["QDRANT_API_KEY"]
    qdrant = project["services"]["qdrant"]["environment"]
    assert qdrant["QDRANT__SERVICE__API_KEY"] == env["QDRANT_API_KEY"]
    pg = project["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert pg == env["POSTGRES_PASSWORD"] and f":{pg}@postgres:" in agent["SRE_AGENT_POSTGRES__DSN"]


def test_nothing_is_published_beyond_this_host_and_qdrant_not_at_all(
        project: dict[str, Any]) -> None:
    published = {name: s.get("ports") or [] for name, s in project["services"].items()}
    assert published["qdrant"] == [] and published["postgres"] == []
    assert {p["target"] for p in published["agent"]} == {6066}
    assert {p["target"] for p in published["kafka"]} == {29092}
    for name, ports in published.items():
        for p in ports:
            assert p.get("host_ip") == "127.0.0.1", (name, p)


def test_dockerfile_caches_the_dependency_layer_before_the_source() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    build = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("FROM") and "runtime" in ln)]
    copies = [(i, ln) for i, ln in enumerate(build) if ln.startswith("COPY")]
    src = next(i for i, ln in copies if re.search(r"\bsrc\b", ln))
    deps = next(i for i, ln in enumerate(build) if ln.startswith("RUN") and "requirements.txt" in ln)
    installs = [i for i, ln in enumerate(build) if "pip install" in ln]
    # everything copied before the dependency install is the dependency list, not the source
    assert all(set(ln.split()[1:-1]) <= {"pyproject.toml", "constraints.txt"}
               for i, ln in copies if i < deps), copies
    assert deps < src, (deps, src)
    assert "-c constraints.txt" in " ".join(build[deps:deps + 2])
    assert any(i > src and "--no-deps" in build[i] for i in installs), installs
    text = " ".join(lines)
    assert "/livez" in text and "/status'" not in text  # health check on the liveness probe
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignore and ".git" in ignore  # no secrets, no history in the context
