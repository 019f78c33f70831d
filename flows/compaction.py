"""A run's compaction in a child process: a crash inside DuckLake's rewrite cannot take the run down.

Compaction (`ducklake_merge_adjacent_files`, then `ducklake_flush_inlined_data`) is native code that
rewrites data files. Once in many runs it crashed the process that called it (a segmentation fault
in the flush); by then the run's articles, alerts and run record were committed, yet the process
died with signal 11 instead of printing its summary. In a child the same crash is one warning, and
the next run compacts again (compaction is idempotent).

The child opens its own connection to the store the run holds the writer lock for; the run is idle
meanwhile. It dies with the run (flows/deathsig.py) and prints the number of files merged.

    parent:  files = compact_in_child(database, memory_limit, shared)
    child:   python -m flows.compaction   (arguments pickled on stdin: a shared catalog's password
                                           never shows in the process list)
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Callable

from flows.deathsig import PARENT_VARIABLE

PYTHON = sys.executable  # the interpreter the child runs
CHILD_TIMEOUT_S = 3600  # a bound, not an estimate: merging a day's files takes seconds


class CompactionFailed(RuntimeError):
    """The compaction child ended without a result; the store is as the last committed snapshot left it."""


def compact_in_child(database: Path, memory_limit: str, shared=None) -> int:
    """Merge small files and flush inlined rows in a child process; return the files merged."""
    arguments = pickle.dumps((Path(database), memory_limit, shared))
    env = {**os.environ, PARENT_VARIABLE: str(os.getpid())}
    try:
        # -P: the working directory is not put first on sys.path, so a user's own `flows/` folder there
        # cannot stand in for newsmon's package in the child.
        done = subprocess.run([PYTHON, "-P", "-m", "flows.compaction"], input=arguments, capture_output=True,
                              env=env, timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise CompactionFailed(f"compaction gave no answer in {CHILD_TIMEOUT_S} s and was stopped") from None
    if done.returncode == 0:
        lines = done.stdout.decode(errors="replace").strip().splitlines()
        return int(lines[-1]) if lines else 0
    if done.returncode < 0:
        raise CompactionFailed(f"the compaction process died with signal {-done.returncode}")
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    raise CompactionFailed(lines[-1] if lines else f"the compaction process exited with {done.returncode}")


def compactor(settings) -> Callable[[], int]:
    """What maintain() calls to compact the configured store (one machine's or a shared lake) in a child."""
    storage = settings.storage
    return lambda: compact_in_child(settings.database, storage.memory_limit, storage.shared)


def _child() -> None:
    from flows.deathsig import die_with_parent

    die_with_parent()
    database, memory_limit, shared = pickle.loads(sys.stdin.buffer.read())
    from storage import maintenance
    from storage.db import connect, store_dir

    try:
        con = connect(database, read_only=False, memory_limit=memory_limit, temp_dir=store_dir(database) / "tmp",
                      shared=shared)
        try:
            files = maintenance.compact(con)
        finally:
            con.close()
    except Exception as exc:  # one line for the parent's warning; the traceback is of no use to it
        print(f"compaction failed: {_without_secrets(' '.join(str(exc).split()), shared)}", file=sys.stderr)
        sys.exit(1)
    print(files)


def _without_secrets(message: str, shared) -> str:
    """A failed PostgreSQL connection quotes its whole connection string: drop the password, and the S3 secret."""
    if shared is None:
        return message
    message = message.replace(shared.conninfo, shared.public_conninfo())
    if shared.s3 and shared.s3.secret:
        message = message.replace(shared.s3.secret, "***")
    return message


if __name__ == "__main__":
    _child()
