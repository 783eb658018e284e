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



def test_a_target_going_down_is_strong_availability_evidence() -> None:
    # issue 14 (eval, redis_outage_cascade): redis went down, its up_ratio fell 1 -> 0, and
    # the RCA scored it z = 1 (the move itself was taken for the series' resolution step, and
    # up_ratio was of unknown kind): it ranked below every caller it broke
    import numpy as np

    from sre_agent.processors.rca_evidence import series_evidence
    from sre_agent.processors.rca_features import bad_direction, metric_category

    for name in ("up", "redis_up", "up_ratio"):
        assert metric_category(name) == "availability" and bad_direction(name) == "down"
    t = np.arange(0.0, 4200.0, 60.0)
    v = np.where(t < 3600.0, 1.0, 0.0)
    ev = series_evidence("redis", "up_ratio", t, v, start=3600.0)
    assert ev.z >= 10 and ev.direction == -1
    # a count moving by one step from a constant reference is still one step
    c = np.where(t < 3600.0, 40.0, 39.0)
    assert series_evidence("api", "http_requests_per_second", t, c, start=3600.0).z <= 1.0
