"""`newsmon demo`: the bundled fixture site, a local webhook receiver, one real ingest cycle."""
from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from storage.db import store_dir

from flows.config import Settings, load_settings
from flows.fixture_site import FixtureSite

DEMO_SECRET = "demo-secret"
EXAMPLE_QUERIES = (
    "SELECT title, language, published_at, duplicate_of IS NOT NULL AS is_copy FROM articles ORDER BY published_at",
    "SELECT a.title, d.title AS copy_of, a.duplicate_kind, round(a.similarity, 3) AS similarity "
    "FROM articles a JOIN articles d ON a.duplicate_of = d.id",
    "SELECT kind, outcome, count(*) AS n FROM fetch_log GROUP BY ALL ORDER BY kind, outcome",
)


class WebhookReceiver:
    """A local HTTP endpoint that accepts newsmon webhooks and checks their signature."""

    def __init__(self, secret: str) -> None:
        self.received: list[dict] = []
        self.bad_signatures = 0
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                if hmac.compare_digest(expected, self.headers.get("X-Newsmon-Signature", "")):
                    receiver.received.append(json.loads(body))
                else:
                    receiver.bad_signatures += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/newsmon"

    def __enter__(self) -> "WebhookReceiver":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def demo_config(site: FixtureSite, hook: WebhookReceiver, database: Path) -> str:
    """The newsmon.toml the demo runs with."""
    feeds = "\n".join(f'[[feeds]]\nurl = "{url}"\ntags = ["demo"]\n' for url in site.feed_urls())
    return f'''# Written by `newsmon demo`. The fixture site and the webhook receiver only live while the demo runs.
[storage]
database = "{database.resolve()}"

[fetch]
allow_private_networks = true   # the fixture site is on 127.0.0.1
timeout_s = 10

{feeds}
[[alerts]]
name = "syria"
query = '"Deir ez-Zor" OR (Daesh AND pétrole)'
channels = ["ops"]

[[alerts]]
name = "lyon-budget"
query = 'budget AND (Lyon OR municipal*)'
channels = ["ops"]

[channels.ops]
type = "webhook"
url = "{hook.url}"
secret = "{DEMO_SECRET}"
'''


def run_demo(database: Path, run_and_report: Callable[[Settings], int]) -> int:
    """Serve the fixture site, run one cycle into a fresh demo database, print what happened.

    `run_and_report` runs the cycle and prints its summary (the CLI passes its own, so the two
    modules do not import each other)."""
    # The site's port changes every time, so start from a clean store.
    shutil.rmtree(store_dir(database), ignore_errors=True)
    database.parent.mkdir(parents=True, exist_ok=True)
    config_file = database.with_suffix(".toml")
    with FixtureSite() as site, WebhookReceiver(DEMO_SECRET) as hook:
        config_file.write_text(demo_config(site, hook, database), encoding="utf-8")
        print(f"fixture site: {site.base}  (feeds: {', '.join(site.feed_urls())})")
        status = run_and_report(load_settings(config_file))
    print(f"webhook receiver: {len(hook.received)} signed alert(s) received"
          + (f", {hook.bad_signatures} with a bad signature" if hook.bad_signatures else ""))
    for payload in hook.received:
        print(f"  [{payload.get('alert')}] {payload.get('article', {}).get('title')}")
    print("\nTry these (read-only, on the last committed snapshot):")
    for query in EXAMPLE_QUERIES:
        print(f'  {own_command()} sql --config {shlex.quote(str(config_file))} "{query}"')
    return status


def own_command() -> str:
    """How to call this newsmon again from the current folder: `newsmon` when that is the one on PATH,
    else the path it was started by (`.venv/bin/newsmon`), else `python -m flows.cli`."""
    started_as = Path(sys.argv[0])
    if started_as.name != "newsmon" or not started_as.is_file():
        return f"{shlex.quote(sys.executable)} -m flows.cli"
    on_path = shutil.which("newsmon")
    if on_path and Path(on_path).resolve() == started_as.resolve():
        return "newsmon"
    return shlex.quote(str(started_as))
