"""Concurrent ``ast.parse`` in the test process never raises the 3.11 depth mismatch.

Without :mod:`tests.ast_guard` this fails in about a second on CPython 3.11.7: two
threads at different stack depths parse while cyclic garbage with finalizers makes
the garbage collector run Python code (and hand the GIL over) mid-construction.
"""

from __future__ import annotations

import ast
import sys
import threading
import time
from collections.abc import Callable

from tests import ast_guard

SOURCE = "\n".join(f"def f{i}(a, b):\n    return [x + {i} for x in range(a) if x % b]"
                   for i in range(300))


class _Finalised:
    def __del__(self) -> None:
        sum(range(50))


def _at_depth(n: int, f: Callable[[], None]) -> None:
    if n:
        _at_depth(n - 1, f)
    else:
        f()


def test_parses_in_two_threads_take_turns() -> None:
    assert ast.parse is not ast_guard.original_parse()  # conftest installed the guard
    errors: list[str] = []
    stop = threading.Event()

    def parse() -> None:
        while not stop.is_set():
            try:
                ast.parse(SOURCE)
            except SystemError as e:
                errors.append(str(e))

    def churn() -> None:
        while not stop.is_set():
            a, b = _Finalised(), _Finalised()
            a.other, b.other = b, a  # type: ignore[attr-defined]
            del a, b

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=_at_depth, args=(d, parse)) for d in (5, 40)]
    threads.append(threading.Thread(target=churn))
    try:
        for t in threads:
            t.start()
        time.sleep(3.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert errors == []
