"""Local stand-ins speaking real wire protocols (Slack, Anthropic, Loki).

Kubernetes and AWS use maintained stand-ins instead (kmock, moto's server mode).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sre_agent.devstack import free_port

__all__ = ["serve"]


async def serve(app: web.Application, host: str, port: int | None,
                **runner_kw: Any) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host``:``port`` (a free port when None); return runner and port."""
    runner = web.AppRunner(app, **runner_kw)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, host, port).start()
    return runner, port
