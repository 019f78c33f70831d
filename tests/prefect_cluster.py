"""A real Prefect deployment on loopback for the tests: `prefect server start`, CLI commands, workers.

Everything runs as its own process, started with the commands the README gives, under a private
PREFECT_HOME. `close()` stops every process group it started, then kills (and reports) anything
else still carrying that PREFECT_HOME, such as a flow-run process a worker left behind.
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
from contextlib import ExitStack
from pathlib import Path

from tests.conftest import REPO
from tests.loopback import free_port
from tests.helpers import WAIT_S, wait_for
from tests.test_concurrent_readers import started
from tests.test_scheduling import processes_with

PREFECT = str(Path(sys.executable).with_name("prefect"))


def prefect_env(home: Path, database_url: str) -> dict[str, str]:
    """Environment of every Prefect process of one cluster: private home, quiet, no API URL yet."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
           "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL", "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "WARNING",
           # `deploy --all` also creates the ingest and digest crons; they must not fire in a test
           # (with the project's default config), so the server creates no scheduled runs at all.
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
           # Workers ask for work every 10 s by default: a test need not wait that long for each hand-over.
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    env.pop("PREFECT_API_URL", None)
    return env


def asyncpg_url(conninfo: str) -> str:
    """The SQLAlchemy URL Prefect's server takes for a PostgreSQL database given as libpq key=value pairs."""
    keys = dict(pair.split("=", 1) for pair in conninfo.split())
    return f"postgresql+asyncpg://{keys['user']}@{keys['host']}:{keys['port']}/{keys['dbname']}"


class PrefectCluster:
    """A Prefect server on a free loopback port, and the workers and commands run against it."""

    def __init__(self, directory: Path, database_conninfo: str) -> None:
        """database_conninfo: the PostgreSQL database of the server's own state (as the README advises
        for a server that several machines use; it also starts with half the CPU of SQLite's migrations)."""
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = prefect_env(self.dir / "home", asyncpg_url(database_conninfo))
        self.api = f"http://127.0.0.1:{free_port()}/api"
        self._stack = ExitStack()
        self._workers: dict[str, Path] = {}

    def __enter__(self) -> "PrefectCluster":
        self._stack.callback(self._kill_leftovers)  # runs last, after every group below is stopped
        port = self.api.split(":")[-1].split("/")[0]
        self._server = self._start(["server", "start", "--host", "127.0.0.1", "--port", port], "server")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def wait_healthy(self) -> None:
        """Wait until the server answers, then point every later command at it."""
        wait_for(lambda: self._healthy() or self._server.poll() is not None, "the Prefect server")
        assert self._server.poll() is None, self.log("server")
        self.env["PREFECT_API_URL"] = self.api

    def cli(self, *args: str, timeout_s: float = WAIT_S) -> str:
        """Run a prefect command from the project root (where prefect.yaml is); its output, failing on exit != 0."""
        done = subprocess.run([PREFECT, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)
        assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout}\n{done.stderr}\n{self.logs()}"
        return done.stdout

    def worker(self, name: str, *args: str) -> None:
        """Start `prefect worker start --name <name> <args>`; its output goes to <name>.log."""
        self._start(["worker", "start", "--name", name, *args], name)
        self._workers[name] = self.dir / f"{name}.log"

    def workers_online(self) -> set[str]:
        """Names of the workers the server has heard from on the `newsmon` pool."""
        rows = self.api_post("/work_pools/newsmon/workers/filter", {})
        return {row["name"] for row in rows if row.get("status") == "ONLINE"}

    def worker_of(self, flow_run_id: str) -> list[str]:
        """Which workers ran this flow run, by their logs (a correct pool hands it to exactly one).

        Two workers may both try to submit a run they both saw; the server lets one move it to
        PENDING and tells the other to abort, which that one logs."""
        tried, aborted = f"submitting flow run '{flow_run_id}'", f"Aborted submission of flow run '{flow_run_id}'"
        return [name for name, log in self._workers.items()
                if tried in (text := log.read_text(errors="replace")) and aborted not in text]

    def api_post(self, path: str, body: dict) -> list[dict] | dict:
        """POST a JSON body to the server's REST API; the decoded answer."""
        request = urllib.request.Request(self.api + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def api_get(self, path: str) -> dict:
        """GET from the server's REST API; the decoded answer."""
        with urllib.request.urlopen(self.api + path, timeout=30) as answer:
            return json.loads(answer.read())

    def log(self, name: str) -> str:
        """The output of a process this cluster started ("server" or a worker's name)."""
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        """Every process's output, for a failure message."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}" for p in sorted(self.dir.glob("*.log")))

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        # Not from the project root: a worker must run flows where the deployment says, wherever it starts.
        return self._stack.enter_context(started([PREFECT, *args], self.dir / f"{name}.log", self.env, cwd=self.dir))

    def _healthy(self) -> bool:
        try:
            return self.api_get("/health") is True
        except OSError:
            return False

    def _kill_leftovers(self) -> None:
        entry = f"PREFECT_HOME={self.env['PREFECT_HOME']}"
        deadline = time.monotonic() + 30  # a flow-run process may still be exiting after its run ended
        while (leftovers := processes_with(entry)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert leftovers == [], f"processes left running: {leftovers}"
