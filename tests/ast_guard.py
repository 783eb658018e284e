"""Serialise ``ast.parse`` in the test process (a CPython 3.11 race).

CPython 3.11 keeps the counter that checks the depth of AST-object construction in
one per-interpreter state. When a thread's ``ast.parse`` lets go of the GIL in the
middle of that construction (a garbage collection runs a Python finalizer), and a
second thread parses meanwhile, the first ends with the second's depth and raises
``SystemError: AST constructor recursion depth mismatch`` (cpython#106905 and its
follow-ups; 3.12 counts per call). pytest parses every module it rewrites with
``ast.parse``, including plugin packages imported lazily (schemathesis,
hypothesis, anyio), so a lazy import in a fixture raced a thread left by an earlier
test and failed CI's setup of the OpenAPI fuzz test. One lock around ``ast.parse``
makes the parses in this process take turns; the product itself never parses.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_LOCK = threading.RLock()
_original_parse = ast.parse


def _parse_in_turn(*args: Any, **kwargs: Any) -> ast.AST:
    with _LOCK:
        return _original_parse(*args, **kwargs)


def install() -> None:
    """Make ``ast.parse`` take the process-wide lock (idempotent)."""
    ast.parse = _parse_in_turn  # type: ignore[assignment]


def original_parse() -> Any:
    """CPython's own ``ast.parse``, for the test that shows the race."""
    return _original_parse
