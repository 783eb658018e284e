"""What a signal means for RCA: symptom categories and the bad direction of metrics.

One vocabulary for the stream RCA and ``sre-agent rca offline``: a metric,
alert name, k8s reason or log template is mapped to a *category* (latency,
errors, availability, traffic, cpu, memory, disk, db_pool, crash, oom, node,
health, dependency, restarts, queue, unknown) and metrics to the direction
that is bad (``up``, ``down`` or ``both`` for names we do not recognise).

Examples
--------
>>> metric_category("latency_p90"), metric_category("http_requests_total")
('latency', 'traffic')
>>> bad_direction("availability"), bad_direction("error_rate"), bad_direction("frobs")
('down', 'up', 'both')
>>> text_category("HikariPool-1 - Connection is not available, request timed out")
'db_pool'
>>> k8s_category("OOMKilled"), k8s_category("FailedScheduling")
('oom', 'node')
"""

from __future__ import annotations

import re

__all__ = [
    "SYMPTOM_WEIGHT",
    "alert_category",
    "bad_direction",
    "is_bad",
    "k8s_category",
    "metric_category",
    "text_category",
]

# checked in order: the first match wins
_METRIC_RULES: list[tuple[str, str]] = [
    ("db_pool", r"(pool|conn(ection)?s?_(active|used|wait|pending|max|in_use)|db_conn|"
                r"too_many_conn|hikari|pgbouncer|connections?$)"),
    ("availability", r"(availab|uptime|success(_rate|_ratio)?$|apdex|health|up$|up_ratio$|"
                     r"slo_ok)"),
    ("errors", r"(err|fail|5xx|4xx|exception|fault|panic|reject|timeout)"),
    ("memory", r"(^|_)(gc|jvm_gc|go_gc)(_|$)|gc_pause|garbage"),
    ("latency", r"(latenc|duration|response_time|resp_time|rtt|p50|p90|p95|p99|_ms$|"
                r"_seconds$|delay|elapsed|time$)"),
    ("restarts", r"(restart|crash|oom)"),
    ("memory", r"(mem|heap|rss|gc_|working_set|swap)"),
    ("cpu", r"(cpu|load|throttl|steal)"),
    ("disk", r"(disk|fs_|filesystem|inode|volume|iops|io_wait|iowait|storage)"),
    ("queue", r"(queue|lag|backlog|pending|inflight|in_flight)"),
    ("traffic", r"(request|req|qps|rps|tps|throughput|traffic|calls|count|rate$|hits|ops)"),
]
_METRIC_RE = [(cat, re.compile(rx, re.I)) for cat, rx in _METRIC_RULES]

_DOWN_BAD = {"availability"}
_BOTH = {"traffic", "unknown"}

#: how strongly a category counts as a user-facing symptom (graph ranking weight)
SYMPTOM_WEIGHT = {
    "latency": 1.0, "errors": 1.0, "availability": 1.0, "crash": 1.0, "oom": 1.0,
    "db_pool": 0.95, "memory": 0.9, "cpu": 0.9, "disk": 0.9, "restarts": 0.95, "node": 0.9,
    "health": 0.9, "dependency": 0.9, "queue": 0.85, "traffic": 0.6, "unknown": 0.8,
    "image": 0.9,
}


def metric_category(name: str) -> str:
    """Category of a metric (or alert) name; ``unknown`` when nothing matches."""
    for cat, rx in _METRIC_RE:
        if rx.search(name):
            return cat
    return "unknown"


def bad_direction(name: str) -> str:
    """``up``, ``down`` or ``both``: which way a change of this metric is bad."""
    cat = metric_category(name)
    if cat in _DOWN_BAD:
        return "down"
    if cat in _BOTH:
        return "both"
    return "up"


def is_bad(name: str, deviation: float) -> bool:
    """True when a signed deviation goes the bad way for this metric.

    >>> is_bad("latency", 4.0), is_bad("latency", -4.0), is_bad("availability", -2.0)
    (True, False, True)
    """
    want = bad_direction(name)
    return want == "both" or (want == "up") == (deviation > 0)


_TEXT_RULES: list[tuple[str, str]] = [
    ("oom", r"(out ?of ?memory|outofmemory|oom|heap space|cannot allocate memory|memory limit)"),
    ("db_pool", r"(connection pool|pool exhausted|too many (connections|clients)|hikari|"
                r"connection is not available|remaining connection slots|max_connections|"
                r"timeout acquiring|could not obtain connection|"
                r"(could not|unable to|failed to|cannot|can't) (acquire|get|obtain) "
                r"(a )?(jdbc |database |db )?connection)"),
    ("disk", r"(no space left|disk full|read-only file system|disk quota)"),
    ("dependency", r"(connection refused|connection reset|unavailable|upstream|"
                   r"deadline exceeded|timed? ?out|no route to host|broken pipe|503|502|504)"),
    ("crash", r"(segfault|panic|fatal|crashloop|back-off restarting)"),
    ("config", r"(config|configuration|invalid (value|setting|parameter)|missing (key|env)|"
               r"unknown (flag|property)|feature flag)"),
    ("errors", r"(error|exception|fail|traceback)"),
]
_TEXT_RE = [(cat, re.compile(rx, re.I)) for cat, rx in _TEXT_RULES]


def text_category(text: str) -> str:
    """Category of a log template or alert description."""
    for cat, rx in _TEXT_RE:
        if rx.search(text):
            return cat
    return "unknown"


_K8S = {
    "CrashLoopBackOff": "crash", "OOMKilled": "oom", "FailedScheduling": "node",
    "Evicted": "node", "NodeNotReady": "node", "DiskPressure": "disk", "MemoryPressure": "node",
    "NodePressure": "node", "ProbeFailed": "health", "ImagePullBackOff": "image",
    "FailedMount": "node", "FailedCreatePodSandBox": "node",
}


def k8s_category(reason: str) -> str:
    return _K8S.get(reason, "crash" if "crash" in reason.lower() else "health")


def alert_category(name: str, description: str = "") -> str:
    """Alerts: by name first (``KubePodCrashLooping``, ``HighMemoryUsage``), then text.

    >>> alert_category("KubePodCrashLooping"), alert_category("PostgresTooManyConnections")
    ('crash', 'db_pool')
    """
    low = name.lower()
    if "crashloop" in low or "crashlooping" in low:
        return "crash"
    if "connection" in low and ("many" in low or "pool" in low or "exhaust" in low):
        return "db_pool"
    if re.search(r"(^|[^o])oom|outofmemory|oomkill", low):
        return "oom"
    if "disk" in low or "filesystem" in low:
        return "disk"
    if "node" in low and ("notready" in low or "pressure" in low):
        return "node"
    split = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name)
    cat = metric_category(split)
    if cat == "unknown" and description:
        cat = text_category(description)
    return cat
