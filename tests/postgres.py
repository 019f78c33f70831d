"""A throwaway PostgreSQL cluster for the tests: initdb into a temp dir, pg_ctl on 127.0.0.1, stopped after.

Debian's postgresql package puts its binaries under /usr/lib/postgresql/<version>/bin and no
service is needed: the cluster belongs to the test session. The server refuses to run as root,
so when the tests run as root it runs as the `postgres` user (runuser), in a temp dir it can use.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.reaper import register_cluster


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL bin folder, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class PostgresCluster:
    """initdb + pg_ctl start on a free loopback port; a context manager that always stops it."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="newsmon-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "newsmon"
        self._as = []
        self._registered: Path | None = None
        if os.geteuid() == 0:  # postgres will not run as root
            os.chmod(self.dir, 0o777)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> "PostgresCluster":
        """Create the cluster (trust auth on loopback only) and start it."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        # fsync off: a test cluster need not survive a power cut, and syncs cost seconds on a shared disk.
        self._registered = register_cluster(self.bin / "pg_ctl", self.data, self._as)
        options = f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off -c full_page_writes=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                  "-t", "60", "-o", options, "start")
        return self

    def stop(self) -> None:
        """Stop the server (fast mode: open sessions are ended) and delete its files."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._registered is not None:
            self._registered.unlink(missing_ok=True)

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string of a database in this cluster."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={self.user}"

    def new_database(self) -> str:
        """Create an empty database with a fresh name; return its conninfo."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.conninfo(name)

    def __enter__(self) -> "PostgresCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
