"""The store: upgrade from a 0.1 DuckDB file, dedup-index repair, time travel, maintenance, readers."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from flows.config import load_settings
from flows.importer import import_files
from flows.persist import open_store
from storage import index as key_index
from storage.db import StoreMissing, open_reader, open_writer, store_dir
from tests.conftest import FIXTURES
from tests.helpers import query
from tests.test_import import text, write_jsonl

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
# Written by newsmon 0.1 (`newsmon demo`): 4 articles (one exact and one near copy), 2 alert hits
# delivered by webhook, 9 fetch_log rows, 3 feeds, 1 run.
LEGACY = FIXTURES / "legacy" / "newsmon-0.1.duckdb.gz"


def legacy_setup(tmp_path: Path) -> tuple[Path, Path]:
    database = tmp_path / "old.duckdb"
    with gzip.open(LEGACY) as src, open(database, "wb") as out:
        shutil.copyfileobj(src, out)
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "old.duckdb"\n', encoding="utf-8")
    return database, config


def test_a_01_duckdb_file_is_moved_into_the_lake_on_the_first_run(tmp_path):
    database, config = legacy_setup(tmp_path)
    done = subprocess.run([NEWSMON, "run", "--config", str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "upgrade:  moved 4 articles and 17 other rows from" in done.stdout
    assert "temporary server" not in done.stdout + done.stderr, "no Prefect API without PREFECT_API_URL"
    assert not database.exists() and database.with_name("old.duckdb.migrated").exists(), "old file kept, renamed"
    assert query(database, "SELECT count(*), count(duplicate_of), count(signature) FROM articles") == [(4, 2, 4)]
    kinds = dict(query(database, "SELECT duplicate_kind, count(*) FROM articles GROUP BY ALL"))
    assert kinds == {None: 2, "exact": 1, "near": 1}
    counts = {t: query(database, f"SELECT count(*) FROM {t}")[0][0]
              for t in ("feeds", "fetch_log", "alert_matches", "deliveries")}
    assert counts == {"feeds": 3, "fetch_log": 9, "alert_matches": 2, "deliveries": 2}
    assert query(database, "SELECT DISTINCT status FROM deliveries") == [("sent",)]
    assert query(database, "SELECT kind, status FROM runs ORDER BY kind") == [
        ("ingest", "completed"), ("ingest", "completed"), ("upgrade", "completed")]
    # The upgraded store dedups against what it brought: the same texts under new URLs are copies.
    originals = query(database, "SELECT text FROM articles WHERE duplicate_of IS NULL ORDER BY url")
    path = write_jsonl(tmp_path / "again.jsonl", [{"url": f"https://elsewhere.example/{i}", "text": t}
                                                  for i, (t,) in enumerate(originals)])
    summary = import_files(load_settings(config), [path], workers=1)
    assert (summary.imported, summary.duplicates) == (2, 2)
    again = subprocess.run([NEWSMON, "run", "--config", str(config)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "upgrade" not in again.stdout


def test_a_killed_run_between_lake_and_index_commits_is_caught_up(tmp_path):
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "s.duckdb"\n', encoding="utf-8")
    settings = load_settings(config)
    first = write_jsonl(tmp_path / "a.jsonl", [{"url": f"https://x.example/{i}", "text": text(i)} for i in range(30)])
    import_files(settings, [first], workers=1)
    index_file = store_dir(settings.database) / "index.sqlite"
    # The index loses the keys of the last 10 articles, as after a kill between the lake and index commits.
    lost = [i for (i,) in query(settings.database, "SELECT id FROM articles WHERE seq > 20")]
    assert len(lost) == 10
    con = key_index.open_index(index_file)
    for table in ("url_keys", "hash_keys", "band_keys", "copies"):
        con.executemany(f"DELETE FROM {table} WHERE article_id = ?", [(i,) for i in lost])
    con.execute("UPDATE meta SET value = 20 WHERE name = 'last_seq'")
    con.close()
    copies = write_jsonl(tmp_path / "b.jsonl", [{"url": f"https://x.example/{i}", "text": text(i)} for i in range(30)]
                         + [{"url": f"https://copy.example/{i}", "text": text(i)} for i in range(30)])
    summary = import_files(settings, [copies], workers=1)
    assert (summary.imported, summary.duplicates, summary.already_stored) == (30, 30, 30)
    assert query(settings.database, "SELECT count(*), count(DISTINCT url) FROM articles") == [(60, 60)]
    # A lost index is rebuilt from the lake.
    index_file.unlink()
    store = open_store(settings.database, settings.dedup)
    try:
        assert key_index.last_seq(store.index) == 60
        ids = [i for (i,) in query(settings.database, "SELECT id FROM articles")]
        assert key_index.known_urls(store.index, ids) == set(ids)
    finally:
        store.close()
    summary = import_files(settings, [copies], workers=1)
    assert summary.imported == 0


def test_runs_record_their_snapshot_for_time_travel(tmp_path):
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "s.duckdb"\n', encoding="utf-8")
    settings = load_settings(config)
    for part in range(2):
        path = write_jsonl(tmp_path / f"{part}.jsonl", [{"url": f"https://x.example/{part}/{i}", "text": text(part * 100 + i)}
                                                       for i in range(10)])
        import_files(settings, [path], workers=1)
    snapshots = [s for (s,) in query(settings.database, "SELECT snapshot_id FROM runs ORDER BY started_at")]
    assert len(snapshots) == 2 and snapshots[0] < snapshots[1]
    assert [query(settings.database, f"SELECT count(*) FROM articles AT (VERSION => {s})")[0][0]
            for s in snapshots] == [10, 20]


def test_sql_formats_and_the_library_connection(tmp_path):
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "s.duckdb"\n', encoding="utf-8")
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"url": "https://a.example/1", "text": text(1), "published_at": "2024-05-01T12:00:00+02:00"},
        {"url": "https://b.example/1", "text": text(2), "published_at": "2024-05-02T12:00:00Z"},
        {"url": "https://c.example/copy", "text": text(1), "published_at": "2024-05-03T12:00:00Z"}])
    import_files(load_settings(config), [path], workers=1)
    sql = "SELECT url, published_at, signature IS NOT NULL AS signed FROM articles ORDER BY url LIMIT 2"
    out = subprocess.run([NEWSMON, "sql", "--config", str(config), "--format", "json", sql], capture_output=True,
                         text=True, timeout=120)
    rows = json.loads(out.stdout)
    assert [sorted(r) for r in rows] == [["published_at", "signed", "url"]] * 2
    assert rows[0] == {"url": "https://a.example/1", "published_at": "2024-05-01T10:00:00+00:00", "signed": True}
    csv_out = subprocess.run([NEWSMON, "sql", "--config", str(config), "--format", "csv", sql], capture_output=True,
                             text=True, timeout=120).stdout.splitlines()
    assert csv_out[0] == "url,published_at,signed" and len(csv_out) == 3
    # DuckDB draws a progress bar on stdout, even into a pipe, once a query has run 2 s: off in every
    # session newsmon opens (a process of its own: under pytest's capture DuckDB starts with it off).
    probe = ("import sys, newsmon; con = newsmon.connect(sys.argv[1]); "
             "print(con.sql(\"SELECT current_setting('enable_progress_bar')\").fetchone()[0])")
    progress = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, timeout=120)
    assert progress.stdout.strip() == "False", progress.stdout + progress.stderr
    # Without an argument, the CLI's default config: $NEWSMON_CONFIG (here from another folder).
    default = subprocess.run([sys.executable, "-c", "import newsmon; print(newsmon.connect().sql("
                              "'SELECT count(*) FROM articles').fetchone()[0])"], capture_output=True, text=True,
                             timeout=120, cwd=FIXTURES, env={**os.environ, "NEWSMON_CONFIG": str(config)})
    assert default.stdout.strip() == "3", default.stdout + default.stderr
    import newsmon

    con = newsmon.connect(config)
    try:
        assert con.execute("SELECT count(*) FROM stories").fetchone()[0] == 2
        try:
            con.execute("DELETE FROM articles")
            raise AssertionError("a library connection must not write")
        except Exception as exc:  # duckdb's read-only error
            assert "read-only" in str(exc).lower() or "read only" in str(exc).lower()
    finally:
        con.close()


def test_sql_json_and_csv_hold_every_duckdb_type_and_stop_quietly_when_the_reader_goes(tmp_path):
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "s.duckdb"\n', encoding="utf-8")
    import_files(load_settings(config), [write_jsonl(tmp_path / "a.jsonl", [{"url": "https://a.example/1",
                                                                            "text": text(1)}])], workers=1)
    sql = ("SELECT INTERVAL '1 day 1 hour 2 minutes 3.5 seconds' AS span, -INTERVAL 5 MINUTE AS back, "
           "'NaN'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, [1.5, 'nan'::DOUBLE] AS list, "
           "{'gap': INTERVAL 3 DAY} AS struct, 1.25::DECIMAL(4, 2) AS dec, '\\x01\\xff'::BLOB AS blob, "
           "'00000000-0000-0000-0000-000000000001'::UUID AS id, true AS yes")
    out = subprocess.run([NEWSMON, "sql", "--config", str(config), "--format", "json", sql], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"span": "P1DT1H2M3.5S", "back": "-PT5M", "nan": None, "inf": None,
                                       "list": [1.5, None], "struct": {"gap": "P3D"}, "dec": 1.25, "blob": "01ff",
                                       "id": "00000000-0000-0000-0000-000000000001", "yes": True}]
    csv_out = subprocess.run([NEWSMON, "sql", "--config", str(config), "--format", "csv", sql], capture_output=True,
                             text=True, timeout=120)
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines()[1].startswith("P1DT1H2M3.5S,-PT5M,nan,inf,")
    # `newsmon sql … | head -1`: the reader goes after one line; newsmon stops without an error line.
    reader = subprocess.Popen([NEWSMON, "sql", "--config", str(config), "--format", "csv",
                               "SELECT range AS n FROM range(500000)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout.readline() == b"n\n"
    reader.stdout.close()
    _, err = reader.communicate(timeout=120)
    assert reader.returncode == 141 and err == b"", err


def test_maintenance_keeps_the_file_count_flat(tmp_path):
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "s.duckdb"\nsnapshot_retention_days = 0\n', encoding="utf-8")
    settings = load_settings(config)
    files = []
    for part in range(4):
        path = write_jsonl(tmp_path / f"{part}.jsonl", [{"url": f"https://x.example/{part}/{i}", "text": text(part * 100 + i)}
                                                       for i in range(40)])
        import_files(settings, [path], workers=1)
        files.append(_article_files(settings))
    assert files[-1] <= 2, f"articles files after each import: {files}"
    con = open_reader(settings.database)
    try:
        assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 160
    finally:
        con.close()


def _article_files(settings) -> int:
    return len(list((store_dir(settings.database) / "data" / "main" / "articles").glob("*.parquet")))


def test_a_compaction_that_crashes_loses_nothing_and_the_next_import_compacts(tmp_path, monkeypatch, caplog):
    """Compaction runs in a child process (flows/compaction.py): when it dies of a signal, as DuckLake's
    flush once did, the import stays completed and recorded; the next one compacts."""
    import logging
    import stat

    from flows import compaction

    crashing = tmp_path / "python-that-crashes"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n", encoding="utf-8")
    crashing.chmod(crashing.stat().st_mode | stat.S_IXUSR)
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "s.duckdb"\nsnapshot_retention_days = 0\n', encoding="utf-8")
    settings = load_settings(config)

    def import_part(part: int) -> None:
        rows = [{"url": f"https://x.example/{part}/{i}", "text": text(part * 100 + i)} for i in range(40)]
        import_files(settings, [write_jsonl(tmp_path / f"{part}.jsonl", rows)], workers=1)

    monkeypatch.setattr(compaction, "PYTHON", str(crashing))
    with caplog.at_level(logging.WARNING, logger="newsmon"):
        for part in range(3):
            import_part(part)
    assert caplog.text.count("maintenance failed, the next run retries it: the compaction process died "
                             "with signal 11") == 3, caplog.text
    uncompacted = _article_files(settings)
    assert uncompacted >= 3, "each import left its own files while compaction crashed"
    assert query(settings.database, "SELECT status, count(*) FROM runs GROUP BY ALL") == [("completed", 3)]

    monkeypatch.setattr(compaction, "PYTHON", sys.executable)
    import_part(3)
    assert _article_files(settings) <= 2 < uncompacted
    assert query(settings.database, "SELECT count(*), count(DISTINCT url) FROM articles") == [(160, 160)]


def test_a_half_made_catalog_is_never_attached_and_is_started_again(tmp_path):
    database = tmp_path / "newsmon.duckdb"
    lake = store_dir(database)
    lake.mkdir()
    # What a run killed while creating the store leaves: a catalog file that holds no DuckLake yet.
    (lake / "catalog.sqlite.new").write_bytes(b"")
    try:
        open_reader(database)
    except StoreMissing:
        pass
    else:
        raise AssertionError("a reader attached a store that was never created")
    open_writer(database).close()
    assert not (lake / "catalog.sqlite.new").exists()
    reader = open_reader(database)
    try:
        assert reader.execute("SELECT count(*) FROM articles").fetchone() == (0,)
    finally:
        reader.close()


def test_small_batches_without_pyarrow_store_the_same_values_as_arrow(tmp_path):
    """A run's batches go through JSON (no pyarrow in the run's memory), an import's through Arrow: same rows."""
    from datetime import datetime, timedelta, timezone

    from storage.articles import ARTICLE_COLUMNS
    from storage.db import insert_columns_arrow, insert_columns_json

    moments = [datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc),
               datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), None]
    samples = {"BIGINT": [1, -2**62, None], "INTEGER": [0, 2**31 - 1, None], "DOUBLE": [0.1 + 0.2, 1e-300, None],
               "VARCHAR": ['Élysée « quote » "\\" \n\t\u2028 \x00 𝔘 日本', "", None],
               "TIMESTAMPTZ": moments, "UINTEGER[]": [[0, 2**32 - 1, 7], [], None]}
    values = {name: samples[kind] for name, kind in ARTICLE_COLUMNS.items()}
    con = open_writer(tmp_path / "newsmon.duckdb")
    try:
        rows = {}
        for name, insert in (("by_json", insert_columns_json), ("by_arrow", insert_columns_arrow)):
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM articles LIMIT 0")
            insert(con, name, ARTICLE_COLUMNS, values)
            rows[name] = con.execute(f"SELECT * FROM {name} ORDER BY id NULLS LAST").fetchall()
    finally:
        con.close()
    assert len(rows["by_json"]) == 3
    assert rows["by_json"] == rows["by_arrow"]
    first = dict(zip(ARTICLE_COLUMNS, next(row for row in rows["by_json"] if row[0] == 1)))
    assert first["published_at"] == moments[0] and first["signature"] == [0, 2**32 - 1, 7]
