"""Open the store: a DuckLake (Parquet data files + a catalog) and migrate its schema.

A store is one folder, `<name>.lake/` beside the configured `database` path:

    catalog.sqlite   DuckLake catalog (snapshots, file lists, small inlined changes); WAL mode
    data/            Parquet data files, one folder per table
    index.sqlite     dedup keys (storage/index.py): a B-tree, so lookups cost the same at any size
    search/          full-text index (search/index.py, tantivy)
    writer.lock      one writer per store (storage/lock.py)

Readers (`newsmon sql`, the duckdb CLI, notebooks) attach the same catalog read-only and see the
last committed snapshot; a run commits per batch, so they see it progress. See docs/STORAGE.md.

With `[storage] catalog = "postgres:..."` (a SharedCatalog) the DuckLake catalog lives in PostgreSQL
and the data files in `data_path` (a folder every machine mounts at the same path, or s3://), so
several machines write the same lake; see docs/SCALING.md.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import random
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import duckdb

from .damage import check_catalog_presence, check_data_files, damaged_catalog, truncation
from .paths import store_dir
from .shared import PG_EXTENSIONS, S3Access, SharedCatalog  # noqa: F401 - re-exported: callers import them here

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LAKE = "newsmon"  # the name the lake is attached under; every table lives in it
# ducklake reaches the SQLite catalog through sqlite_scanner, which must be loaded first.
EXTENSIONS = ("sqlite_scanner", "ducklake")
LAKE_SCHEMA = "newsmon_lake"
COMMIT_ATTEMPTS = 12  # a lake transaction that conflicts with another writer's is run again this often
log = logging.getLogger("newsmon.store")
T = TypeVar("T")


class StoreMissing(FileNotFoundError):
    """The store has not been created yet."""


def catalog_path(database: Path) -> Path:
    """The DuckLake catalog file of a store."""
    return store_dir(database) / "catalog.sqlite"


def data_path(database: Path) -> Path:
    """The folder holding the store's Parquet files."""
    return store_dir(database) / "data"


def extension_file(name: str) -> Path:
    """The extension binary shipped by the `duckdb-extension-<name>` PyPI package (loaded offline)."""
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the Python package {package.replace('_', '-')} is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: duckdb {duckdb.__version__} does not match {package}")
    return path


def attach_sql(database: Path, read_only: bool, shared: SharedCatalog | None = None,
               conninfo: str | None = None) -> str:
    """The ATTACH statement for the store (also what README shows for the duckdb CLI).

    `conninfo` replaces the shared catalog's connection string (`newsmon attach` prints it without
    the password)."""
    mode = ", READ_ONLY" if read_only else ""
    if shared is not None:
        return (f"ATTACH 'ducklake:postgres:{_quote(conninfo or shared.conninfo)}' AS {LAKE} "
                f"(DATA_PATH '{_quote(shared.data_url())}', METADATA_SCHEMA '{LAKE_SCHEMA}'{mode})")
    return (f"ATTACH 'ducklake:sqlite:{catalog_path(database).resolve()}' AS {LAKE} "
            f"(DATA_PATH '{data_path(database).resolve()}/'{mode})")


def secret_sql(s3: S3Access, secret: str | None = None) -> str:
    """The CREATE SECRET statement that lets httpfs read and write an s3:// data path."""
    parts = [f"TYPE s3", f"KEY_ID '{_quote(s3.key_id)}'", f"SECRET '{_quote(secret or s3.secret)}'"]
    if s3.region:
        parts.append(f"REGION '{_quote(s3.region)}'")
    if s3.endpoint:
        parts.append(f"ENDPOINT '{_quote(s3.endpoint)}'")
    if s3.url_style:
        parts.append(f"URL_STYLE '{_quote(s3.url_style)}'")
    if not s3.use_ssl:
        parts.append("USE_SSL false")
    return f"CREATE SECRET newsmon_s3 ({', '.join(parts)})"


def _quote(value: str) -> str:
    return value.replace("'", "''")


