"""Stops what a test process started when that process dies without tearing its fixtures down.

A pytest worker that dies natively (a SIGABRT or SIGSEGV inside an extension) skips every fixture's
teardown: its Prefect test server and its PostgreSQL cluster would run on, reparented to PID 1.
Each test process starts one reaper (tests/conftest.py) and marks its environment with a session
token that every process it starts inherits. The reaper waits for its parent to go, then stops each
registered PostgreSQL cluster (`pg_ctl stop -m immediate`) and kills every process still carrying
the token. It also runs after a normal exit, when the fixtures have left nothing to find.

    python -m tests.reaper TOKEN REGISTRY_DIR    (started by the test process it watches)
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

TOKEN_VARIABLE = "NEWSMON_TEST_SESSION"
REGISTRY_VARIABLE = "NEWSMON_TEST_REGISTRY"  # where PostgresCluster registers its data dir
POLL_S = 0.3


def start(repo: Path) -> subprocess.Popen:
    """Mark this process's environment with a fresh token and start its reaper (in its own session, so
    a Ctrl-C sent to the terminal's process group does not end it first)."""
    import tempfile
    import uuid

    token, registry = uuid.uuid4().hex, tempfile.mkdtemp(prefix="newsmon-test-reaper-")
    os.environ.update({TOKEN_VARIABLE: token, REGISTRY_VARIABLE: registry})
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    return subprocess.Popen([sys.executable, "-m", "tests.reaper", token, registry], cwd=repo, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def register_cluster(pg_ctl: Path, data: Path, run_as: list[str]) -> Path | None:
    """Record a PostgreSQL cluster for the reaper; returns the entry to remove once it is stopped."""
    registry = os.environ.get(REGISTRY_VARIABLE)
    if not registry or not Path(registry).is_dir():
        return None
    entry = Path(registry) / f"pg-{data.parent.name}"
    entry.write_text("\n".join([str(pg_ctl), str(data), *run_as]))
    return entry


def carrying(token: str) -> list[int]:
    """PIDs of the processes whose environment holds TOKEN_VARIABLE=token (this one excepted)."""
    mark = f"\0{TOKEN_VARIABLE}={token}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in b"\0" + (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def stop_clusters(registry: Path) -> None:
    """`pg_ctl stop -m immediate` for every cluster still registered (each file: pg_ctl, data dir, runuser prefix)."""
    for entry in sorted(registry.glob("pg-*")):
        pg_ctl, data, *run_as = entry.read_text().split("\n")
        if (Path(data) / "postmaster.pid").exists():
            subprocess.run([*filter(None, run_as), pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(Path(data).parent, ignore_errors=True)
        entry.unlink(missing_ok=True)


def sweep(token: str, registry: Path) -> None:
    stop_clusters(registry)
    for _ in range(3):  # a killed parent's children may be mid-fork: look again
        pids = carrying(token)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(POLL_S)
    shutil.rmtree(registry, ignore_errors=True)


def main(token: str, registry: str) -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(POLL_S)
    sweep(token, Path(registry))


if __name__ == "__main__":
    main(*sys.argv[1:3])
