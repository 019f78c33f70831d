"""Crash safety: a killed run leaves the database consistent and the next run finishes the job."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from flows.config import load_settings
from flows.cycle import Stages, run_cycle
from tests.loopback import Response
from tests.helpers import query, run_flow
from tests.test_flow_ingest import write_config

PAGES = 60


def article_page(request):
    n = request.path.rsplit("/", 1)[-1].split(".")[0]
    words = " ".join(f"mot{n}x{i}" for i in range(120))
    body = (f"<html lang='fr'><head><title>Dépêche {n}</title></head><body><article><h1>Dépêche {n}</h1>"
            f"<p>Deir ez-Zor, dépêche numéro {n}. {words}.</p><p>Fin de la dépêche {n}, "
            f"avec assez de texte pour être un article.</p></article></body></html>")
    return Response(200, body.encode(), {"Content-Type": "text/html; charset=utf-8"}, delay_s=0.05)


def feed(server):
    items = "".join(f"<item><title>Dépêche {i}</title><link>{server.url(f'/a/{i}.html')}</link>"
                    f"<pubDate>Mon, 25 Nov 2019 10:{i % 60:02d}:00 +0000</pubDate></item>" for i in range(PAGES))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Fil</title>{items}</channel></rss>'.encode()


@pytest.fixture
def slow_site(http_server):
    http_server.route("/feed.xml", Response(200, feed(http_server), {"Content-Type": "application/rss+xml"}))
    for i in range(PAGES):
        http_server.route(f"/a/{i}.html", article_page)
    http_server.route("/hook", Response(200, b"ok"))
    return http_server


def config_for(tmp_path, server, smtp_port, db_path):
    class OneFeed:
        def feed_urls(self):
            return [server.url("/feed.xml")]

    text = write_config(tmp_path, OneFeed(), server.url("/hook"), smtp_port, db_path)
    return text


def test_sigkill_mid_run_then_rerun_stores_each_article_once_and_alerts_each_once(
        tmp_path, slow_site, smtp_server, db_path, newsmon_env):
    config = config_for(tmp_path, slow_site, smtp_server.port, db_path)
    env = {**newsmon_env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--config", config], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while len([r for r in slow_site.requests if r.path.startswith("/a/")]) < PAGES // 2:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    summary = run_flow(config)
    assert summary.skipped is None, "the kernel released the dead run's lock"
    rows = query(db_path, "SELECT count(*), count(DISTINCT url) FROM articles")
    assert rows == [(PAGES, PAGES)]
    assert query(db_path, "SELECT count(*) FROM alert_queue") == [(0,)]
    matched = query(db_path, "SELECT count(*) FROM alert_matches")[0][0]
    assert matched == PAGES, "every story alerts once, those stored by the killed run included"
    hook_ids = [r.headers["x-newsmon-delivery"] for r in slow_site.hits("/hook")]
    assert len(hook_ids) == len(set(hook_ids)) == PAGES
    run_flow(config)
    assert query(db_path, "SELECT count(*) FROM articles") == [(PAGES,)]
    assert len(slow_site.hits("/hook")) == PAGES


def test_failure_in_the_alert_stage_is_finished_by_the_next_run(tmp_path, slow_site, smtp_server, db_path):
    config = config_for(tmp_path, slow_site, smtp_server.port, db_path)

    def crash(con, settings):
        raise RuntimeError("simulated crash after the articles were committed")

    with pytest.raises(RuntimeError):
        asyncio.run(run_cycle(load_settings(config), Stages(alerts=crash)))
    assert query(db_path, "SELECT count(*) FROM alert_queue") == [(PAGES,)]
    assert query(db_path, "SELECT status FROM runs") == [("failed",)]
    summary = run_flow(config)
    assert summary.articles_new == 0 and summary.alerts.fired == PAGES
    assert len(slow_site.hits("/hook")) == PAGES
