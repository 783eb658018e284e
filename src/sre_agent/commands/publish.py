"""``sre-agent publish deploy ...``: a validated deploy event to ``deploy-events``.

Meant for an ArgoCD ``PostSync`` hook Job (see ``docs/knowledge-base.md`` for a
manifest), CI pipelines or a human::

    sre-agent publish deploy --app payments --revision "$REV" --image payments:1.4.2 \\
        --author "$AUTHOR" [--service payments] [--namespace prod] [--change-type config]
    sre-agent publish deploy --json payload.json   # an ArgoCD notification payload ('-': stdin)

The event is validated exactly like the ArgoCD webhook's, produced with the
service as key, and printed as JSON; invalid input exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..cli import IOFailure, SettingsFactory, Unavailable, UsageError, command
from ..config import Settings
from ..processors.ingest import PayloadError, parse_argocd
from ..schemas import DeployEvent, encode

__all__ = ["deploy_from_args", "produce"]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["deploy"], help="deploy: a deploy/config change event")
    p.add_argument("--app", help="ArgoCD application name")
    p.add_argument("--service", help="service name (default: the app name)")
    p.add_argument("--namespace", default=None, help="Kubernetes namespace of the service")
    p.add_argument("--revision", default=None, help="git revision / chart version deployed")
    p.add_argument("--previous-revision", default=None,
                   help="the revision it replaced (what a rollback goes back to)")
    p.add_argument("--image", action="append", default=[], help="deployed image (repeatable)")
    p.add_argument("--author", default=None, help="who initiated the sync")
    p.add_argument("--change-type", default="deploy",
                   choices=["deploy", "config", "rollback", "scale"],
                   help="what kind of change (default deploy)")
    p.add_argument("--sync-status", default="Synced", help="ArgoCD sync status (default Synced)")
    p.add_argument("--health-status", default=None,
                   help="ArgoCD health status (Healthy, Degraded, Progressing ...)")
    p.add_argument("--message", default="", help="free text: commit message, ticket ...")
    p.add_argument("--time", default=None, help="ISO-8601 or Unix seconds (default: now)")
    p.add_argument("--json", dest="json_file", default=None,
                   help="read an ArgoCD notification payload from FILE ('-' for stdin)")
    p.add_argument("--dry-run", action="store_true", help="validate and print, do not produce")


def deploy_from_args(args: argparse.Namespace) -> DeployEvent:
    """Build the event from flags or a JSON payload; PayloadError when invalid."""
    if args.json_file:
        raw = sys.stdin.read() if args.json_file == "-" else Path(args.json_file).read_text(
            encoding="utf-8")
        try:
            payload: Any = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"--json: invalid JSON: {exc}") from None
        return parse_argocd(payload)
    if not args.app:
        raise PayloadError("--app is required (or --json FILE)")
    time: Any = args.time
    if time is not None:
        try:
            time = float(time)
        except ValueError:
            pass
    return parse_argocd({
        "app": args.app, "service": args.service, "namespace": args.namespace,
        "revision": args.revision, "previous_revision": args.previous_revision,
        "images": args.image, "author": args.author, "change_type": args.change_type,
        "sync_status": args.sync_status, "health_status": args.health_status,
        "message": args.message, "time": time})


async def produce(settings: Settings, event: DeployEvent, timeout: float = 30.0) -> None:
    """Produce ``event`` to the prefixed ``deploy-events`` topic and wait for the ack."""
    from aiokafka import AIOKafkaProducer

    from ..sinks.kafka import client_kwargs

    producer = AIOKafkaProducer(**client_kwargs(settings.kafka),
                                request_timeout_ms=int(timeout * 1000), acks="all")
    try:
        await asyncio.wait_for(producer.start(), timeout)
    except BaseException:
        await producer.stop()  # a failed start leaves its client open
        raise
    try:
        await producer.send_and_wait(settings.topic(event.TOPIC), value=encode(event),
                                     key=event.key().encode())
    finally:
        await producer.stop()


@command("publish", "publish an event (publish deploy ... for ArgoCD PostSync hooks)", _args)
def _publish(args: argparse.Namespace, settings: SettingsFactory) -> int:
    try:
        event = deploy_from_args(args)
    except PayloadError as exc:
        raise UsageError(f"publish deploy: {exc}") from None
    except OSError as exc:
        raise IOFailure(f"publish deploy: {exc}") from None
    if not args.dry_run:
        s = settings()
        try:
            asyncio.run(produce(s, event))
        except (Exception, TimeoutError) as exc:  # noqa: BLE001 - aiokafka raises many kinds
            raise Unavailable("Kafka", s.kafka.broker, exc) from None
    print(event.model_dump_json())
    return 0
