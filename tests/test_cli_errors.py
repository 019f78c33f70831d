"""Unexpected errors: one line on stderr (exit 1), the traceback only with --debug; Prefect's own
ERROR lines and tracebacks stay out of the terminal."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import simple_config


def newsmon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=300)


@pytest.fixture
def broken_store(tmp_path, db_path, http_server):
    """A store whose catalog is not a database: every run fails inside the cycle."""
    config = simple_config(tmp_path, db_path, feeds=[http_server.url("/feed.xml")])
    lake = db_path.with_suffix(".lake")
    lake.mkdir(parents=True)
    (lake / "catalog.sqlite").write_bytes(b"\x00garbage" * 500)
    return config


def assert_one_line(proc: subprocess.CompletedProcess) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("newsmon: error: ") and "Traceback" not in proc.stderr


def test_a_failing_run_prints_one_line_and_debug_shows_the_traceback(broken_store):
    assert_one_line(newsmon("run", "--config", broken_store))
    debug = newsmon("--debug", "run", "--config", broken_store)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_a_failing_flow_run_prints_one_line_under_prefect(broken_store, newsmon_env):
    proc = newsmon("run", "--config", broken_store, env=newsmon_env)
    assert_one_line(proc)
    assert "ERROR" not in proc.stderr and "prefect" not in proc.stderr.lower()
