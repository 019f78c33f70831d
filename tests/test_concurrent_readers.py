"""Readers in other processes while a run writes: `newsmon sql` in a loop and a plain duckdb session.

Every process here is real: `newsmon run`, `newsmon sql`, and a Python process holding its own
duckdb connection with the lake attached read-only, as a notebook would. A gate on one article page
keeps the run in flight (lock held, batches committing) for as long as a test needs it, so the
ordering "reader active while the run writes" is certain instead of a matter of speed.
"""
from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from tests.helpers import WAIT_S, wait_for
from tests.loopback import Request, Response

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
_SYLLABLES = "ba ce di fo gu la me ni po ru sa te vi zo ka".split()
_WORDS = [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in ("n", "r", "s", "")]


# -- a generated news site -------------------------------------------------------------------------
def article_html(i: int) -> bytes:
    """A distinct, extractable article page (about 1,500 characters of text)."""
    rng = random.Random(i)
    paragraphs = "".join(f"<p>{' '.join(rng.choice(_WORDS) for _ in range(45)).capitalize()}.</p>\n"
                         for _ in range(5))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Report {i}</title></head>'
            f"<body><article><h1>Report {i}</h1>\n{paragraphs}</article></body></html>").encode()


def rss(base: str, count: int) -> bytes:
    """An RSS feed listing articles 0..count-1."""
    items = "".join(f"<item><title>Report {i}</title><link>{base}/a/{i}.html</link><guid>{base}/a/{i}.html</guid>"
                    f"<description>Report number {i}.</description></item>" for i in range(count))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Generated</title>'
            f"<link>{base}/</link><description>Generated news</description>{items}</channel></rss>").encode()


class Gate:
    """A route that holds its request until opened: the run stays in flight, writer lock held."""

    def __init__(self, answer: Response) -> None:
        self.answer = answer
        self.reached = threading.Event()
        self.opened = threading.Event()

    def __call__(self, request: Request) -> Response:
        self.reached.set()
        self.opened.wait(WAIT_S)
        return self.answer

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT_S), "the run never asked for the held page"


def serve_articles(http_server, count: int) -> Gate:
    """Routes for a feed of `count` articles on http_server; the last page is behind the returned gate."""
    html = {"Content-Type": "text/html; charset=utf-8"}
    http_server.route("/feed.xml", Response(200, rss(http_server.base, count),
                                            {"Content-Type": "application/rss+xml; charset=utf-8"}))
    for i in range(count - 1):
        http_server.route(f"/a/{i}.html", Response(200, article_html(i), html))
    gate = Gate(Response(200, article_html(count - 1), html))
    http_server.route(f"/a/{count - 1}.html", gate)
    return gate


def write_config(directory: Path, feed_urls: Sequence[str], database: Path) -> Path:
    """A newsmon.toml for loopback feeds."""
    feeds = "".join(f'[[feeds]]\nurl = "{url}"\n\n' for url in feed_urls)
    config = directory / "newsmon.toml"
    config.write_text(textwrap.dedent(f'''\
        [storage]
        database = "{database}"

        [fetch]
        allow_private_networks = true
        timeout_s = {WAIT_S}
        retries = 0
        per_host = 8

        ''') + feeds, encoding="utf-8")
    return config


# -- processes -------------------------------------------------------------------------------------
@contextmanager
def started(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None, **popen) -> Iterator[subprocess.Popen]:
    """Start cmd in its own process group, output to log; on exit, stop whatever of the group is left."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                **popen)
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to what is left of proc's process group (its children included)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # nothing left in the group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()


def exit_status(proc: subprocess.Popen) -> int:
    """Wait (bounded) for proc and return its exit status."""
    return proc.wait(timeout=WAIT_S)


def newsmon_sql(config: Path, query: str) -> subprocess.CompletedProcess:
    """`newsmon sql` in a new process."""
    return subprocess.run([NEWSMON, "sql", "--config", str(config), query], capture_output=True, text=True,
                          timeout=WAIT_S)


def single_number(result: subprocess.CompletedProcess) -> int:
    """The one value of a one-row, one-column `newsmon sql` table."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[3] == "(1 row)", result.stdout
    return int(lines[2])


def create_empty(database: Path) -> None:
    """Create an empty, migrated store, as a first run does before it has stored anything."""
    from storage.db import open_writer

    open_writer(database).close()


HOLDER = textwrap.dedent('''\
    import sys, duckdb
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "allow_unsigned_extensions": True})
    for statement in sys.argv[1].split(";\\n"):  # what `newsmon attach` printed
        if statement.strip():
            con.execute(statement)
    for line in iter(sys.stdin.readline, ""):
        print(con.execute("SELECT count(*) FROM newsmon.articles").fetchone()[0], flush=True)
    con.close()
    print("closed", flush=True)
''')


@contextmanager
def holder(config: Path, log: Path) -> Iterator["Holder"]:
    """A plain Python process holding one duckdb connection, attached with the lines `newsmon attach` prints."""
    attach = subprocess.run([NEWSMON, "attach", "--config", str(config)], capture_output=True, text=True,
                            timeout=WAIT_S, check=True).stdout
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, attach],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)
    try:
        yield Holder(proc, log)
    finally:
        stop_group(proc)


