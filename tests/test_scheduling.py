"""Scheduled operation with real processes: a Prefect server, a process worker, `newsmon serve`, overlapping runs.

The commands are the ones docs/SCHEDULING.md gives. Every process is started in its own process
group and stopped with it; each Prefect test also checks that no process carrying its private
PREFECT_HOME is left behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from storage.db import store_dir
from tests.conftest import REPO
from tests.helpers import WAIT_S, wait_for
from tests.loopback import free_port
from tests.test_concurrent_readers import NEWSMON, exit_status, serve_articles, started, write_config

PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture
def prefect_env(tmp_path) -> Iterator[dict[str, str]]:
    """Environment for Prefect processes: a private PREFECT_HOME, quiet, no API URL yet."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL", "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    yield env
    entry = f"PREFECT_HOME={env['PREFECT_HOME']}"
    deadline = time.monotonic() + 30  # a flow-run process may still be exiting after its run ended
    while (leftovers := processes_with(entry)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in leftovers:  # started by this test (they carry its private PREFECT_HOME): stop them, then fail
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "processes left running"


def processes_with(env_entry: str) -> list[int]:
    """Live processes whose environment holds env_entry (e.g. a test's private PREFECT_HOME)."""
    wanted, found = env_entry.encode(), []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if wanted in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                pass  # gone, or not ours to read
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def prefect(env: dict[str, str], *args: str) -> str:
    """Run a prefect CLI command from the project root; return its output, failing on a non-zero exit."""
    result = subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 0, f"prefect {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result.stdout


def healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
            return json.loads(answer.read()) is True
    except OSError:
        return False


def published(database: Path, sql: str) -> list[tuple]:
    """Rows of a query on the last committed snapshot, [] while there is no store or no schema yet."""
    import duckdb

    from storage.db import StoreMissing, open_reader

    try:
        con = open_reader(database)
    except StoreMissing:
        return []
    try:
        return con.execute(sql).fetchall()
    except duckdb.CatalogException:  # the first run has created the catalog but not yet its tables
        return []
    finally:
        con.close()


def test_deployments_run_on_a_process_worker(tmp_path, fixture_site, db_path, prefect_env):
    config = write_config(tmp_path, fixture_site.feed_urls(), db_path)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with started(server_cmd, tmp_path / "server.log", prefect_env) as server:
        wait_for(lambda: healthy(api) or server.poll() is not None, "the Prefect server")
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        env = {**prefect_env, "PREFECT_API_URL": api}
        prefect(env, "work-pool", "create", "newsmon", "--type", "process")
        deployed = prefect(env, "--no-prompt", "deploy", "--all")
        assert "'ingest/ingest' successfully created" in deployed and "'digest/digest'" in deployed
        # The crons would fire with the default `config` (newsmon.toml in the project root): not in a test.
        prefect(env, "--no-prompt", "deployment", "schedule", "pause", "--all")
        with started([PREFECT, "worker", "start", "--pool", "newsmon"], tmp_path / "worker.log", env, cwd=tmp_path):
            watched = subprocess.run([PREFECT, "deployment", "run", "ingest/ingest", "--param", f"config={config}",
                                      "--watch", "--watch-timeout", str(WAIT_S)], cwd=tmp_path, env=env,
                                     capture_output=True, text=True, timeout=WAIT_S + 60)
        worker_log = (tmp_path / "worker.log").read_text()
        assert watched.returncode == 0, f"{watched.stdout}\n{watched.stderr}\n{worker_log}"
        assert "Flow run finished successfully in 'Completed'" in watched.stdout

    assert published(db_path, "SELECT count(*) FROM articles")[0][0] >= 4
    assert published(db_path, "SELECT status FROM runs") == [("completed",)]
    assert any(url.startswith(fixture_site.base) for (url,) in published(db_path, "SELECT url FROM articles"))


def test_serve_runs_on_its_schedule_and_stops_on_ctrl_c(tmp_path, fixture_site, db_path, prefect_env):
    config = write_config(tmp_path, fixture_site.feed_urls(), db_path)
    env = {**prefect_env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    log = tmp_path / "serve.log"
    completed = "SELECT count(*) FROM runs WHERE status = 'completed'"
    with started([NEWSMON, "serve", "--config", str(config), "--every", "5"], log, env) as serve:
        wait_for(lambda: serve.poll() is not None or (published(db_path, completed) or [(0,)])[0][0] >= 2,
                 "two completed scheduled runs")
        assert serve.poll() is None, log.read_text()
        os.killpg(serve.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the foreground process group
        status = exit_status(serve)
    assert status == 0, log.read_text()
    assert "Received KeyboardInterrupt, shutting down" in log.read_text()  # a run in flight may add tracebacks
    assert published(db_path, "SELECT count(*) - count(DISTINCT url) FROM articles") == [(0,)]
    # prefect_env's teardown: the local Prefect server and every flow-run process are gone too.


def test_serve_stopped_while_its_server_starts_leaves_no_server_behind(tmp_path, db_path, prefect_env):
    config = write_config(tmp_path, [], db_path)
    log = tmp_path / "serve.log"
    home = f"PREFECT_HOME={prefect_env['PREFECT_HOME']}"

    def server_started() -> bool:
        return any(b"server\0start\0" in _cmdline(pid) for pid in processes_with(home))

    with started([NEWSMON, "serve", "--config", str(config)], log, prefect_env) as serve:
        wait_for(lambda: serve.poll() is not None or server_started(), "the local Prefect server process")
        assert serve.poll() is None, log.read_text()
        serve.send_signal(signal.SIGTERM)  # `kill PID`, a service manager's stop: newsmon only, not its group
        status = exit_status(serve)
    assert status in (0, 128 + signal.SIGTERM), log.read_text()
    # prefect_env's teardown: the server, in a session of its own, was stopped too.


def test_overlapping_runs_one_completes_the_other_is_skipped(tmp_path, http_server, db_path):
    gate = serve_articles(http_server, 30)  # the run that gets the lock stays in flight until the gate opens
    config = write_config(tmp_path, [http_server.url("/feed.xml")], db_path)
    cmd = [NEWSMON, "run", "--config", str(config)]
    with started(cmd, tmp_path / "a.log") as a, started(cmd, tmp_path / "b.log") as b:
        runs = {"a": a, "b": b}
        wait_for(lambda: any(p.poll() is not None for p in runs.values()), "one of the two runs to end")
        first = next(name for name, p in runs.items() if p.poll() is not None)
        second = "b" if first == "a" else "a"
        skipped_log = (tmp_path / f"{first}.log").read_text()
        assert runs[first].returncode == 0, skipped_log
        assert "skipped: another newsmon run (pid " in skipped_log and f"is writing {store_dir(db_path)}" in skipped_log
        # The skipped run can end before the other has reached the held page: it holds the lock either way.
        gate.wait_reached()
        assert runs[second].poll() is None, "the other run is still in flight"
        gate.opened.set()
        status = exit_status(runs[second])
    completed_log = (tmp_path / f"{second}.log").read_text()
    assert status == 0, completed_log
    assert "articles: 30 new" in completed_log

    assert published(db_path, "SELECT count(*), count(DISTINCT url) FROM articles") == [(30, 30)]
    assert published(db_path, "SELECT status FROM runs") == [("completed",)]
