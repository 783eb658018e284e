"""Log text of a connection pool that has run dry is pool exhaustion, in its usual wordings."""

from __future__ import annotations

import pytest

from sre_agent.processors.rca_features import text_category


@pytest.mark.parametrize("line", [
    # issue 14 (eval, db_pool_exhaustion): the first RCA, on this log line alone, said unknown
    'could not acquire connection from pool "risk-db" within 5000ms (active=50/50, idle=0)',
    "org.hibernate.exception.JDBCConnectionException: Unable to acquire JDBC Connection",
    "failed to acquire connection: context deadline exceeded",
    "HikariPool-1 - Connection is not available, request timed out after 30000ms",
])
def test_pool_exhaustion_wordings(line: str) -> None:
    assert text_category(line) == "db_pool"


def test_other_connection_trouble_is_not_the_pool() -> None:
    assert text_category("dial tcp 10.0.3.12:6379: connect: connection refused") == "dependency"

