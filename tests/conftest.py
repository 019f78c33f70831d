"""Shared fixtures: isolated environment, real loopback servers, temp DuckDB files, one Prefect test server."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Prefect reads its settings at import time: point it at a private home, quietly, before anything imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="newsmon-test-prefect-")
os.environ.update({
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
})
os.environ.pop("PREFECT_API_URL", None)

from tests import reaper  # noqa: E402
from tests.loopback import LoopbackHTTPServer, SMTPSink  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Stops this process's servers and clusters if it dies without tearing its fixtures down (tests/reaper.py).
_REAPER = reaper.start(REPO)
FIXTURES = REPO / "tests" / "fixtures"
SEED_TEXT = (FIXTURES / "seed_article.txt").read_text(encoding="utf-8")
_LEAKY_VARS = ("NEWSMON_CONFIG", "NEWSMON_DEBUG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
               "http_proxy", "https_proxy", "all_proxy", "no_proxy", "SSL_CERT_FILE")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch):
    """A developer's shell (proxies, NEWSMON_* variables) never changes a result."""
    for name in _LEAKY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()


@pytest.fixture
def newsmon_env(prefect_server) -> dict[str, str]:
    """Environment for `newsmon` subprocesses: they use the session's Prefect API instead of each
    starting a temporary one (5-10 s a process)."""
    return {**os.environ, "PREFECT_API_URL": prefect_server}


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL cluster for the session (started on first use); tests make their own databases."""
    from tests.postgres import PostgresCluster

    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def http_server():
    """A scripted HTTP server on 127.0.0.1 whose routes the test declares."""
    with LoopbackHTTPServer() as server:
        yield server


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 collecting messages."""
    with SMTPSink() as server:
        yield server


@pytest.fixture
def fixture_site():
    """The bundled fixture news site, served on 127.0.0.1 (and as `localhost` for a second host)."""
    from flows.fixture_site import FixtureSite

    with FixtureSite() as site:
        yield site


@pytest.fixture
def db_path(tmp_path) -> Path:
    """Path of a (not yet created) DuckDB database in a temp folder."""
    return tmp_path / "data" / "newsmon.duckdb"


@pytest.fixture
def migrated_db(db_path):
    """An open writer connection on a temp database with every migration applied."""
    from storage.db import open_writer

    con = open_writer(db_path)
    yield con
    con.close()
