"""Attacks and unlucky inputs from the hostile test of newsmon: each one a defect that is now fixed."""
from __future__ import annotations

import pytest

from flows.cli import main
from tests.helpers import article_html, query, rss, run_plain, simple_config
from tests.loopback import LoopbackHTTPServer, Response

HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml"}


def test_site_discovery_does_not_bypass_the_ssrf_guard(tmp_path, db_path, http_server):
    """A home page may advertise a feed on another origin: that feed is an untrusted link."""
    with LoopbackHTTPServer() as internal:
        internal.route("/x.xml", Response(200, rss([internal.url("/secret.html")]), RSS))
        internal.route("/secret.html", Response(200, article_html("secret"), HTML))
        home = (f'<html><head><link rel="alternate" type="application/rss+xml" href="{internal.url("/x.xml")}">'
                f'<link rel="alternate" type="application/rss+xml" href="/own.xml"></head><body>hi</body></html>')
        http_server.route("/home.html", Response(200, home.encode(), HTML))
        http_server.route("/own.xml", Response(200, rss([]), RSS))
        config = simple_config(tmp_path, db_path, sites=[http_server.url("/home.html")],
                               fetch="allow_private_networks = false\nretries = 0")
        run_plain(config)
        run_plain(config)
        assert internal.requests == [], "nothing on the other port was requested"
    feeds = [r[0] for r in query(db_path, "SELECT url FROM feeds ORDER BY url")]
    assert feeds == [http_server.url("/own.xml")], "the same-origin feed is kept, the other one is not stored"
    assert len(http_server.hits("/own.xml")) == 2


def test_redirected_and_canonical_pages_are_not_downloaded_again(tmp_path, db_path, http_server):
    http_server.route("/r/1", Response(301, b"", {"Location": http_server.url("/a/1.html")}))
    http_server.route("/a/1.html", Response(200, article_html(1), HTML))
    http_server.route("/a/2.html", Response(200, article_html(2, canonical=http_server.url("/story/2")), HTML))
    http_server.route("/feed.xml", Response(200, rss([http_server.url("/r/1"), http_server.url("/a/2.html")]), RSS))
    config = simple_config(tmp_path, db_path, feeds=[http_server.url("/feed.xml")])
    for _ in range(3):
        run_plain(config)
    assert len(http_server.hits("/r/1")) == 1
    assert len(http_server.hits("/a/1.html")) == 1
    assert len(http_server.hits("/a/2.html")) == 1
    assert len(http_server.hits("/robots.txt")) == 1, "no page to fetch, no robots.txt either"
    assert sorted(r[0] for r in query(db_path, "SELECT url FROM articles")) == [
        http_server.url("/a/1.html"), http_server.url("/story/2")]


# --- `newsmon sql`: a read-only window on the store, nothing else ------------------------------

@pytest.fixture(scope="module")
def sql_store(tmp_path_factory):
    """One empty store for every `newsmon sql` case (they only read it)."""
    from storage.db import open_writer

    tmp = tmp_path_factory.mktemp("sql")
    open_writer(tmp / "data" / "newsmon.duckdb").close()
    return tmp


@pytest.fixture
def store_config(sql_store):
    return simple_config(sql_store, sql_store / "data" / "newsmon.duckdb")


@pytest.mark.parametrize("sql, problem", [
    ("COPY (SELECT 'pwned') TO '{config}' (FORMAT csv)", "only SELECT queries"),
    ("COPY (SELECT 1) TO '{lake}/data/x.csv'", "only SELECT queries"),
    ("SELECT content FROM read_text('/etc/shadow')", "disabled by configuration"),
    ("SELECT * FROM read_csv('{config}')", "disabled by configuration"),
    ("INSTALL httpfs", "only SELECT queries"),
    ("SELECT 1; SET enable_external_access = true", "only SELECT queries"),
    ("ATTACH '{tmp}/other.db' AS other", "only SELECT queries"),
    ("SELECT * FROM '{tmp}/*.toml'", "Catalog Error"),
])
def test_newsmon_sql_reads_the_store_and_nothing_else(store_config, sql_store, capsys, sql, problem):
    tmp_path, db_path = sql_store, sql_store / "data" / "newsmon.duckdb"
    before = (tmp_path / "newsmon.toml").read_bytes()
    sql = sql.format(config=store_config, lake=db_path.with_suffix(".lake"), tmp=tmp_path)
    assert main(["sql", "--config", store_config, sql]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0], err
    assert (tmp_path / "newsmon.toml").read_bytes() == before
    assert not (db_path.with_suffix(".lake") / "data" / "x.csv").exists()


def test_newsmon_sql_stops_a_query_at_its_timeout(store_config, capsys):
    assert main(["sql", "--timeout", "0.5", "--config", store_config, "SELECT count(*) FROM range(10000000000000)"]) == 1
    assert "query stopped after 0.5s (--timeout)" in capsys.readouterr().err


def test_newsmon_export_writes_the_named_file_only(store_config, tmp_path, capsys):
    out = tmp_path / "migrations.csv"
    assert main(["sql", "--config", store_config, "SELECT version FROM schema_migrations"]) == 0
    assert main(["export", "--config", store_config, str(out), "--sql", "SELECT version, name FROM schema_migrations"]) == 0
    from storage.db import migrations

    assert out.read_text().splitlines() == ["version,name"] + [f"{v},{n}" for v, n, _ in migrations()]
    assert main(["export", "--config", store_config, str(out),
                 "--sql", f"SELECT 1 AS x) TO '{tmp_path}/elsewhere.csv' (FORMAT csv); SELECT (1"]) == 1
    assert not (tmp_path / "elsewhere.csv").exists()


# --- a page that failed transiently is tried again by the next runs, up to 3 runs ---------------

def test_a_page_that_failed_transiently_is_tried_again_by_later_runs(tmp_path, db_path, http_server):
    http_server.route("/a/1.html", [Response(503, b"busy"), Response(200, article_html(1), HTML)])
    http_server.route("/a/2.html", Response(200, article_html(2), HTML, delay_s=3))  # always times out
    http_server.route("/a/3.html", Response(404, b"gone"))  # final: stored from the summary at once
    links = [http_server.url(f"/a/{i}.html") for i in (1, 2, 3)]
    # The feed answers 304 after the first run: the waiting entries come from the store, not the feed.
    http_server.route("/feed.xml", [Response(200, rss(links), {**RSS, "ETag": '"v1"'}), Response(304, b"")])
    config = simple_config(tmp_path, db_path, feeds=[http_server.url("/feed.xml")],
                           fetch="allow_private_networks = true\nretries = 0\ntimeout_s = 0.5")

    first = run_plain(config)
    assert (first.articles_new, first.pages_retry) == (1, 2)
    assert query(db_path, "SELECT url, extraction FROM articles") == [(links[2], "feed_summary")]
    second = run_plain(config)
    assert (second.articles_new, second.pages_retry) == (1, 1)
    assert query(db_path, "SELECT extraction FROM articles WHERE url = ?", [links[0]]) == [("trafilatura",)]
    third = run_plain(config)
    assert (third.articles_new, third.pages_retry) == (1, 0), "the third run gives up and keeps the summary"
    assert query(db_path, "SELECT extraction FROM articles WHERE url = ?", [links[1]]) == [("feed_summary",)]
    assert [len(http_server.hits(f"/a/{i}.html")) for i in (1, 2, 3)] == [2, 3, 1]
    assert query(db_path, "SELECT count(*) FROM page_retries") == [(0,)]
    assert query(db_path, "SELECT count(*), count(DISTINCT url) FROM articles") == [(3, 3)]
