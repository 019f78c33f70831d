"""Alerts through whole ingest cycles: fixture site, webhook receiver and SMTP server, all real, on 127.0.0.1."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alerts.render import delivery_id
from tests.conftest import _LEAKY_VARS
from tests.helpers import query, run_digest, run_flow
from tests.loopback import Request, Response, SMTPSink, free_port

SEED_PATH = "/actualites/2019/11/syrie-deminage-daesh-deir-ez-zor.html"
LYON_PATH = "/actualites/2019/11/budget-municipal-lyon.html"
SEED_TITLE = "Syrie : la coalition lance une nouvelle opération de déminage contre Daesh près de Deir ez-Zor"


# --- config and flow helpers ----------------------------------------------------------------

def _toml(value) -> str:
    """A TOML value; JSON string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def _table(header: str, values: dict) -> str:
    return f"[{header}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in values.items())


def write_config(tmp_path: Path, db_path: Path, feeds, alerts=(), channels=None) -> str:
    """Write newsmon.toml for one test (feeds are URLs; alerts and channels are key/value dicts)."""
    tables = [_table("storage", {"database": str(db_path)}),
              _table("fetch", {"allow_private_networks": True, "timeout_s": 5, "retries": 0})]
    tables += [_table("[feeds]", {"url": url}) for url in feeds]
    tables += [_table("[alerts]", alert) for alert in alerts]
    tables += [_table(f"channels.{name}", channel) for name, channel in (channels or {}).items()]
    path = tmp_path / "newsmon.toml"
    path.write_text("\n".join(tables), encoding="utf-8")
    return str(path)


def webhook(url: str, **extra) -> dict:
    """A webhook channel that does not retry within a run (runs are what these tests count)."""
    return {"type": "webhook", "url": url, "retries": 0, **extra}


def email(port: int, **extra) -> dict:
    """An email channel for the SMTP server on 127.0.0.1:port, no retries within a run."""
    return {"type": "email", "smtp_host": "127.0.0.1", "smtp_port": port, "from": "newsmon@example.org",
            "to": ["desk@example.org"], "retries": 0, "timeout_s": 5, **extra}


def alert(name: str, query: str, *channels: str, **extra) -> dict:
    return {"name": name, "query": query, "channels": list(channels), **extra}


def alerts_listing(config: str, capsys) -> str:
    """What `newsmon alerts --config F` prints."""
    from flows.cli import main

    capsys.readouterr()
    assert main(["alerts", "--config", config]) == 0
    return capsys.readouterr().out


def rss(*items: tuple[str, str]) -> bytes:
    """A minimal RSS feed whose items are (title, link)."""
    body = "".join(f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid></item>"
                   for title, link in items)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Veille</title>'
            f"<link>http://127.0.0.1/</link><description>test</description>{body}</channel></rss>").encode()


