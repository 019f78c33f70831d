"""Connect, migrate and publish: the DuckDB file life cycle.

newsmon writes to a private working file (`<database>.work`) and, at the end of every run,
publishes a consistent copy at the configured `database` path with an atomic rename. Readers
(`newsmon sql`, the duckdb CLI, notebooks) open the published file, so they never hold the
writer's lock and a run never waits for them; see README "Querying while it runs".
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def work_path(database: Path) -> Path:
    """The private file newsmon writes to; `database` itself is the published snapshot."""
    return database.with_name(database.name + ".work")


def open_writer(database: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating or seeding it) the working file and bring its schema up to date."""
    live = work_path(database)
    live.parent.mkdir(parents=True, exist_ok=True)
    if not live.exists() and database.exists():
        # A published file with no working file (first run after a move, or a restore): start from it.
        shutil.copyfile(database, live)
    # publish() checkpoints once per run; DuckDB's automatic checkpoint every 16 MiB of WAL would
    # instead rewrite the indexes several times within one run (seconds each at 100k articles).
    con = duckdb.connect(str(live), config={"checkpoint_threshold": "1GB"})
    migrate(con)
    return con


def open_reader(database: Path, wait_s: float = 10.0) -> duckdb.DuckDBPyConnection:
    """Open the published snapshot read-only, retrying briefly if a writer has it locked."""
    if not database.exists():
        raise FileNotFoundError(f"{database} does not exist yet: run `newsmon run` first")
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(database), read_only=True)
        except duckdb.IOException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    return found


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations, each in one transaction together with its record; return versions applied."""
    con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
        applied.append(version)
    if applied:
        # Schema changes go to the main file at once: DuckDB 1.5 cannot replay an ALTER TABLE from the
        # WAL of a killed process in every case, and a checkpoint leaves no such WAL behind.
        con.execute("CHECKPOINT")
    return applied


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def publish(con: duckdb.DuckDBPyConnection, database: Path) -> None:
    """Checkpoint the working file and atomically replace the published snapshot with a copy of it."""
    con.execute("CHECKPOINT")  # a copy taken with a non-empty WAL would miss committed rows
    tmp = database.with_name(f".{database.name}.{os.getpid()}.tmp")
    shutil.copyfile(work_path(database), tmp)
    os.replace(tmp, database)  # readers of the old file keep their view; new readers see the new one
    # A read-write session on the old snapshot (the duckdb CLI's default) leaves `<database>.wal`
    # beside it; DuckDB would replay that log into the new snapshot on its next open (deleting or
    # changing rows by position). The log belongs to the replaced file, so it goes with it; the
    # session keeps writing to its open (now unlinked) log and checkpoints into the old file.
    database.with_name(database.name + ".wal").unlink(missing_ok=True)


def json_param(rows: Sequence[dict[str, Any]]) -> str:
    """One JSON document for a whole batch: binding one parameter is ~100x faster than executemany."""
    return json.dumps(list(rows), default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    """Run a user's SQL; return column names and rows."""
    result = con.execute(sql)
    columns = [d[0] for d in result.description] if result.description else []
    return columns, result.fetchall() if columns else []
