"""A test process that dies natively leaves no server or PostgreSQL cluster behind (tests/reaper.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
DYING = textwrap.dedent('''\
    import os, subprocess, sys
    from pathlib import Path
    from tests import reaper
    reaper.start(Path.cwd())
    from tests.postgres import PostgresCluster
    cluster = PostgresCluster().start()
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    postmaster = (cluster.data / "postmaster.pid").read_text().split()[0]
    print(server.pid, cluster.data, postmaster, flush=True)
    os.abort()  # as a worker dies inside a native extension: no fixture teardown, no atexit
''')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_a_test_process_that_aborts_leaves_no_server_and_no_cluster_running():
    dying = subprocess.run([sys.executable, "-c", DYING], cwd=REPO, capture_output=True, text=True, timeout=180,
                           env={k: v for k, v in os.environ.items() if not k.startswith("NEWSMON_TEST_")})
    assert dying.returncode < 0, dying.stderr  # it died by its signal
    server, data, postmaster = dying.stdout.split()
    wait_for(lambda: not _alive(int(server)), "the orphaned server to be killed")
    wait_for(lambda: not Path(data).exists(), "the orphaned cluster to be stopped and deleted")
    wait_for(lambda: not _alive(int(postmaster)), "the postmaster to be gone")
