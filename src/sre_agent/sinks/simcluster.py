"""The action back-end of a simulated cluster (``sre-agent eval``), over HTTP.

Same interface as :class:`~sre_agent.sinks.kubernetes.KubeActions` (``setup``,
``observe``, ``snapshot``, ``act``, ``restore``, ``close``); each call goes to the
simulator's cluster API (:class:`sre_agent.sim.cluster.ClusterServer`, served by the
eval's replay) at ``kubernetes.simulator_url``. Enabled only by that setting: it
then stands in for Kubernetes and AWS alike (the simulated platform has both its
workloads and its nodes). A refused call raises :class:`SimClusterError` with the
simulator's reason, as the API server's refusal raises ``KubeError``.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..schemas import ActionStep

__all__ = ["SimClusterActions", "SimClusterError"]


class SimClusterError(RuntimeError):
    """A call the simulated cluster refused, or could not be reached for."""


class SimClusterActions:
    """Owns one aiohttp session; ``setup`` is idempotent (it serves two back-end names)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http: Any = None

    async def setup(self) -> None:
        if self._http is None:
            import aiohttp

            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _call(self, op: str, step: ActionStep, **extra: Any) -> Any:
        await self.setup()
        body = {"step": step.model_dump(mode="json"), **extra}
        try:
            async with self._http.post(f"{self.url}/v1/{op}", data=orjson.dumps(body),
                                       headers={"content-type": "application/json"}) as r:
                raw = await r.read()
                status = r.status
        except Exception as exc:  # noqa: BLE001 - unreachable: the executor reports it
            raise SimClusterError(f"{op} {step.target.ref()}: simulated cluster unreachable: "
                                  f"{type(exc).__name__}: {exc}") from None
        try:
            payload = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            payload = {"error": raw[:200].decode(errors="replace")}
        if status != 200 or not isinstance(payload, dict) or "result" not in payload:
            why = payload.get("error") if isinstance(payload, dict) else payload
            raise SimClusterError(str(why or f"HTTP {status}")[:500])
        return payload["result"]

    async def observe(self, step: ActionStep) -> dict[str, Any]:
        return dict(await self._call("observe", step))

    async def snapshot(self, step: ActionStep) -> dict[str, Any]:
        return dict(await self._call("snapshot", step))

    async def act(self, step: ActionStep) -> str:
        return str(await self._call("act", step))

    async def restore(self, step: ActionStep, snapshot: dict[str, Any]) -> str:
        return str(await self._call("restore", step, snapshot=snapshot))
