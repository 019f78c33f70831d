"""`newsmon serve`: ingest and digest on their schedules in one long-lived process.

Prefect only fires schedules through an API server (a process-local, ephemeral API never does),
so unless PREFECT_API_URL points at one already, serve starts `prefect server start` on
127.0.0.1 with its state under PREFECT_HOME, and stops it again on Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flows.config import Settings

SERVER_START_TIMEOUT_S = 120


def serve(settings: Settings, ingest_cron: str | None = None, digest_cron: str | None = None,
          every_s: int | None = None) -> int:
    """Serve both flows until interrupted; returns the exit status."""
    with prefect_api():
        from prefect import serve as prefect_serve
        from prefect.client.schemas.objects import ConcurrencyLimitConfig
        from prefect.schedules import Cron, Interval
        from prefect.types.entrypoint import EntrypointType

        from flows.digest import digest_flow
        from flows.ingest import ingest_flow

        tz = settings.schedule.timezone
        ingest_schedule = Interval(every_s) if every_s else Cron(ingest_cron or settings.schedule.ingest, timezone=tz)
        common = {
            "parameters": {"config": str(settings.path.resolve())},
            # A run that would overlap the one in flight is cancelled at once; the file lock backs this up.
            "concurrency_limit": ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW"),
            # Runs import `flows.ingest` as a module: loaded as a script, flows/ingest.py would be
            # registered as `ingest` and shadow the ingest package.
            "entrypoint_type": EntrypointType.MODULE_PATH,
        }
        ingest = ingest_flow.to_deployment(name="serve", schedule=ingest_schedule, **common)
        digest = digest_flow.to_deployment(name="serve", schedule=Cron(digest_cron or settings.schedule.digest,
                                                                       timezone=tz), **common)
        print(f"newsmon serve: ingest {'every %ss' % every_s if every_s else ingest_cron or settings.schedule.ingest}, "
              f"digest {digest_cron or settings.schedule.digest} ({tz}); Ctrl-C to stop", flush=True)
        prefect_serve(ingest, digest, print_starting_message=False)
    return 0


@contextmanager
def prefect_api() -> Iterator[str]:
    """Use PREFECT_API_URL if set; otherwise run a local Prefect server for the duration."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = _free_port()
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    # The server runs in its own session, so a Ctrl-C in the terminal reaches newsmon only and the
    # server is stopped after the runner. A SIGTERM that comes before Prefect's runner takes that
    # signal over (the server can take a while to start) must still stop it: exit through finally.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log_file = open(home / "server.log", "ab")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log_file, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(url, server, home / "server.log")
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        _stop(server)
        log_file.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the local Prefect server exited with status {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the local Prefect server did not answer within {SERVER_START_TIMEOUT_S}s; see {log}")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
