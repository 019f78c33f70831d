"""Small helpers shared by the flow tests: run a flow in-process, read a store, wait on other processes,
build configs, pages and feeds."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path


WAIT_S = 300  # bound of every wait on another process; generous for a loaded two-core machine


def wait_for(condition, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll condition until true; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def run_flow(config: str, prefect: bool = False):
    """One ingest cycle in-process; returns its RunSummary.

    By default the stages run as plain functions, as `newsmon run` runs them without a Prefect API;
    prefect=True runs the `ingest` Prefect flow (the test then needs the prefect_server fixture)."""
    if prefect:
        from flows.ingest import ingest_flow

        return asyncio.run(ingest_flow(config))
    import logging

    from flows.config import load_settings
    from flows.cycle import run_cycle

    return asyncio.run(run_cycle(load_settings(config), logger=logging.getLogger("newsmon.ingest")))


def run_digest(config: str) -> dict:
    """One run of the digest flow (the test needs the prefect_server fixture)."""
    from flows.digest import digest_flow

    return asyncio.run(digest_flow(config))


def query(db_path: Path | str, sql: str, params=()) -> list[tuple]:
    """Rows of a read-only query on the store of a configured database path."""
    from storage.db import open_reader

    con = open_reader(Path(db_path))
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def lake(config: Path, *sql: str) -> list[tuple] | list[list[tuple]]:
    """Rows of each query on the shared lake, through one reader session."""
    from flows.config import load_settings
    from storage.db import open_reader

    settings = load_settings(config)
    con = open_reader(settings.database, shared=settings.storage.shared)
    try:
        results = [con.execute(q).fetchall() for q in sql]
    finally:
        con.close()
    return results[0] if len(results) == 1 else results


def run_plain(config: str):
    """One ingest cycle as plain functions (what `newsmon run` does without PREFECT_API_URL)."""
    from flows.config import load_settings
    from flows.cycle import run_cycle

    return asyncio.run(run_cycle(load_settings(config)))


def article_html(n: int | str, words: int = 120, canonical: str | None = None) -> bytes:
    """An article page trafilatura extracts: a title and a few paragraphs of distinct words."""
    text = " ".join(f"mot{n}x{i}" for i in range(words))
    link = f"<link rel='canonical' href='{canonical}'>" if canonical else ""
    return (f"<html lang='fr'><head><title>Dépêche {n}</title>{link}</head><body><article><h1>Dépêche {n}</h1>"
            f"<p>Deir ez-Zor, dépêche numéro {n}. {text}.</p><p>Fin de la dépêche {n}, avec assez de texte "
            f"pour être un article.</p></article></body></html>").encode()


def rss(links: list[str], title: str = "Fil") -> bytes:
    """An RSS 2.0 feed with one item per link."""
    items = "".join(f"<item><title>Dépêche {i}</title><link>{link}</link>"
                    f"<pubDate>Mon, 25 Nov 2019 10:{i % 60:02d}:00 +0000</pubDate></item>"
                    for i, link in enumerate(links))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{items}</channel></rss>'.encode()


def simple_config(tmp_path: Path, db_path: Path, feeds: list[str] = (), sites: list[str] = (), extra: str = "",
                  fetch: str = "allow_private_networks = true\nretries = 0\ntimeout_s = 5") -> str:
    """A newsmon.toml with the given feeds and sites, no alerts unless `extra` adds them."""
    entries = "".join(f'[[feeds]]\nurl = "{u}"\n\n' for u in feeds)
    entries += "".join(f'[[feeds]]\nsite = "{u}"\n\n' for u in sites)
    path = tmp_path / "newsmon.toml"
    path.write_text(f'[storage]\ndatabase = "{db_path}"\n\n[fetch]\n{fetch}\n\n{entries}{extra}\n', encoding="utf-8")
    return str(path)


def newsmon_config(every_key: bool = False) -> str:
    """The documented example newsmon.toml: one feed, one alert, a webhook and an email channel.

    With `every_key`, every section and key newsmon reads is set as well (non-default values, feeds of
    every kind, a third channel): the seed of the property tests, so that mutations reach every reader.
    """
    def more(text: str) -> str:
        return text if every_key else ""

    return f'''
[storage]
database = "data/newsmon.duckdb"
{more(_EVERY_STORAGE_KEY)}
[fetch]
timeout_s = 15
{more(_CONNECT_TIMEOUT)}max_bytes = 5_000_000
user_agent = "newsmon/0.1"
allow_private_networks = false
{more(_EVERY_FETCH_KEY)}
[[feeds]]
url = "https://example.org/world/rss.xml{more("?key=${NEWSMON_FEED_KEY}")}"
name = "Example world"
tags = ["world"]
{more(_EVERY_FEED_KIND)}
[[alerts]]
name = "syria"
query = '"Deir ez-Zor" OR (Daesh AND pétrole){more(" OR title:(syri* NEAR/5 oil) AND NOT football")}'
channels = ["ops", "desk"{more(', "chat"')}]
{more(_EVERY_ALERT_KEY)}
[channels.ops]
type = "webhook"
url = "https://hooks.example.org/newsmon"
secret = "${{NEWSMON_WEBHOOK_SECRET}}"
{more(_EVERY_WEBHOOK_KEY)}
[channels.desk]
type = "email"
smtp_host = "smtp.example.org"
smtp_port = 587
starttls = true
username = "${{SMTP_USER}}"
password = "${{SMTP_PASSWORD}}"
from = "newsmon@example.org"
to = ["desk@example.org"]
{more(_EVERY_EMAIL_KEY)}'''


_EVERY_STORAGE_KEY = '''memory_limit = "512MB"
snapshot_retention_days = 7
'''
_CONNECT_TIMEOUT = "connect_timeout_s = 5.0\n"
_EVERY_FETCH_KEY = '''concurrency = 16
per_host = 2
per_host_delay_s = 0.0
retries = 2
backoff_s = 0.5
max_retry_after_s = 30.0
max_redirects = 5
respect_robots = true

[dedup]
near_threshold = 0.8
shingle = 5
min_words = 40
near_window_days = 30

[schedule]
ingest = "*/15 * * * *"
digest = "0 7 * * *"
timezone = "Europe/Paris"

[alert_feeds]
atom_dir = "feeds"
entries = 50
'''
_EVERY_FEED_KIND = '''
[[feeds]]
opml = "subscriptions.opml"

[[feeds]]
site = "https://example.com"
'''
_EVERY_ALERT_KEY = '''feeds = ["tag:world"]
languages = ["fr", "en"]
min_words = 100
cooldown = "6h"
max_per_run = 20
'''
_EVERY_WEBHOOK_KEY = '''format = "json"
timeout_s = 10.0
retries = 2
max_attempts = 10
'''
_EVERY_EMAIL_KEY = '''mode = "digest"
schedule = "daily"

[channels.chat]
type = "apprise"
urls = ["ntfy://ntfy.example.org/newsmon"]
'''
