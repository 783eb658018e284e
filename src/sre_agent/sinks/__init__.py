"""I/O edges: the only code that talks to the outside world.

Sinks follow ``setup`` / ``add`` / ``flush`` (and ``close``); clients are
created by the lifecycle owner and injected.
"""

from __future__ import annotations

__all__: list[str] = []
