"""The broker jars are fetched once per cache, however many processes start at once.

A chaos-suite run on a fresh clone (two xdist workers, an empty ``.cache``) failed at
set-up: both test processes ran Maven into the same ``libs.partial`` folder, one removed
what the other was writing ("Failed to copy full contents ... caffeine-3.2.0.jar").
A fake ``mvn`` (it copies one jar after a pause and counts its runs) stands in for
Maven here; the real fetch is exercised by every broker test.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from sre_agent.devstack import kafka

FAKE_MVN = """#!/bin/sh
echo run >> "{runs}"
for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${{a#-DoutputDirectory=}}";; esac; done
sleep 0.5
mkdir -p "$out" && echo jar > "$out/kafka_2.13-9.9.9.jar"
"""


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_two_fetches_at_once_fetch_once_and_both_get_the_jars(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, cache, runs = tmp_path / "bin", tmp_path / "cache", tmp_path / "runs"
    bin_dir.mkdir()
    _tool(bin_dir, "mvn", FAKE_MVN.format(runs=runs))
    _tool(bin_dir, "java", "#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(kafka.fetch_kafka(cache, "9.9.9"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    assert (results[0] / "kafka_2.13-9.9.9.jar").exists()
    assert runs.read_text().count("run") == 1  # the second waited and reused the cache