class HookReceiver:
    """A webhook receiver on a port fixed up front, so a run can find it down and a later run find it up."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> "HookReceiver":
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                requests.append(Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                        body, "127.0.0.1"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- channel down, then up ------------------------------------------------------------------

def test_webhook_receiver_down_then_up_gets_the_hit_once_with_a_stable_id(tmp_path, fixture_site, db_path):
    receiver = HookReceiver()  # nothing listens on its port yet
    config = write_config(tmp_path, db_path, fixture_site.feed_urls(),
                          [alert("syria", '"Deir ez-Zor"', "ops")], {"ops": webhook(receiver.url)})

    down = run_flow(config)
    assert down.articles_new >= 3, "a dead receiver does not stop ingestion"
    assert (down.alerts.fired, down.alerts.delivered, down.alerts.pending) == (1, 0, 1)
    [(article_id, status, attempts, error, stored_id)] = query(
        db_path, "SELECT article_id, status, attempts, last_error, delivery_id FROM deliveries")
    assert (status, attempts) == ("pending", 1)
    assert "ConnectError" in error

    with receiver:
        up = run_flow(config)
        again = run_flow(config)
    assert (up.alerts.fired, up.alerts.delivered, up.alerts.pending) == (0, 1, 0)
    assert (again.alerts.delivered, again.alerts.pending) == (0, 0)
    assert len(receiver.requests) == 1, "sent exactly once, and never again once delivered"
    sent = receiver.requests[0]
    assert sent.headers["x-newsmon-delivery"] == stored_id == delivery_id("syria", article_id, "ops")
    assert json.loads(sent.body)["delivery_id"] == stored_id
    assert query(db_path, "SELECT status, attempts, last_error, delivery_id FROM deliveries") == \
        [("sent", 2, None, stored_id)]


def test_smtp_down_then_up_sends_one_message(tmp_path, fixture_site, db_path):
    sink = SMTPSink()  # port chosen; the server only listens once started
    config = write_config(tmp_path, db_path, fixture_site.feed_urls(),
                          [alert("syria", '"Deir ez-Zor"', "desk")], {"desk": email(sink.port)})

    down = run_flow(config)
    assert down.articles_new >= 3 and down.feeds_failed == 0, "a dead mail server does not stop ingestion"
    assert query(db_path, "SELECT count(*) FROM articles WHERE url = ?", [fixture_site.url(SEED_PATH)]) == [(1,)]
    [(status, attempts, error)] = query(db_path, "SELECT status, attempts, last_error FROM deliveries")
    assert (status, attempts) == ("pending", 1) and "refused" in error.lower()

    with sink:
        up = run_flow(config)
        again = run_flow(config)
    assert (up.alerts.delivered, again.alerts.delivered) == (1, 0)
    assert len(sink.messages) == 1
    assert sink.messages[0]["Subject"] == "1 new article: syria (1)"
    assert query(db_path, "SELECT status, attempts, last_error FROM deliveries") == [("sent", 2, None)]


def test_channel_that_keeps_failing_is_given_up_after_max_attempts(tmp_path, fixture_site, http_server, db_path,
                                                                    capsys):
    http_server.route("/hook", Response(500, b"boom"))
    config = write_config(tmp_path, db_path, fixture_site.feed_urls(), [alert("syria", '"Deir ez-Zor"', "ops")],
                          {"ops": webhook(http_server.url("/hook"), max_attempts=2)})

    first, second, third = run_flow(config), run_flow(config), run_flow(config)
    assert (first.alerts.pending, first.alerts.failed) == (1, 0)
    assert (second.alerts.pending, second.alerts.failed) == (0, 1)
    assert (third.alerts.pending, third.alerts.failed, third.alerts.delivered) == (0, 0, 0)
    assert len(http_server.hits("/hook")) == 2, "a failed delivery is not tried again"
    assert query(db_path, "SELECT status, attempts, last_error FROM deliveries") == \
        [("failed", 2, "HTTP 500: boom")]
    assert "ops:failed (2 tries: HTTP 500: boom)" in alerts_listing(config, capsys)


class RefusingMailServer:
    """An aiosmtpd server on 127.0.0.1 that accepts mail for every recipient but one."""

    def __init__(self, refused: str) -> None:
        from aiosmtpd.controller import Controller

        self.refused = refused
        self.delivered_to: list[list[str]] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.refused:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.delivered_to.append(list(envelope.rcpt_tos))
        return "250 OK"

    def __enter__(self) -> "RefusingMailServer":
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()


def test_mail_refused_for_one_recipient_counts_as_sent_and_says_whom_it_missed(tmp_path, fixture_site, db_path,
                                                                               capsys):
    with RefusingMailServer("gone@example.org") as server:
        config = write_config(tmp_path, db_path, fixture_site.feed_urls(), [alert("syria", '"Deir ez-Zor"', "desk")],
                              {"desk": email(server.port, to=["desk@example.org", "gone@example.org"])})
        first, second = run_flow(config), run_flow(config)
    assert (first.alerts.delivered, first.alerts.pending, second.alerts.delivered) == (1, 0, 0)
    assert server.delivered_to == [["desk@example.org"]], "no resend: the other recipient already has it"
    assert query(db_path, "SELECT status, last_error FROM deliveries") == \
        [("sent", "some recipients refused: gone@example.org (550 5.1.1 no such user)")]
    assert "desk:sent (some recipients refused" in alerts_listing(config, capsys)


# --- digest ---------------------------------------------------------------------------------

@pytest.mark.usefixtures("prefect_server")  # the digest runs as its Prefect flow
def test_digest_channel_collects_hits_and_sends_one_grouped_message(tmp_path, fixture_site, smtp_server, db_path):
    config = write_config(tmp_path, db_path, fixture_site.feed_urls(),
                          [alert("syria", '"Deir ez-Zor"', "daily"), alert("oil", "petrol*", "daily"),
                           alert("lyon", "title:Lyon", "daily")],
                          {"daily": email(smtp_server.port, mode="digest", schedule="daily")})

    ingest = run_flow(config)
    assert (ingest.alerts.fired, ingest.alerts.delivered, ingest.alerts.pending) == (3, 0, 3)
    assert smtp_server.messages == [], "digest channels send nothing during ingest"
    assert query(db_path, "SELECT status, attempts, count(*) FROM deliveries GROUP BY ALL") == [("pending", 0, 3)]

    report = run_digest(config)
    assert report == {"delivered": 3, "pending": 0, "failed": 0}
    [message] = smtp_server.messages
    assert message["Subject"] == "2 new articles: lyon (1), oil (1), syria (1)"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # CRLF from the SMTP wire
    html = message.get_body(("html",)).get_content()
    headings = [text.index(f"\n{name} (1)\n") for name in ("lyon", "oil", "syria")]
    assert headings == sorted(headings), "hits grouped under one heading per alert"
    assert text.index("**Lyon**") < headings[1] < text.index("**pétrole**") < headings[2] < text.index(
        "**Deir ez-Zor**"), "each snippet sits under its own alert"
    for term in ("Lyon", "pétrole", "Deir ez-Zor"):
        assert f"<mark>{term}</mark>" in html
    assert SEED_TITLE in text and SEED_TITLE in html

    assert run_digest(config) == {"delivered": 0, "pending": 0, "failed": 0}
    assert len(smtp_server.messages) == 1, "a second digest has nothing left to send"
    assert query(db_path, "SELECT DISTINCT status FROM deliveries") == [("sent",)]


# --- copies, cooldown, max_per_run ----------------------------------------------------------

@pytest.mark.parametrize("partner_later", [False, True], ids=["same-run", "partner-later"])
def test_wire_copies_never_alert(tmp_path, fixture_site, http_server, db_path, partner_later):
    http_server.route("/hook", Response(200, b"ok"))
    site_feeds, partner_feed = fixture_site.feed_urls()[:2], fixture_site.feed_urls()[2:]
    rules = [alert("deir", '"Deir ez-Zor"', "ops"), alert("daesh", "Daesh", "ops")]
    channels = {"ops": webhook(http_server.url("/hook"))}
    if partner_later:
        run_flow(write_config(tmp_path, db_path, site_feeds, rules, channels))
    run_flow(write_config(tmp_path, db_path, site_feeds + partner_feed, rules, channels))

    seed_id = query(db_path, "SELECT id FROM articles WHERE url = ?", [fixture_site.url(SEED_PATH)])[0][0]
    assert query(db_path, "SELECT count(*) FROM articles WHERE duplicate_of = ?", [seed_id]) == [(2,)], \
        "both wire copies were stored, as copies of the seed"
    assert query(db_path, "SELECT alert, article_id FROM alert_matches ORDER BY alert") == \
        [("daesh", seed_id), ("deir", seed_id)]
    assert sorted(json.loads(r.body)["alert"] for r in http_server.hits("/hook")) == ["daesh", "deir"]


def test_max_per_run_holds_back_the_extra_hit(tmp_path, fixture_site, http_server, db_path, capsys):
    http_server.route("/hook", Response(200, b"ok"))
    config = write_config(tmp_path, db_path, fixture_site.feed_urls(),
                          [alert("watch", "Daesh OR Lyon", "ops", max_per_run=1)],
                          {"ops": webhook(http_server.url("/hook"))})

    summary = run_flow(config)
    assert (summary.alerts.fired, summary.alerts.suppressed, summary.alerts.delivered) == (1, 1, 1)
    assert "1 held back (cooldown / max_per_run)" in "\n".join(summary.lines())
    assert len(http_server.hits("/hook")) == 1
    assert query(db_path, "SELECT held, count(*) FROM alert_matches GROUP BY held ORDER BY held") == \
        [(False, 1), (True, 1)]
    assert query(db_path, "SELECT count(*) FROM deliveries") == [(1,)], "a held hit is never queued"
    listing = alerts_listing(config, capsys)
    assert "held back" in listing and "ops:sent" in listing


def test_cooldown_holds_a_later_hit_of_the_same_alert(tmp_path, fixture_site, http_server, db_path):
    http_server.route("/hook", Response(200, b"ok"))
    seed, lyon = ("Syrie", fixture_site.url(SEED_PATH)), ("Lyon", fixture_site.url(LYON_PATH))
    http_server.route("/veille.xml", Response(200, rss(seed), {"Content-Type": "application/rss+xml"}))
    config = write_config(tmp_path, db_path, [http_server.url("/veille.xml")],
                          [alert("watch", "Daesh OR Lyon", "ops", cooldown="1h")],
                          {"ops": webhook(http_server.url("/hook"))})

    first = run_flow(config)
    http_server.route("/veille.xml", Response(200, rss(lyon, seed), {"Content-Type": "application/rss+xml"}))
    second = run_flow(config)

    assert (first.alerts.fired, first.alerts.suppressed) == (1, 0)
    assert (second.articles_new, second.alerts.fired, second.alerts.suppressed) == (1, 0, 1)
    assert len(http_server.hits("/hook")) == 1
    assert query(db_path, """SELECT a.url, m.held FROM alert_matches m JOIN articles a ON a.id = m.article_id
                             ORDER BY a.url""") == [(lyon[1], True), (seed[1], False)]


# --- the rule language on the seed fixture --------------------------------------------------

SEED, LYON, NOTHING = "seed", "lyon", None
RULES = [  # name, query, the article it must match (and no other), a term its snippet must highlight
    ("phrase", '"Deir ez-Zor"', SEED, "Deir ez-Zor"),
    ("near", "Daesh NEAR/10 pétrole", SEED, "pétrole"),
    ("accents-folded", "etats-unis", SEED, "États-Unis"),
    ("prefix", "petrol*", SEED, "pétrole"),
    ("not", "Daesh NOT Lyon", SEED, "Daesh"),
    ("not-excludes", "Syrie NOT Daesh", NOTHING, None),
    ("whole-word", "Daeshville", NOTHING, None),
    ("no-substring", "Dae", NOTHING, None),
    ("and-across-accents", "DAESH AND petrole", SEED, "pétrole"),
    ("english-phrase", '"New York Times"', SEED, "New York Times"),
    ("english-near", "Inherent NEAR/2 Resolve", SEED, "Inherent"),
    ("english-prefix", "military*", SEED, "Military"),
    ("title-only", "title:Lyon", LYON, "Lyon"),
]


@pytest.fixture(scope="module")
def rule_hits(tmp_path_factory) -> dict[str, list[tuple[str, str, str]]]:
    """One ingest run with every rule of RULES: alert -> [(article path, snippet, snippet_html)]."""
    from flows.fixture_site import FixtureSite

    tmp_path = tmp_path_factory.mktemp("rules")
    db_path = tmp_path / "newsmon.duckdb"
    with pytest.MonkeyPatch.context() as env, FixtureSite() as site:
        for name in _LEAKY_VARS:
            env.delenv(name, raising=False)
        config = write_config(tmp_path, db_path, site.feed_urls(), [alert(n, q) for n, q, _, _ in RULES])
        assert run_flow(config).articles_new >= 3
    rows = query(db_path, """SELECT m.alert, a.url, m.snippet, m.snippet_html
                             FROM alert_matches m JOIN articles a ON a.id = m.article_id""")
    found: dict[str, list[tuple[str, str, str]]] = {}
    for name, url, snippet, snippet_html in rows:
        found.setdefault(name, []).append((url.removeprefix(site.base), snippet, snippet_html))
    return found


@pytest.mark.parametrize("name, rule, expected, term", RULES, ids=[r[0] for r in RULES])
def test_rule_through_the_flow(rule_hits, name, rule, expected, term):
    hits = rule_hits.get(name, [])
    if expected is NOTHING:
        assert hits == [], f"{rule!r} must match nothing"
        return
    [(path, snippet, snippet_html)] = hits
    assert path == {SEED: SEED_PATH, LYON: LYON_PATH}[expected]
    assert f"**{term}**" in snippet
    assert f"<mark>{term}</mark>" in snippet_html


# --- a broken rule --------------------------------------------------------------------------

def newsmon_command() -> list[str]:
    """The installed console script next to this interpreter, else the module it runs."""
    script = shutil.which("newsmon", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "flows.cli"]


def test_broken_query_in_config_exits_2_naming_alert_and_column(tmp_path, db_path):
    config = write_config(tmp_path, db_path, ["http://127.0.0.1:9/rss.xml"],
                          [alert("syria", '"Deir ez-Zor"'), alert("oil", "petrol* AND (Syrie")])
    done = subprocess.run([*newsmon_command(), "run", "--config", config], capture_output=True, text=True,
                          cwd=tmp_path, env=dict(os.environ), timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"{config}: alerts[1] (oil).query: unbalanced parenthesis at column 13"]
    assert not db_path.exists(), "nothing runs with a broken config"