def connect(database: Path, read_only: bool, memory_limit: str = "2GB", threads: int | None = None,
            temp_dir: Path | None = None, shared: SharedCatalog | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session with the store's lake attached and in use.

    A local store's catalog and data files are checked as it opens (storage/damage.py): a damaged one
    raises StoreDamaged before anything is written."""
    if shared is None:
        check_catalog_presence(catalog_path(database), data_path(database))
    if shared is None and read_only and not catalog_path(database).exists():
        raise StoreMissing(f"{store_dir(database)} does not exist yet: run `newsmon run` first")
    config: dict[str, Any] = {
        # Nothing is ever downloaded: the extensions come from their PyPI packages' files.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        # The two extension files come from their PyPI packages, whose hashes pip checked at install;
        # DuckDB's own signature check reads all 70 MB of them again (0.35 s per process, every run).
        "allow_unsigned_extensions": True,
        "memory_limit": memory_limit,
        "temp_directory": str(temp_dir or Path(tempfile.gettempdir()) / "newsmon-duckdb"),
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    # DuckDB draws its progress bar on stdout, pipe or not, once a query runs 2 s: it would land inside
    # `newsmon sql --format json|csv` output and the compaction child's answer. (A session setting only.)
    con.execute("SET enable_progress_bar = false")
    for name in shared.extensions() if shared else EXTENSIONS:
        con.execute(f"LOAD '{extension_file(name)}'")
    if shared is not None:
        _attach_shared(con, shared, read_only)
    else:
        if not read_only:
            _create_catalog(con, database)
        _attach_local(con, database, read_only)
    con.execute(f"USE {LAKE}")
    if shared is None:
        try:
            _check_local_lake(con, database)
        except BaseException:
            con.close()
            raise
    return con


def _attach_local(con: duckdb.DuckDBPyConnection, database: Path, read_only: bool) -> None:
    """Attach a one-machine lake; a catalog SQLite finds damaged (past check_lake's quick look) names itself."""
    try:
        con.execute(attach_sql(database, read_only))
    except duckdb.Error as exc:
        if "malformed" in str(exc) or "not a database" in str(exc):
            raise damaged_catalog(catalog_path(database), str(exc).splitlines()[-1].rsplit(": ", 1)[-1]) from exc
        raise


_META = f"__ducklake_metadata_{LAKE}"  # the catalog's own tables, as DuckLake attaches them


def _check_local_lake(con: duckdb.DuckDBPyConnection, database: Path) -> None:
    """Before anything is written: the catalog holds every page its header counts, and every data and delete
    file of the current snapshot is whole (storage/damage.py)."""
    catalog = catalog_path(database)
    try:
        pages, page_size = (int(con.execute(f"SELECT * FROM sqlite_scan(?, 'pragma_{name}')",
                                            [str(catalog)]).fetchone()[0]) for name in ("page_count", "page_size"))
        files = _current_files(con)
    except duckdb.Error as exc:
        raise damaged_catalog(catalog, " ".join(str(exc).split())[:200]) from exc
    reason = truncation(catalog, pages, page_size)
    if reason:
        raise damaged_catalog(catalog, reason)
    check_data_files(files, lambda: _current_files(con))


def _current_files(con: duckdb.DuckDBPyConnection) -> dict[Path, int | None]:
    """Every data and delete file the current snapshot reads, with the size the catalog recorded."""
    rows = con.execute(f"""
        WITH files AS (
            SELECT table_id, path, path_is_relative, file_size_bytes FROM {_META}.ducklake_data_file
            WHERE end_snapshot IS NULL
            UNION ALL
            SELECT table_id, path, path_is_relative, file_size_bytes FROM {_META}.ducklake_delete_file
            WHERE end_snapshot IS NULL)
        SELECT (SELECT value FROM {_META}.ducklake_metadata WHERE key = 'data_path'),
               s.path, s.path_is_relative, t.path, t.path_is_relative, f.path, f.path_is_relative, f.file_size_bytes
        FROM files f JOIN {_META}.ducklake_table t USING (table_id) JOIN {_META}.ducklake_schema s USING (schema_id)
        WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL""").fetchall()
    found = {}
    for root, schema, schema_rel, table, table_rel, path, path_rel, size in rows:
        where = Path(root)
        for part, relative in ((schema, schema_rel), (table, table_rel), (path, path_rel)):
            if part:
                where = where / part if relative else Path(part)
        found[where] = size
    return found


def _attach_shared(con: duckdb.DuckDBPyConnection, shared: SharedCatalog, read_only: bool) -> None:
    """Attach a PostgreSQL-catalog lake; a writer creates it on first use (callers serialise that)."""
    if shared.s3:
        con.execute(secret_sql(shared.s3))
    elif not read_only:
        Path(shared.data_path).mkdir(parents=True, exist_ok=True)
    try:
        con.execute(attach_sql(Path(), read_only, shared))
    except duckdb.Error as exc:
        if read_only and "does not exist" in str(exc):
            raise StoreMissing(f"no newsmon store in the PostgreSQL catalog yet: run `newsmon run` first") from None
        raise


def _create_catalog(con: duckdb.DuckDBPyConnection, database: Path) -> None:
    """Create an empty DuckLake catalog, atomically.

    A reader that finds `catalog.sqlite` must find a DuckLake in it: the catalog is built under
    another name and renamed into place, so a reader never attaches a half-made one, and a run
    killed while creating it leaves only a `.new` file that the next run starts again.
    """
    catalog = catalog_path(database)
    if catalog.exists():
        return
    data_path(database).mkdir(parents=True, exist_ok=True)
    fresh = catalog.with_name(catalog.name + ".new")
    for leftover in (fresh, fresh.with_name(fresh.name + "-wal"), fresh.with_name(fresh.name + "-shm")):
        leftover.unlink(missing_ok=True)
    # WAL lets readers attach while a run writes (rollback journal: commits took ~1 s with a reader).
    with sqlite3.connect(fresh) as db:
        db.execute("PRAGMA journal_mode=WAL")
    db.close()
    con.execute(f"ATTACH 'ducklake:sqlite:{fresh.resolve()}' AS newsmon_new "
                f"(DATA_PATH '{data_path(database).resolve()}/')")
    con.execute("DETACH newsmon_new")
    fresh.replace(catalog)


def open_writer(database: Path, memory_limit: str = "2GB",
                shared: SharedCatalog | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating it if needed) the store for writing and bring its schema up to date."""
    if shared is None:
        con = connect(database, read_only=False, memory_limit=memory_limit, temp_dir=store_dir(database) / "tmp")
        migrate(con)
        return con
    from .pgkeys import session_lock

    # Several machines may open a fresh lake at once: one creates the catalog and migrates, the others wait.
    with session_lock(shared.conninfo, "migrate"):
        con = connect(database, read_only=False, memory_limit=memory_limit, temp_dir=store_dir(database) / "tmp",
                      shared=shared)
        migrate(con)
    return con


def open_reader(database: Path, memory_limit: str = "2GB",
                shared: SharedCatalog | None = None) -> duckdb.DuckDBPyConnection:
    """Open the store read-only: the last committed snapshot, never blocking a writer."""
    return connect(database, read_only=True, memory_limit=memory_limit, shared=shared)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql")):
        version, _, name = path.stem.partition("_")
        found.append((int(version), name, path.read_text(encoding="utf-8")))
    return found


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations, each in one transaction together with its record; return versions applied."""
    con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)""")
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
        applied.append(version)
    return applied


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT (one DuckLake snapshot), or ROLLBACK on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


_retries = 0


def write(con: duckdb.DuckDBPyConnection, body: Callable[[duckdb.DuckDBPyConnection], T],
          attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run body(con) in one lake transaction; when the commit conflicts with another writer's, run it again.

    DuckLake retries a commit by itself when the other writer's changes do not touch the same data
    (appends to one table); a real conflict (both deleted or updated rows of one table) is raised.
    The body then runs again on a fresh snapshot, after a growing, jittered wait; after `attempts`
    the error is raised and nothing of the transaction is kept (the lake stays the truth)."""
    global _retries
    for attempt in range(1, attempts + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            result = body(con)
            con.execute("COMMIT")
            return result
        except duckdb.TransactionException as exc:
            _rollback(con)
            if "conflict" not in str(exc).lower() or attempt == attempts:
                raise
            _retries += 1
            log.info("lake commit conflicted with another writer (attempt %d/%d): %s", attempt, attempts,
                     str(exc).splitlines()[-1])
            time.sleep(min(2.0, 0.02 * 1.6 ** attempt) * (0.5 + random.random()))
        except BaseException:
            _rollback(con)
            raise
    raise AssertionError("unreachable")


def commit_retries() -> int:
    """How many lake transactions this process has run again after a conflict."""
    return _retries


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:  # a failed COMMIT has already ended the transaction
        pass


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A second cursor on the same session, with the lake in use (for a result read while `con` writes)."""
    cur = con.cursor()
    cur.execute(f"USE {LAKE}")
    return cur


def json_param(rows: Sequence[Any]) -> str:
    """One JSON document for a whole batch: binding one parameter is ~100x faster than executemany."""
    return json.dumps(list(rows), default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


ARROW_MIN_ROWS = 500  # batches at least this big go through Arrow (insert_columns)
_ARROW_TYPES = {"BIGINT": "int64", "INTEGER": "int32", "DOUBLE": "float64", "VARCHAR": "string"}


def insert_columns(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str],
                   values: dict[str, Sequence[Any]]) -> None:
    """Append rows given as one list per column: a big batch through an Arrow table DuckDB scans in place,
    a small one as one JSON parameter.

    For 2,000 articles (an import's batch) Arrow costs about half of the JSON path: no text is encoded to JSON
    and parsed back. A run's batches are 25 articles, where both cost next to nothing, and pyarrow would add
    47 MB to the run's memory: it is imported only for big batches."""
    if len(next(iter(values.values()), ())) < ARROW_MIN_ROWS:
        insert_columns_json(con, table, columns, values)
    else:
        insert_columns_arrow(con, table, columns, values)


def insert_columns_json(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str],
                        values: dict[str, Sequence[Any]]) -> None:
    """insert_columns through one JSON parameter (no pyarrow)."""
    names = ", ".join(columns)
    records = [dict(zip(columns, row)) for row in zip(*(values[name] for name in columns))]
    con.execute(f"INSERT INTO {table} ({names}) "
                f"SELECT unnest(from_json(?::JSON, '{json_spec(columns)}'), recursive := true)", [json_param(records)])


def insert_columns_arrow(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str],
                         values: dict[str, Sequence[Any]]) -> None:
    """insert_columns through an Arrow table DuckDB scans in place."""
    import pyarrow as pa

    names = ", ".join(columns)
    fields = [(name, _arrow_type(pa, kind)) for name, kind in columns.items()]
    batch = pa.table({name: values[name] for name, _ in fields}, schema=pa.schema(fields))  # noqa: F841
    con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM batch")


def _arrow_type(pa, kind: str):
    if kind == "TIMESTAMPTZ":
        return pa.timestamp("us", tz="UTC")
    if kind == "UINTEGER[]":
        return pa.list_(pa.uint32())
    return getattr(pa, _ARROW_TYPES[kind])()


def json_spec(columns: dict[str, str]) -> str:
    """The from_json structure for a list of row objects with these column types."""
    return json.dumps([columns], separators=(",", ":"))


class QueryRefused(ValueError):
    """A user query that is not a plain read (a COPY, an EXPORT, a write)."""


class QueryTimeout(RuntimeError):
    """A user query stopped at its time limit."""


_READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def open_sandbox(database: Path, memory_limit: str = "2GB", writable: Path | None = None,
                 shared: SharedCatalog | None = None) -> duckdb.DuckDBPyConnection:
    """The store read-only, in a session that can reach no other file and change no setting.

    DuckDB's `enable_external_access = false` with an allow-list of the store's folder (and of
    `writable`, the one file an export writes), `autoinstall_known_extensions = false` (nothing is
    downloaded) and `lock_configuration = true` (the user's SQL cannot lift any of it)."""
    temp_dir = Path(tempfile.gettempdir()) / "newsmon-duckdb"
    con = connect(database, read_only=True, memory_limit=memory_limit, temp_dir=temp_dir, shared=shared)
    data = [shared.data_url()] if shared is not None else []  # a shared lake's files (a folder or s3://)
    con.execute("SET allowed_directories = ?", [[f"{store_dir(database).resolve()}/", f"{temp_dir}/", *data]])
    if writable is not None:
        con.execute("SET allowed_paths = ?", [[str(writable.resolve())]])
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
    return con


def _read_only_sql(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but SELECT / EXPLAIN statements (a COPY could still write inside the store folder)."""
    kinds = [statement.type for statement in con.extract_statements(sql)]
    if not kinds:
        raise QueryRefused("empty query")
    for kind in kinds:
        if kind not in _READ_STATEMENTS:
            name = "INSTALL/LOAD" if kind == duckdb.StatementType.LOAD else kind.name  # DuckDB types INSTALL as LOAD
            raise QueryRefused(f"only SELECT queries are allowed here, not {name} "
                               "(`newsmon export` writes a query's result to a file)")


@contextmanager
def _time_limit(con: duckdb.DuckDBPyConnection, timeout_s: float | None) -> Iterator[None]:
    """Interrupt the session's query after timeout_s seconds (None: no limit)."""
    if not timeout_s:
        yield
        return
    timer = threading.Timer(timeout_s, con.interrupt)
    timer.start()
    try:
        yield
    except duckdb.InterruptException:
        raise QueryTimeout(f"query stopped after {timeout_s:g}s (--timeout)") from None
    finally:
        timer.cancel()


def run_query(con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float | None = None) -> tuple[list[str], list[tuple]]:
    """Run a user's read-only SQL; return column names and rows."""
    _read_only_sql(con, sql)
    with _time_limit(con, timeout_s):
        result = con.execute(sql)
        columns = [d[0] for d in result.description] if result.description else []
        return columns, result.fetchall() if columns else []


EXPORT_FORMATS = {".parquet": "FORMAT parquet", ".csv": "FORMAT csv, HEADER true", ".jsonl": "FORMAT json",
                  ".ndjson": "FORMAT json"}


def export_query(con: duckdb.DuckDBPyConnection, sql: str, out: Path, timeout_s: float | None = None) -> int:
    """Write the result of one SELECT to `out` (format from its suffix); return the rows written."""
    _read_only_sql(con, sql)
    if len(con.extract_statements(sql)) != 1:
        raise QueryRefused("export takes one SELECT statement")
    options = EXPORT_FORMATS.get(out.suffix.lower())
    if options is None:
        raise QueryRefused(f"unknown export format {out.suffix!r} (use {', '.join(EXPORT_FORMATS)})")
    with _time_limit(con, timeout_s):
        result = con.execute(f"COPY ({sql.strip().rstrip(';')}) TO '{out.resolve()}' ({options})").fetchone()
    return int(result[0]) if result else 0
