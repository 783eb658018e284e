"""Logging set-up of the commands (``sre_agent.logs``)."""

from __future__ import annotations


def test_records_go_to_the_stderr_of_the_moment_not_a_closed_one() -> None:
    """A command run in-process (as tests do) set up logging on a stderr that was closed
    afterwards; every later record then printed "Logging error ... I/O operation on
    closed file" instead of being written."""
    import io
    import logging
    import sys

    from sre_agent.logs import setup_logging

    root = logging.getLogger()
    handlers, level, before = root.handlers[:], root.level, sys.stderr
    first, later = io.StringIO(), io.StringIO()
    try:
        sys.stderr = first
        setup_logging()
        first.close()
        sys.stderr = later
        logging.getLogger("sre_agent.test").warning("after the first stream closed")
    finally:
        sys.stderr = before
        root.handlers[:] = handlers
        root.setLevel(level)
    out = later.getvalue()
    assert "Logging error" not in out
    assert '"msg":"after the first stream closed"' in out
