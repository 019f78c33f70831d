"""Several writers on one lake: concurrent `newsmon run --shard K/3` processes with a PostgreSQL catalog.

Real processes, a real PostgreSQL cluster (tests/postgres.py, one per session) and a generated news
site on loopback whose feeds overlap across shards: one article linked from a feed of every shard,
a story with a near copy and an exact copy read by three different shards, alert hits in every
shard. The sharded result must equal what one unsharded run stores on a fresh catalog.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flows.config import load_settings
from flows.sharding import shard_of
from storage.db import open_reader
from tests.loopback import Response

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
SHARDS = 3
WAIT_S = 180
_WORDS = [a + b for a in "ba ce di fo gu la me ni po ru sa te vi zo ka".split() for b in "n r s l m t".split()]
HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}


def words(seed: int, n: int = 150) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(_WORDS) for _ in range(n)]


def page(title: str, text: list[str]) -> bytes:
    paragraphs = "".join(f"<p>{' '.join(text[i:i + 30]).capitalize()}.</p>\n" for i in range(0, len(text), 30))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><article><h1>{title}</h1>\n{paragraphs}</article></body></html>").encode()


@dataclass
class Site:
    """Feeds grouped by the shard that reads them, and what a correct store holds."""

    feeds: dict[int, list[str]] = field(default_factory=dict)
    items: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)  # feed url -> (link, title, hour)
    urls: set[str] = field(default_factory=set)  # canonical URLs that must be stored
    copies: dict[str, tuple[str, str]] = field(default_factory=dict)  # copy url -> (original url, kind)
    alerted: set[str] = field(default_factory=set)  # originals the rule matches


def pick_feeds(server, per_shard: int, prefix: str) -> dict[int, list[str]]:
    """Feed URLs on the server, `per_shard` for each shard (by the same hash the runs use)."""
    feeds: dict[int, list[str]] = {k: [] for k in range(1, SHARDS + 1)}
    i = 0
    while any(len(v) < per_shard for v in feeds.values()):
        url = server.url(f"/{prefix}/feed-{i}.xml")
        if len(feeds[shard_of(url, SHARDS)]) < per_shard:
            feeds[shard_of(url, SHARDS)].append(url)
        i += 1
    return feeds


def add_article(server, site: Site, feed: str, path: str, title: str, text: list[str], hour: int,
                link: str | None = None, delay_s: float = 0.0) -> str:
    url = server.url(path)
    server.route(path, Response(200, page(title, text), HTML, delay_s=delay_s))
    site.items.setdefault(feed, []).append((link or url, title, hour))
    site.urls.add(url)
    return url


def publish_feeds(server, site: Site) -> None:
    for feeds in site.feeds.values():
        for feed in feeds:
            items = "".join(f"<item><title>{t}</title><link>{link}</link><guid>{link}</guid>"
                            f"<pubDate>Mon, 25 Nov 2019 {hour:02d}:00:00 +0000</pubDate></item>"
                            for link, t, hour in site.items.get(feed, []))
            body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>{feed}</title>{items}</channel></rss>'
            server.route(server_path(feed), Response(200, body.encode(), RSS))


def server_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def overlapping_site(server) -> Site:
    """Feeds of every shard link one shared article; a story and its near and exact copies sit in
    three different shards (the copies published later); each shard has its own alert hit."""
    site = Site(feeds=pick_feeds(server, 2, "f"))
    f = site.feeds
    shared_text = words(1) + ["zorglub"]
    shared = add_article(server, site, f[1][0], "/a/shared.html", "Shared", shared_text, 6)
    site.alerted.add(shared)
    # The same article from feeds of the two other shards, once with a tracking parameter.
    site.items.setdefault(f[2][0], []).append((shared + "?utm_source=rss", "Shared", 6))
    site.items.setdefault(f[3][0], []).append((shared, "Shared", 6))
    story = words(2) + ["zorglub"]
    near = list(story)
    near[40], near[90], near[120] = "vizo", "kaba", "lame"
    original = add_article(server, site, f[3][1], "/a/story.html", "Story", story, 8)
    near_copy = add_article(server, site, f[1][1], "/b/story-copy.html", "Story, copied", near, 9)
    exact_copy = add_article(server, site, f[2][1], "/c/story-wire.html", "Story", story, 10)
    site.copies = {near_copy: (original, "near"), exact_copy: (original, "exact")}
    site.alerted.add(original)
    for k in range(1, SHARDS + 1):
        for j in range(3):
            text = words(100 * k + j) + (["zorglub"] if j == 0 else [])
            url = add_article(server, site, f[k][j % 2], f"/s{k}/{j}.html", f"Shard {k} item {j}", text, 11 + j)
            if j == 0:
                site.alerted.add(url)
    return site


def write_config(directory: Path, server, site: Site, conninfo: str, hooks: str) -> Path:
    """A config for the shared lake in `conninfo`, delivering to two webhooks under /<hooks>/."""
    for channel in ("ops", "desk"):
        server.route(f"/{hooks}/{channel}", Response(200, b"ok"))
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\n\n' for k in sorted(site.feeds) for u in site.feeds[k])
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "newsmon.toml"
    config.write_text(f'''
[storage]
database = "{directory / 'local' / 'newsmon.duckdb'}"
catalog = "postgres:{conninfo}"
data_path = "{directory / 'lake'}"

[fetch]
allow_private_networks = true
timeout_s = 10
retries = 0
per_host = 4

{feeds}
[[alerts]]
name = "watch"
query = "zorglub"
channels = ["ops", "desk"]

[channels.ops]
type = "webhook"
url = "{server.url(f'/{hooks}/ops')}"

[channels.desk]
type = "webhook"
url = "{server.url(f'/{hooks}/desk')}"
''', encoding="utf-8")
    return config


def newsmon(config: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen([NEWSMON, *args, "--config", str(config)], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text
    return text


def run_shards(config: Path, directory: Path, shards=range(1, SHARDS + 1)) -> list[str]:
    procs = {k: newsmon(config, "run", "--shard", f"{k}/{SHARDS}", log=directory / f"shard-{k}.log") for k in shards}
    return [finish(p, directory / f"shard-{k}.log") for k, p in procs.items()]


def lake(config: Path, *sql: str) -> list[tuple] | list[list[tuple]]:
    """Rows of each query on the shared lake, through one reader session."""
    settings = load_settings(config)
    con = open_reader(settings.database, shared=settings.storage.shared)
    try:
        results = [con.execute(q).fetchall() for q in sql]
    finally:
        con.close()
    return results[0] if len(results) == 1 else results


def outcome(config: Path) -> dict:
    """What a store holds, by URL (ids and seqs differ between runs): articles with their originals,
    alert matches and deliveries by story."""
    root = "coalesce(o.url, a.url)"
    original = "LEFT JOIN articles o ON o.id = a.duplicate_of"
    articles, matches, deliveries = lake(
        config, f"SELECT a.url, o.url, a.duplicate_kind FROM articles a {original}",
        f"SELECT m.alert, {root} FROM alert_matches m JOIN articles a ON a.id = m.article_id {original}",
        f"SELECT d.alert, {root}, d.channel, d.status FROM deliveries d JOIN articles a ON a.id = d.article_id "
        f"{original}")
    return {"articles": sorted(articles), "matches": sorted(matches), "deliveries": sorted(deliveries)}


def expected(site: Site) -> list[tuple]:
    return sorted((url, *site.copies.get(url, (None, None))) for url in site.urls)


def hook_ids(server, hooks: str) -> dict[str, list[str]]:
    return {c: sorted(r.headers["x-newsmon-delivery"] for r in server.hits(f"/{hooks}/{c}")) for c in ("ops", "desk")}


def test_three_overlapping_shards_store_each_url_once_and_equal_one_unsharded_run(tmp_path, http_server, postgres):
    site = overlapping_site(http_server)
    publish_feeds(http_server, site)
    sharded = write_config(tmp_path / "sharded", http_server, site, postgres.new_database(), "hooks-sharded")
    logs = run_shards(sharded, tmp_path)

    assert all(f"shard:    {k}/{SHARDS} of the feeds" in log for k, log in enumerate(logs, 1)), logs
    result = outcome(sharded)
    assert result["articles"] == expected(site), "every URL stored once, each copy linked to the earliest original"
    assert result["matches"] == sorted(("watch", url) for url in site.alerted)
    assert result["deliveries"] == sorted(("watch", url, c, "sent") for url in site.alerted for c in ("desk", "ops"))
    ids = hook_ids(http_server, "hooks-sharded")
    assert {c: len(v) for c, v in ids.items()} == {"ops": len(site.alerted), "desk": len(site.alerted)}
    assert all(len(set(v)) == len(v) for v in ids.values()), "no hit delivered twice to a channel"
    assert lake(sharded, "SELECT count(*) FROM alert_queue", "SELECT count(DISTINCT seq), count(*), max(seq) "
                "FROM articles") == [[(0,)], [(len(site.urls),) * 3]], "queue drained, storage order unique"

    single = write_config(tmp_path / "single", http_server, site, postgres.new_database(), "hooks-single")
    finish(newsmon(single, "run", log=tmp_path / "single.log"), tmp_path / "single.log")
    assert outcome(single) == result, "three shards store what one unsharded run stores"
    assert {c: len(v) for c, v in hook_ids(http_server, "hooks-single").items()} == {
        c: len(v) for c, v in ids.items()}


def test_a_shard_killed_mid_run_then_run_again_loses_and_doubles_nothing(tmp_path, http_server, postgres):
    site = Site(feeds=pick_feeds(http_server, 1, "k"))
    for k, (feed,) in site.feeds.items():
        pages = 60 if k == 2 else 4  # shard 2 is still downloading its later batches when it is killed
        for j in range(pages):
            text = words(1000 * k + j) + (["zorglub"] if j % 10 == 0 else [])
            url = add_article(http_server, site, feed, f"/k{k}/{j}.html", f"Kill {k}.{j}", text, j % 24,
                              delay_s=0.05 if k == 2 else 0.0)
            if j % 10 == 0:
                site.alerted.add(url)
    # The same story in shard 1 and in the killed shard: whoever stores it second links it.
    copy = add_article(http_server, site, site.feeds[1][0], "/k1/copy-of-k2-5.html", "Copy", words(1000 * 2 + 5), 23)
    site.copies[copy] = (http_server.url("/k2/5.html"), "exact")
    publish_feeds(http_server, site)
    config = write_config(tmp_path, http_server, site, postgres.new_database(), "hooks")

    victim = newsmon(config, "run", "--shard", f"2/{SHARDS}", log=tmp_path / "victim.log")
    others = {k: newsmon(config, "run", "--shard", f"{k}/{SHARDS}", log=tmp_path / f"shard-{k}.log") for k in (1, 3)}
    deadline = time.monotonic() + WAIT_S
    while len([r for r in http_server.requests if r.path.startswith("/k2/")]) < 35:
        assert victim.poll() is None, (tmp_path / "victim.log").read_text()
        assert time.monotonic() < deadline, "shard 2 never reached its later pages"
        time.sleep(0.01)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    for k, proc in others.items():
        finish(proc, tmp_path / f"shard-{k}.log")
    stored_before = lake(config, "SELECT count(*) FROM articles")[0][0]
    assert stored_before < len(site.urls), "the kill came before shard 2 stored everything"

    again = run_shards(config, tmp_path, shards=[2])[0]
    assert "articles:" in again
    assert outcome(config)["articles"] == expected(site), "nothing lost, nothing doubled"
    assert lake(config, "SELECT count(DISTINCT seq), count(*), max(seq) FROM articles") == [(len(site.urls),) * 3]
    assert sorted(u for _, u in outcome(config)["matches"]) == sorted(site.alerted)
    ids = hook_ids(http_server, "hooks")
    assert {c: len(set(v)) for c, v in ids.items()} == {"ops": len(site.alerted), "desk": len(site.alerted)}
    # At most the one hit in flight at the kill can be sent twice (sent, not yet recorded): same delivery id.
    assert all(len(v) - len(set(v)) <= 1 for v in ids.values())
    assert lake(config, "SELECT count(*) FROM deliveries WHERE status <> 'sent'") == [(0,)]
    import psycopg

    with psycopg.connect(load_settings(config).storage.shared.conninfo) as pg:
        keys = pg.execute("SELECT count(*), count(DISTINCT article_id) FROM newsmon_keys.members").fetchone()
        last_seq = pg.execute("SELECT value FROM newsmon_keys.meta WHERE name = 'last_seq'").fetchone()[0]
    assert keys == (len(site.urls), len(site.urls)) and last_seq == len(site.urls), "keys level with the lake"
