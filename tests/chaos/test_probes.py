"""Readiness follows the broker; liveness does not (issue 17, item 2).

On a broker of its own: a ready worker whose broker goes away answers ``/readyz``
503 ("broker: ...") while ``/livez`` stays 200 (a restart would not bring the broker
back and would throw away the worker's tables); once the broker is back the worker
is ready again, without a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api_support import call
from tests.conftest import unique

from .support import own_broker, workers

pytestmark = pytest.mark.integration

__all__ = ["own_broker", "workers"]  # fixtures


async def test_readiness_follows_the_broker_and_liveness_does_not(
        own_broker: Any, workers: Any, wait_for: Any) -> None:
    w = workers(own_broker, "w1", unique("prb") + ".").start()
    base = w.url
    st, body, _ = call(base, "/readyz")
    assert st == 200 and body["broker"]["connected"] is True, body

    await asyncio.to_thread(own_broker.stop)
    try:
        def unready() -> Any:
            st, body, _ = call(base, "/readyz")
            return body if st == 503 and not body["broker"]["connected"] else None

        body = await wait_for(unready, timeout=90)
        assert any(r.startswith("broker: ") for r in body["reasons"]), body
        st, live, _ = call(base, "/livez")
        assert (st, live) == (200, {"live": True, "reasons": []}), live
        assert w.proc is not None and w.proc.poll() is None, w.tail()
    finally:
        await asyncio.to_thread(own_broker.start)

    def ready() -> Any:
        st, body, _ = call(base, "/readyz")
        return body if st == 200 else None

    await wait_for(ready, timeout=120)
    assert w.starts == 1 and w.proc is not None and w.proc.poll() is None, w.tail()
    assert w.stop() == 0, w.tail()
