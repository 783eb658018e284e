"""Schemathesis over every route of ``/openapi.json`` on a live worker (bounded).

For each operation a few generated requests (valid and invalid) are sent with an
admin token and the webhook token: no answer may be a 5xx, and status codes,
content types and JSON bodies must match what the document declares (issue 15,
findings 7 and 8). ``SRE_AGENT_FUZZ_EXAMPLES`` sets the examples per operation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.conftest import WorkerProcess, unique, worker_env

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("SRE_AGENT_FUZZ_EXAMPLES", "8"))
ADMIN = "fuzz-admin-token"
WEBHOOK = "fuzz-webhook-token"


@pytest.fixture(scope="module")
def fuzz_worker(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    wdir = Path(tmp_path_factory.mktemp("fuzz"))
    env = worker_env(kafka_broker.url, unique("fz") + ".", wdir)
    env.update({"SRE_AGENT_API__TOKENS": f'{{"{ADMIN}": "admin:fuzz"}}',
                "SRE_AGENT_API__WEBHOOK_TOKEN": WEBHOOK,
                "SRE_AGENT_SLACK__SIGNING_SECRET": "fuzz-signing-secret"})
    w = WorkerProcess(env, wdir).start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_worker: WorkerProcess) -> Any:
    return schemathesis.openapi.from_url(fuzz_worker.url + "/openapi.json")


def _runner(op: Any, headers: dict[str, str]) -> Any:
    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[
            checks.not_a_server_error, checks.status_code_conformance,
            checks.content_type_conformance, checks.response_schema_conformance])

    return run


def test_every_route_matches_its_document(api_schema: Any, fuzz_worker: WorkerProcess) -> None:
    # one Hypothesis run per operation (schemathesis' pytest plugin does not load under
    # this pytest); every failure is collected, then all are reported together
    failures: dict[str, str] = {}
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    for op in operations:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        if op.path.startswith("/webhooks/"):
            headers = {"X-Webhook-Token": WEBHOOK}

        try:
            _runner(op, headers)()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported below
            failures[op.label] = str(exc)[:1500]
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
