"""`newsmon import`: real files, real store, real processes (a kill midway included)."""
from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.config import load_settings
from flows.importer import import_files
from ingest.archive import BadRecord, parse_timestamp
from tests.helpers import query

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
_WORDS = [a + b for a in "ba ce di fo gu la me ni po ru sa te vi zo".split() for b in "n r s t l m".split()]


def text(seed: int, words: int = 80) -> str:
    """A distinct text of `words` words (random enough that two seeds share no 5-word shingle)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def write_jsonl(path: Path, records, gz: bool = False) -> Path:
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as out:
        for record in records:
            out.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def config(tmp_path: Path) -> Path:
    path = tmp_path / "newsmon.toml"
    path.write_text('[storage]\ndatabase = "data/newsmon.duckdb"\n', encoding="utf-8")
    return path


def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "newsmon.duckdb"


def test_import_with_bad_rows_stores_the_good_ones_and_reports_the_bad(tmp_path):
    base = text(1, 120)
    records = [
        {"url": "https://a.example/1?utm_source=x", "text": base, "title": "One", "published_at": "2024-03-01T10:00:00Z",
         "language": "fr", "author": "A", "feed_url": "https://a.example/feed"},
        {"url": "https://b.example/copy", "text": base.upper(), "published_at": 1709290000},  # exact copy, later
        {"url": "https://c.example/near", "text": base + " Reporting by X; editing by Y.",
         "published_at": 1709290000000},  # near copy, milliseconds
        "{not json",
        {"url": "ftp://d.example/x", "text": "t"},
        {"url": "https://e.example/x"},
        {"url": "https://f.example/x", "text": "t", "published_at": "yesterday"},
        ["a list"],
        {"url": "https://g.example/2", "text": text(2)},
    ]
    path = write_jsonl(tmp_path / "in.jsonl.gz", records, gz=True)
    summary = import_files(load_settings(config(tmp_path)), [path], workers=1)
    assert (summary.rows, summary.imported, summary.duplicates, summary.bad_rows) == (9, 4, 2, 5)
    assert [e.split(":")[1] for e in summary.bad_examples] == ["4", "5", "6", "7", "8"]
    assert "not JSON" in summary.bad_examples[0] and "http(s)" in summary.bad_examples[1]
    assert "text is missing" in summary.bad_examples[2] and "ISO 8601" in summary.bad_examples[3]
    rows = dict((url, (dup, kind)) for url, dup, kind in query(
        db(tmp_path), "SELECT url, duplicate_of IS NOT NULL, duplicate_kind FROM articles"))
    assert rows == {"https://a.example/1": (False, None), "https://b.example/copy": (True, "exact"),
                    "https://c.example/near": (True, "near"), "https://g.example/2": (False, None)}
    (title, language, author, feed, source, extraction), = query(
        db(tmp_path), "SELECT title, language, author, feed_url, source_url, extraction FROM articles WHERE title = 'One'")
    assert (title, language, author, feed, extraction) == ("One", "fr", "A", "https://a.example/feed", "import")
    assert source == "https://a.example/1?utm_source=x"
    assert query(db(tmp_path), "SELECT count(*) FROM alert_queue") == [(0,)], "imports fire no alerts by default"


def test_importing_twice_adds_nothing(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"url": f"https://x.example/{i}", "text": text(i)} for i in range(50)])
    settings = load_settings(config(tmp_path))
    first = import_files(settings, [path], workers=1)
    again = import_files(settings, [path], workers=1)
    assert (first.imported, again.imported, again.already_stored) == (50, 0, 50)
    assert query(db(tmp_path), "SELECT count(*), count(DISTINCT url), count(DISTINCT seq) FROM articles") == [(50, 50, 50)]
    assert query(db(tmp_path), "SELECT kind, status FROM runs ORDER BY started_at") == [("import", "completed")] * 2


def test_parquet_import_and_a_file_that_cannot_be_read(tmp_path):
    import duckdb

    parquet = tmp_path / "in.parquet"
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'https://p.example/' || i AS url, ? || i AS text, "
                "TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL (i) HOUR AS published_at FROM range(30) r(i)",
                [text(7, 60)])
    con.execute(f"COPY t TO '{parquet}' (FORMAT parquet)")
    no_text = tmp_path / "bad.parquet"
    con.execute(f"COPY (SELECT 'https://q.example/' AS url) TO '{no_text}' (FORMAT parquet)")
    con.close()
    summary = import_files(load_settings(config(tmp_path)), [no_text, parquet], workers=1)
    assert summary.imported == 30
    assert len(summary.failed_files) == 1 and "required column(s) missing: text" in summary.failed_files[0]
    assert query(db(tmp_path), "SELECT min(published_at) = TIMESTAMPTZ '2024-01-01 00:00:00+00' FROM articles") == [(True,)]


def test_cli_import_prints_a_summary_and_imports_alerts_only_when_asked(tmp_path):
    cfg = config(tmp_path)
    path = write_jsonl(tmp_path / "in.jsonl", [{"url": f"https://x.example/{i}", "text": text(i)} for i in range(5)])
    done = subprocess.run([NEWSMON, "import", "--config", str(cfg), str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "5 rows" in done.stdout and "5 new (0 of them duplicates), 0 already stored, 0 bad" in done.stdout
    missing = subprocess.run([NEWSMON, "import", "--config", str(cfg), str(tmp_path / "nope.jsonl")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr


def test_import_waits_for_a_run_writing_the_store_or_imports_nothing(tmp_path):
    cfg = config(tmp_path)
    path = write_jsonl(tmp_path / "in.jsonl", [{"url": f"https://x.example/{i}", "text": text(i)} for i in range(5)])
    holder_code = ("import sys, time; from pathlib import Path; from storage.lock import writer_lock\n"
                   "with writer_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(db(tmp_path))], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = subprocess.run([NEWSMON, "import", "--config", str(cfg), "--wait", "0", str(path)],
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "nothing imported" in refused.stderr and f"pid {holder.pid}" in refused.stderr
        waiting = subprocess.Popen([NEWSMON, "import", "--config", str(cfg), "--wait", "120", str(path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert "waiting up to 120s" in waiting.stderr.readline()
            holder.kill()  # the run ends (here: dies); the kernel frees its lock
            out, err = waiting.communicate(timeout=300)
        finally:
            waiting.kill()
        assert waiting.returncode == 0, err
        assert "5 new (0 of them duplicates)" in out
    finally:
        holder.kill()
        holder.wait()
    assert query(db(tmp_path), "SELECT count(*) FROM articles") == [(5,)]


def test_import_killed_midway_then_run_again_adds_nothing_twice(tmp_path):
    cfg = config(tmp_path)
    count = 8_000  # four chunks: the kill lands after the first commit and before the last
    path = write_jsonl(tmp_path / "big.jsonl", [{"url": f"https://x.example/{i}", "text": text(i, 60)}
                                                for i in range(count)])
    proc = subprocess.Popen([NEWSMON, "import", "--config", str(cfg), str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    stored = 0
    try:
        while stored == 0 and proc.poll() is None:  # kill once the first chunk is committed
            assert time.monotonic() < deadline, "no chunk committed in time"
            time.sleep(0.2)
            stored = _count(cfg)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the import and its worker processes
        proc.wait()
    assert 0 < stored < count, "killed after the first commit, before the end"
    again = subprocess.run([NEWSMON, "import", "--config", str(cfg), str(path)], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert query(db(tmp_path), "SELECT count(*), count(DISTINCT url), count(DISTINCT seq) FROM articles") == [
        (count, count, count)]
    assert query(db(tmp_path), "SELECT status FROM runs ORDER BY started_at") == [("running",), ("completed",)]


def _count(cfg: Path) -> int:
    done = subprocess.run([NEWSMON, "sql", "--config", str(cfg), "--format", "json",
                           "SELECT count(*) AS n FROM articles"], capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout)[0]["n"] if done.returncode == 0 else 0


@pytest.mark.parametrize("value, expected", [
    ("2024-03-01T10:00:00Z", "2024-03-01T10:00:00+00:00"),
    ("2024-03-01T12:00:00+02:00", "2024-03-01T12:00:00+02:00"),
    ("2024-03-01", "2024-03-01T00:00:00+00:00"),
    (1709287200, "2024-03-01T10:00:00+00:00"),
    (1709287200000, "2024-03-01T10:00:00+00:00"),
    (None, None),
])
def test_published_at_forms(value, expected):
    parsed = parse_timestamp(value)
    assert (parsed.isoformat() if parsed else None) == expected


@pytest.mark.parametrize("value", ["soon", True, [2024], 10**20])
def test_published_at_rejects(value):
    with pytest.raises(BadRecord):
        parse_timestamp(value)


def test_near_copies_are_found_within_the_window_and_exact_copies_at_any_distance(tmp_path):
    base = text(11, 150)
    near = base + " Reporting by X; editing by Y."
    day = 86400
    start = 1_700_000_000
    records = [
        {"url": "https://a.example/original", "text": base, "published_at": start},
        # 29 days later, and in another import: still within the 30-day window, whatever the buckets.
        {"url": "https://b.example/near-29d", "text": near, "published_at": start + 29 * day},
        # A year later: outside every bucket the original is filed under, so a new story...
        {"url": "https://c.example/near-1y", "text": near + " Again.", "published_at": start + 365 * day},
        # ...while an exact copy is found across any distance.
        {"url": "https://d.example/exact-2y", "text": base.upper(), "published_at": start + 730 * day},
    ]
    settings = load_settings(config(tmp_path))
    import_files(settings, [write_jsonl(tmp_path / "a.jsonl", records[:1])], workers=1)
    import_files(settings, [write_jsonl(tmp_path / "b.jsonl", records[1:])], workers=1)
    rows = dict((url.split("/")[-1], kind) for url, kind in query(
        db(tmp_path), "SELECT url, duplicate_kind FROM articles"))
    assert rows == {"original": None, "near-29d": "near", "near-1y": None, "exact-2y": "exact"}
