"""Secrets (${VAR} values) never reach what newsmon writes: store, logs, Prefect, errors, `newsmon alerts`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flows.config import ConfigError, load_settings
from alerts.deliver import _redact
from ingest.redact import redact
from tests.helpers import article_html, query, rss
from tests.loopback import Response

FEED_TOKEN = "feedtok9Q7"
HOOK_TOKEN = "hooktok4X2"
HTML = {"Content-Type": "text/html; charset=utf-8"}


def echo(request):
    """A receiver that answers 500 and echoes the request line back, secrets included."""
    return Response(500, f"no route for {request.method} {request.path}".encode())


def test_redaction_replaces_whole_tokens_only():
    assert _redact("Connection reset by peer", ["s"]) == "Connection reset by peer", "delivery errors"
    assert redact("POST /hooks/abc123/x failed", ["abc123"]) == "POST /hooks/***/x failed"
    assert redact("key=a%2Fb", ["a/b"]) == "key=***"


def test_a_secret_in_a_bad_value_is_redacted_from_the_config_error(tmp_path):
    path = tmp_path / "newsmon.toml"
    path.write_text('[[alerts]]\nname = "a"\nquery = "x"\ncooldown = "${TOKEN}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"TOKEN": FEED_TOKEN})
    assert FEED_TOKEN not in str(caught.value) and "***" in str(caught.value)


def test_no_secret_is_written_anywhere_after_runs_that_fail_every_way(tmp_path, db_path, http_server):
    """Feeds that fail (HTTP 500, a redirect loop) and succeed, a page that fails, a hook that fails and
    echoes its URL: the secrets are in none of the output, the tables or the store's files.
    (Log records are redacted when they are made, so Prefect's API log handler gets them redacted too.)"""
    s = http_server
    s.route(f"/good/{FEED_TOKEN}.xml", Response(200, rss([s.url("/a/1.html"), s.url("/a/2.html")]),
                                                 {"Content-Type": "application/rss+xml"}))
    s.route("/a/1.html", Response(200, article_html(1), HTML))
    s.route("/a/2.html", Response(503, b"down"))
    s.route(f"/bad/{FEED_TOKEN}.xml", echo)
    s.route("/loop", Response(302, b"", {"Location": s.url(f"/loop?key={FEED_TOKEN}")}))
    s.route(f"/hooks/{HOOK_TOKEN}", echo)
    config = tmp_path / "newsmon.toml"
    config.write_text(f'''
[storage]
database = "{db_path}"
[fetch]
allow_private_networks = true
retries = 0
[[feeds]]
url = "{s.url('/good/${FEED_TOKEN}.xml')}"
[[feeds]]
url = "{s.url('/bad/${FEED_TOKEN}.xml')}"
[[feeds]]
url = "{s.url('/loop?key=${FEED_TOKEN}')}"
[[alerts]]
name = "syria"
query = '"Deir ez-Zor"'
channels = ["hook"]
feeds = ["{s.url('/good/${FEED_TOKEN}.xml')}"]
[channels.hook]
type = "webhook"
url = "{s.url('/hooks/${HOOK_TOKEN}')}"
retries = 0
''', encoding="utf-8")
    env = {**os.environ, "FEED_TOKEN": FEED_TOKEN, "HOOK_TOKEN": HOOK_TOKEN}
    outputs = []
    for command in (["run"], ["alerts"]):
        proc = subprocess.run([sys.executable, "-m", "flows.cli", *command, "--config", str(config)],
                              capture_output=True, text=True, env=env, timeout=300)
        outputs.append(proc.stdout + proc.stderr)
    assert len(s.hits(f"/hooks/{HOOK_TOKEN}")) == 1, "the hook was really called, and failed"
    assert query(db_path, "SELECT last_error FROM deliveries") == [("HTTP 500: no route for POST /hooks/***",)]
    assert "hook:pending" in outputs[1]

    written = "\n".join(outputs)
    for table in ("feeds", "articles", "fetch_log", "deliveries", "alert_matches", "runs"):
        written += json.dumps(query(db_path, f"SELECT * FROM {table}"), default=str)
    for path in db_path.with_suffix(".lake").rglob("*"):
        if path.is_file():
            written += path.read_bytes().decode("latin-1")
    assert "Encountered" not in outputs[0]
    assert FEED_TOKEN not in written and HOOK_TOKEN not in written
    assert query(db_path, "SELECT count(*) FROM articles WHERE feed_url LIKE '%/good/***.xml'") == [(1,)]
    assert query(db_path, "SELECT feed_url, last_outcome FROM page_retries") == [
        (s.url("/good/***.xml"), "http_error")], "the 503 page waits for the next run, under the redacted feed"
    assert query(db_path, "SELECT count(*) FROM alert_matches") == [(1,)], "the rule's feed scope still matches"
