"""Faults: crashes, hostile receivers, broken store files, a full disk. Real processes and servers on 127.0.0.1."""
from __future__ import annotations

from dataclasses import replace

import pytest

from alerts.channels import WebhookChannel
from alerts.deliver import http_client, send_webhook
from flows.config import load_settings
from flows.delivery import deliver_pending
from flows.persist import open_store
from flows.summary import AlertReport
from tests.helpers import article_html, query, rss, run_plain, simple_config
from ingest.models import AlertHit
from tests.loopback import HostileReceiver, Response, SMTPSink

HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml"}


def mail_config(tmp_path, db_path, server, smtp_port, pages: int) -> str:
    for i in range(pages):
        server.route(f"/a/{i}.html", Response(200, article_html(i), HTML))
    server.route("/feed.xml", Response(200, rss([server.url(f"/a/{i}.html") for i in range(pages)]), RSS))
    return simple_config(tmp_path, db_path, feeds=[server.url("/feed.xml")], extra=f'''
[[alerts]]
name = "syria"
query = '"Deir ez-Zor"'
channels = ["desk"]

[channels.desk]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
from = "newsmon@example.org"
to = ["desk@example.org"]
retries = 0
''')


def test_an_email_batch_is_marked_in_one_commit(tmp_path, db_path, http_server):
    """A kill between the SMTP server's 250 and the marks leaves every hit of the message pending or none:
    the resend then forms the same batch, with the same Message-ID."""
    with SMTPSink(data_replies=["451 try later"]) as down:
        config = mail_config(tmp_path, db_path, http_server, down.port, pages=12)
        summary = run_plain(config)
        assert summary.alerts.pending == 12 and down.messages == []
    with SMTPSink() as up:
        settings = load_settings(config)
        settings = replace(settings, channels={"desk": replace(settings.channels["desk"], smtp_port=up.port)})
        store = open_store(settings.database, settings.dedup)
        try:
            before = store.con.execute("SELECT max(snapshot_id) FROM newsmon.snapshots()").fetchone()[0]
            deliver_pending(store.con, settings.channels, ["desk"], AlertReport())
            after = store.con.execute("SELECT max(snapshot_id) FROM newsmon.snapshots()").fetchone()[0]
        finally:
            store.close()
        assert len(up.messages) == 1
    assert after - before == 1, "all 12 marks are one snapshot, so no crash can leave a part of them"
    assert query(db_path, "SELECT status, count(*) FROM deliveries GROUP BY ALL") == [("sent", 12)]


# --- hostile receivers -------------------------------------------------------------------------

HIT = AlertHit(alert="syria", article_id=1, url="https://example.org/a", title="T", feed_url="https://example.org/f",
               published_at=None, matched_terms=("syria",), snippet="s", snippet_html="s")


def test_a_trickling_receiver_cannot_hold_a_delivery_past_its_timeout():
    """One header byte every 50 ms keeps httpx's per-read timeout happy forever; the deadline is per attempt."""
    with HostileReceiver("trickle", interval_s=0.05, trickle_bytes=200) as receiver, http_client() as client:
        outcome = send_webhook(client, WebhookChannel(name="h", url=receiver.url, timeout_s=0.5, retries=1),
                               HIT, sleep=lambda s: None)
    assert not outcome.ok and "timeout after 0.5s" in outcome.error
    assert outcome.attempts == 2 and receiver.connections == 2
    assert receiver.bytes_sent < 200 * 2, "each attempt was cut off before the receiver finished its answer"


@pytest.mark.parametrize("mode, error", [("hang", "timeout after 0.3s"), ("reset", "Error")])
def test_hanging_and_resetting_receivers_are_transient_failures(mode, error):
    with HostileReceiver(mode) as receiver, http_client() as client:
        outcome = send_webhook(client, WebhookChannel(name="h", url=receiver.url, timeout_s=0.3, retries=2),
                               HIT, sleep=lambda s: None)
    assert not outcome.ok and error in outcome.error
    assert outcome.attempts == 3 == receiver.connections, "transient: retried within the run"


@pytest.mark.parametrize("status, headers, attempts", [(500, {}, 3), (429, {"Retry-After": "1"}, 3),
                                                       (429, {"Retry-After": "3600"}, 1)])
def test_500_and_429_are_retried_and_a_long_retry_after_waits_for_the_next_run(http_server, status, headers,
                                                                                attempts):
    http_server.route("/hook", Response(status, b"busy", headers))
    waits: list[float] = []
    with http_client() as client:
        outcome = send_webhook(client, WebhookChannel(name="h", url=http_server.url("/hook"), retries=2),
                               HIT, sleep=waits.append)
    assert not outcome.ok and f"HTTP {status}" in outcome.error
    assert outcome.attempts == attempts == len(http_server.hits("/hook"))
    if "Retry-After" in headers and attempts > 1:
        assert waits == [1.0, 1.0], "the receiver's Retry-After replaces the backoff"