class Holder:
    """Asks the holding process for a count over its open connection."""

    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc, self.log = proc, log

    def count(self) -> int:
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], WAIT_S)
        answer = self.proc.stdout.readline().strip() if ready else "(no answer)"  # "" if it died
        assert answer.isdigit(), f"holder answered {answer!r}: {self.log.read_text()}"
        return int(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.stdout.readline().strip() == "closed", self.log.read_text()
        assert exit_status(self.proc) == 0, self.log.read_text()


def test_sql_readers_during_a_500_article_run_see_committed_batches(tmp_path, http_server, db_path):
    gate = serve_articles(http_server, 500)
    config = write_config(tmp_path, [http_server.url("/feed.xml")], db_path)
    create_empty(db_path)
    answers: list[subprocess.CompletedProcess] = []
    stop = threading.Event()

    def read_in_a_loop() -> None:
        for _ in range(500):  # bounded, whatever happens to the run
            if stop.is_set():
                return
            answers.append(newsmon_sql(config, "SELECT count(*) FROM articles"))

    reader = threading.Thread(target=read_in_a_loop, daemon=True)
    with started([NEWSMON, "run", "--config", str(config)], tmp_path / "run.log") as run:
        reader.start()
        gate.wait_reached()  # the run holds the lock and commits batches while the last page waits
        during = len(answers)
        wait_for(lambda: len(answers) >= during + 3 or not reader.is_alive(), "3 reader calls during the run")
        # Readers see the run progress: some batches are committed while the gated page holds the run open.
        wait_for(lambda: 0 < single_number(newsmon_sql(config, "SELECT count(*) FROM articles")) < 500,
                 "committed batches visible during the run")
        gate.opened.set()
        status = exit_status(run)
    stop.set()
    reader.join(WAIT_S)
    log = (tmp_path / "run.log").read_text()
    assert status == 0, log
    assert "articles: 500 new" in log, log

    counts = [single_number(answer) for answer in answers]  # each call exited 0 with one number
    assert len(counts) >= 3
    assert counts == sorted(counts), "counts never go down"
    assert all(0 <= c <= 500 for c in counts)
    assert single_number(newsmon_sql(config, "SELECT count(*) FROM articles")) == 500
    assert single_number(newsmon_sql(config, "SELECT count(DISTINCT url) FROM articles")) == 500


def test_plain_duckdb_session_held_across_a_run(tmp_path, http_server, db_path):
    gate = serve_articles(http_server, 60)
    config = write_config(tmp_path, [http_server.url("/feed.xml")], db_path)
    create_empty(db_path)
    with holder(config, tmp_path / "holder.log") as session:
        assert session.count() == 0
        with started([NEWSMON, "run", "--config", str(config)], tmp_path / "run.log") as run:
            gate.wait_reached()
            wait_for(lambda: session.count() > 0, "the open session to see committed batches")
            gate.opened.set()
            status = exit_status(run)
        log = (tmp_path / "run.log").read_text()
        assert status == 0, log
        assert "articles: 60 new" in log, log
        assert session.count() == 60, "an open session sees each new snapshot"
        session.close()
    assert single_number(newsmon_sql(config, "SELECT count(*) FROM articles")) == 60


# -- upkeep while a reader polls -------------------------------------------------------------------
POLLER = textwrap.dedent('''\
    import sys, time
    from pathlib import Path
    from storage.db import open_reader
    con = open_reader(Path(sys.argv[1]))
    seen, end = [], time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        seen.append(con.execute("SELECT count(*) FROM polled").fetchone()[0])
    print(" ".join(map(str, seen)))
''')


def test_upkeep_never_shows_a_reader_an_emptied_table(tmp_path):
    """Compaction (merge, flush) committed while a reader polls: no count ever goes down.

    A merge committed right after a flush let a reader see 0 rows for one query; each trial here
    polls across the upkeep of a fresh store (the other order showed it in 8 of 12 such trials)."""
    from storage.db import open_writer
    from flows.compaction import CompactionFailed, compact_in_child
    from flows.maintenance import maintain

    for trial in range(6):
        database = tmp_path / str(trial) / "newsmon.duckdb"
        con = open_writer(database)
        con.execute("CREATE TABLE polled (i INTEGER, s VARCHAR)")
        con.execute("CREATE TABLE small (i INTEGER)")
        for k in range(4):  # four Parquet files of 25 rows, to be merged
            con.execute("INSERT INTO polled SELECT range, repeat('x', 200) FROM range(?, ?)", [25 * k, 25 * k + 25])
        con.execute("INSERT INTO small VALUES (1), (2)")  # inlined rows, to be flushed
        poller = subprocess.Popen([sys.executable, "-c", POLLER, str(database), "2.0"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
        time.sleep(0.8)  # the poller is attached and reading
        # Compacted as newsmon compacts: in a child process (flows/compaction.py). A native crash of the
        # DuckLake build there leaves the lake as it was, and the next run's upkeep compacts: so here.
        for attempt in range(3):
            try:
                report = maintain(con, retention_days=30, compactor=lambda: compact_in_child(database, "2GB"))
                break
            except CompactionFailed:
                if attempt == 2:
                    raise
        con.close()
        out, err = poller.communicate(timeout=WAIT_S)
        assert poller.returncode == 0, err
        counts = [int(c) for c in out.split()]
        assert report.files_merged >= 4
        assert counts and counts[-1] == 100, counts[-5:]
        dips = [(a, b) for a, b in zip(counts, counts[1:]) if b < a]
        assert not dips, f"trial {trial}: a reader saw the table shrink {dips[:3]}"
