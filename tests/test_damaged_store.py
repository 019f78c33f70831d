"""Damaged store files. The lake (catalog.sqlite, Parquet data files) is the truth and newsmon cannot
rebuild it: `newsmon run` and `newsmon sql` stop with one line naming the file and write nothing.
index.sqlite and search/ are derived from the lake: the next run rebuilds them, says so in one
warning line, and loses nothing."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main as newsmon_main
from tests.helpers import article_html, query, rss, run_plain, simple_config
from tests.loopback import LoopbackHTTPServer, Response

FIRST_PAGES, LATER_PAGES = 12, 16  # the second run finds 4 new pages beside the 12 stored ones


@pytest.fixture(scope="module")
def site():
    with LoopbackHTTPServer() as server:
        server.pages = FIRST_PAGES
        server.route("/feed.xml", lambda request: Response(
            200, rss([server.url(f"/a/{i}.html") for i in range(server.pages)]),
            {"Content-Type": "application/rss+xml"}))
        for i in range(LATER_PAGES):
            server.route(f"/a/{i}.html", Response(200, article_html(i), {"Content-Type": "text/html"}))
        yield server


@pytest.fixture(scope="module")
def template(site, tmp_path_factory):
    """A store holding FIRST_PAGES articles, built once; each test works on a copy at the same path
    (the catalog records its data folder's absolute path)."""
    base = tmp_path_factory.mktemp("damaged")
    database = base / "store" / "newsmon.duckdb"
    config = simple_config(base, database, feeds=[site.url("/feed.xml")])
    site.pages = FIRST_PAGES
    run_plain(config)
    shutil.copytree(database.parent, base / "template")
    return base, config


@pytest.fixture
def store(template, site):
    """(config, database, lake folder) of a fresh copy of the template store."""
    base, config = template
    shutil.rmtree(base / "store")
    shutil.copytree(base / "template", base / "store")
    site.pages = LATER_PAGES
    database = base / "store" / "newsmon.duckdb"
    return config, database, database.with_suffix(".lake")


def newsmon(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def contents(lake: Path) -> dict[str, str]:
    """Every file of the store that holds data, by content hash: not the writer's lock (each run writes its
    pid there), nor the shared-memory index and empty WAL any SQLite reader of the catalog sets up."""
    def holds_data(p: Path) -> bool:
        return (p.is_file() and p.name != "writer.lock" and not p.name.endswith("-shm")
                and not (p.name.endswith("-wal") and p.stat().st_size == 0))

    return {str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(lake.rglob("*")) if holds_data(p)}


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def articles_file(lake: Path) -> Path:
    return sorted((lake / "data" / "main" / "articles").glob("*.parquet"))[0]


def damage_lake(lake: Path, how: str) -> Path:
    """Damage the lake one way; returns the file the error must name."""
    catalog = lake / "catalog.sqlite"
    if how == "parquet cut in half":
        cut_in_half(articles_file(lake))
        return articles_file(lake)
    if how == "catalog cut in half":
        cut_in_half(catalog)
    elif how == "catalog emptied":
        catalog.write_bytes(b"")
    elif how == "catalog deleted":
        catalog.unlink()
    return catalog


@pytest.mark.parametrize("how", ["parquet cut in half", "catalog cut in half", "catalog emptied", "catalog deleted"])
def test_a_damaged_lake_stops_run_and_sql_with_one_line_naming_the_file(store, how, capsys):
    config, database, lake = store
    named = damage_lake(lake, how)
    before = contents(lake)

    run = newsmon("run", "--config", config)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("newsmon: error: StoreDamaged: "), run.stderr
    assert str(named) in run.stderr and "Traceback" not in run.stderr
    assert contents(lake) == before, "nothing was written after the damage was found"

    assert newsmon_main(["sql", "--config", config, "SELECT count(*) FROM feeds"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and str(named) in err
    assert contents(lake) == before


def test_debug_shows_where_the_damage_was_found(store):
    config, _, lake = store
    damage_lake(lake, "parquet cut in half")
    from storage.damage import StoreDamaged

    with pytest.raises(StoreDamaged, match="damaged data file"):
        newsmon_main(["--debug", "sql", "--config", config, "SELECT 1"])


def assert_complete_and_whole(database: Path, lake: Path) -> None:
    """Every page stored once, the dedup index and the full-text index level with the lake."""
    from flows.search import search

    assert query(database, "SELECT count(*), count(DISTINCT url) FROM articles") == [(LATER_PAGES, LATER_PAGES)]
    assert query(database, "SELECT status FROM runs ORDER BY started_at") == [("completed",), ("completed",)]
    hits = search(database, "Dépêche", limit=100)
    assert sorted(h.url for h in hits) == sorted(r[0] for r in query(database, "SELECT url FROM articles"))


@pytest.mark.parametrize("index_damage, search_damage", [("cut in half", "segment files cut in half"),
                                                         ("garbage", "meta.json garbage")])
def test_damaged_indexes_are_rebuilt_from_the_lake_with_one_warning_each(store, index_damage, search_damage, capsys):
    config, database, lake = store
    index, search_dir = lake / "index.sqlite", lake / "search"
    if index_damage == "cut in half":
        cut_in_half(index)
    else:
        index.write_bytes(b"\x00garbage" * 2000)
    damaged = [p for p in search_dir.iterdir() if p.suffix in (".store", ".term", ".idx", ".fast")]
    if search_damage == "meta.json garbage":
        damaged = [search_dir / "meta.json"]
        damaged[0].write_bytes(b"\x00garbage" * 50)
    else:
        for path in damaged:
            cut_in_half(path)

    assert newsmon_main(["search", "--config", config, "Dépêche"]) == 1, "a reader cannot rebuild: it says so"
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and str(search_dir) in err and "newsmon run" in err

    run = newsmon("run", "--config", config)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 2, run.stderr
    rebuilt = f"rebuilt from the {FIRST_PAGES} article(s) in the lake"
    assert f"dedup index {index} was damaged" in warnings[0] and warnings[0].endswith(rebuilt)
    assert f"search index {search_dir} was damaged" in warnings[1] and warnings[1].endswith(rebuilt)
    assert "articles: 4 new" in run.stdout, "the rebuilt index still knows every stored URL"
    assert_complete_and_whole(database, lake)
