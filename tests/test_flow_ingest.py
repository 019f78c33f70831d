"""The whole cycle, end to end: fixture site over real HTTP -> DuckDB -> webhook + SMTP, twice."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.conftest import SEED_TEXT
from tests.helpers import query, run_flow
from tests.loopback import Response

SEED_PATH = "/actualites/2019/11/syrie-deminage-daesh-deir-ez-zor.html"
SECRET = "s3cret-for-tests"


def write_config(tmp_path, site, hook_url, smtp_port, db_path, extra="") -> str:
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\ntags = ["fixture"]\n\n' for u in site.feed_urls())
    config = tmp_path / "newsmon.toml"
    config.write_text(f'''
[storage]
database = "{db_path}"

[fetch]
allow_private_networks = true
timeout_s = 5
retries = 0

{feeds}
[[alerts]]
name = "syria"
query = '"Deir ez-Zor" OR (Daesh AND pétrole)'
channels = ["ops", "desk"]

[channels.ops]
type = "webhook"
url = "{hook_url}"
secret = "{SECRET}"

[channels.desk]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
from = "newsmon@example.org"
to = ["desk@example.org"]
{extra}
''', encoding="utf-8")
    return str(config)


@pytest.fixture
def cycle(tmp_path, fixture_site, http_server, smtp_server, db_path):
    http_server.route("/hook", Response(200, b"ok"))
    config = write_config(tmp_path, fixture_site, http_server.url("/hook"), smtp_server.port, db_path)
    return config


@pytest.mark.usefixtures("prefect_server")
def test_first_run_stores_clean_articles_and_alerts_once(cycle, fixture_site, http_server, smtp_server, db_path):
    summary = run_flow(cycle, prefect=True)  # the `ingest` Prefect flow, as scheduled runs run it

    seed_url = fixture_site.url(SEED_PATH)
    rows = query(db_path, "SELECT url, text, language, published_at, duplicate_of FROM articles WHERE url = ?",
                 [seed_url])
    assert len(rows) == 1, "the seed URL (once with ?utm_source=..., once plain) is stored once"
    _, text, language, published_at, duplicate_of = rows[0]
    for paragraph in SEED_TEXT.split("\n\n"):
        assert paragraph.strip()[:60] in text
    assert "États-Unis d’Amérique" in text and "« Tant que Daesh" in text
    assert language == "fr"
    assert published_at is not None and published_at.year == 2019 and published_at.month == 11
    assert duplicate_of is None
    for chrome in ("cookies", "À lire aussi", "Newsletter", "Mentions légales"):
        assert chrome.lower() not in text.lower()

    assert summary.articles_new >= 3 and summary.alerts.fired == 1
    posts = http_server.hits("/hook")
    assert len(posts) == 1, "one POST per (alert, original article); copies never alert"
    body = posts[0].body
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert posts[0].headers["x-newsmon-signature"] == expected
    payload = json.loads(body)
    assert payload["alert"] == "syria" and payload["article"]["url"] == seed_url
    assert len(smtp_server.messages) == 1
    assert "syria" in smtp_server.messages[0]["Subject"]
    statuses = query(db_path, "SELECT channel, status FROM deliveries ORDER BY channel")
    assert statuses == [("desk", "sent"), ("ops", "sent")]


def test_second_run_adds_nothing_and_sends_nothing(cycle, http_server, smtp_server, db_path):
    run_flow(cycle)
    before = query(db_path, "SELECT count(*) FROM articles")[0][0]
    summary = run_flow(cycle)
    assert query(db_path, "SELECT count(*) FROM articles")[0][0] == before
    assert summary.articles_new == 0 and summary.alerts.fired == 0
    assert summary.feeds_not_modified == summary.feeds_total, "conditional GET: the feeds answered 304"
    assert len(http_server.hits("/hook")) == 1 and len(smtp_server.messages) == 1


def test_copies_are_linked_to_the_original(cycle, fixture_site, db_path):
    run_flow(cycle)
    seed_id = query(db_path, "SELECT id FROM articles WHERE url = ?", [fixture_site.url(SEED_PATH)])[0][0]
    copies = query(db_path, "SELECT url, duplicate_kind FROM articles WHERE duplicate_of = ? ORDER BY url", [seed_id])
    kinds = {url.rsplit("/", 1)[-1]: kind for url, kind in copies}
    assert kinds.get("depeche-syrie-coalition.html") == "exact"
    assert kinds.get("depeche-syrie-coalition-maj.html") == "near"
    unrelated = query(db_path, "SELECT duplicate_of FROM articles WHERE url LIKE '%budget%'")
    assert unrelated == [(None,)]


def test_dead_webhook_stays_pending_then_is_sent_once(tmp_path, fixture_site, http_server, smtp_server, db_path):
    http_server.route("/hook", Response(503, b"down"))
    config = write_config(tmp_path, fixture_site, http_server.url("/hook"), smtp_server.port, db_path)
    first = run_flow(config)
    assert first.articles_new >= 3, "a dead webhook does not stop ingestion"
    assert query(db_path, "SELECT status, attempts FROM deliveries WHERE channel = 'ops'") == [("pending", 1)]
    tries_while_down = len(http_server.hits("/hook"))
    http_server.route("/hook", Response(200, b"ok"))
    run_flow(config)
    assert query(db_path, "SELECT status FROM deliveries WHERE channel = 'ops'") == [("sent",)]
    assert len(http_server.hits("/hook")) == tries_while_down + 1
    ids = {r.headers["x-newsmon-delivery"] for r in http_server.hits("/hook")}
    assert len(ids) == 1, "every try of one hit carries the same delivery id"
    run_flow(config)
    assert len(http_server.hits("/hook")) == tries_while_down + 1, "a delivered hit is never sent again"


def test_a_new_process_still_finds_copies_of_articles_stored_before(tmp_path, fixture_site, http_server,
                                                                     smtp_server, db_path, newsmon_env):
    """Near-duplicate lookup lives in the database (band keys), not in a process's memory."""
    import subprocess
    import sys

    http_server.route("/hook", Response(200, b"ok"))

    class SiteFeedsOnly:
        def feed_urls(self):
            return fixture_site.feed_urls()[:2]

    def newsmon_run(config):
        proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", config],
                              capture_output=True, text=True, timeout=300, env=newsmon_env)
        assert proc.returncode == 0, proc.stderr[-2000:]

    newsmon_run(write_config(tmp_path, SiteFeedsOnly(), http_server.url("/hook"), smtp_server.port, db_path))
    assert query(db_path, "SELECT count(*) FROM articles WHERE duplicate_of IS NOT NULL") == [(0,)]
    newsmon_run(write_config(tmp_path, fixture_site, http_server.url("/hook"), smtp_server.port, db_path))
    kinds = dict(query(db_path, """SELECT regexp_extract(url, '[^/]+$'), duplicate_kind FROM articles
                                   WHERE duplicate_of IS NOT NULL"""))
    assert kinds == {"depeche-syrie-coalition.html": "exact", "depeche-syrie-coalition-maj.html": "near"}
    assert len(http_server.hits("/hook")) == 1, "the copies found by the second process did not alert"
