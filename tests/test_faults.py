"""Faults: crashes, hostile receivers, broken store files, a full disk. Real processes and servers on 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from alerts.channels import EmailChannel, WebhookChannel
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


def test_a_resent_batch_has_the_same_message_id_whatever_order_its_hits_come_in():
    """Pending hits published at the same time (or undated) have no fixed order in the store."""
    from alerts.render import email_message
    from flows.delivery import email_batch_key

    hits = [AlertHit(alert="syria", article_id=i, url=f"https://example.org/{i}", title="T",
                     feed_url="https://example.org/f", published_at=None, matched_terms=("syria",), snippet="s",
                     snippet_html="s") for i in range(5)]
    channel = EmailChannel(name="desk", smtp_host="127.0.0.1", sender="n@example.org", to=("d@example.org",))
    first = email_message(hits, channel, email_batch_key(hits, "desk"))
    again = email_message(hits[::-1], channel, email_batch_key(hits[::-1], "desk"))
    assert first["Message-ID"] == again["Message-ID"]
    assert email_batch_key(hits[:4], "desk") != email_batch_key(hits, "desk")


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


# --- a full disk ---------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs the test fills up; skipped, with the reason printed, where mounting is impossible."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        reason = f"full-disk test skipped: cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})"
        print(reason)
        pytest.skip(reason)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path, keep_free: int) -> None:
    """Fill the file system of `path` until only `keep_free` bytes are left."""
    free = shutil.disk_usage(path).free - keep_free
    with open(path / "filler", "wb") as out:
        while free > 0:
            chunk = min(free, 1 << 20)
            out.write(os.urandom(chunk))
            free -= chunk


def store_files(lake) -> set[str]:
    return {str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file()}


def test_a_full_disk_fails_the_run_cleanly_and_the_next_run_finishes(small_disk, tmp_path, http_server):
    db_path = small_disk / "newsmon.duckdb"
    pages = 60
    for i in range(pages):
        http_server.route(f"/a/{i}.html", Response(200, article_html(i, words=3000), HTML))
    links = [http_server.url(f"/a/{i}.html") for i in range(pages)]

    def feed_then_fill(request):
        if len(http_server.hits("/feed.xml")) == 2:  # the second run: the disk fills up as it starts
            fill(small_disk, keep_free=256 * 1024)
        return Response(200, rss(links[:10] if len(http_server.hits("/feed.xml")) == 1 else links), RSS)

    http_server.route("/feed.xml", feed_then_fill)
    config = simple_config(tmp_path, db_path, feeds=[http_server.url("/feed.xml")])
    run_plain(config)  # 10 articles on a disk with room
    with pytest.raises(Exception) as failure:
        run_plain(config)
    lake = db_path.with_suffix(".lake")
    assert "disk is full" in str(failure.value) or "No space left" in str(failure.value)
    (small_disk / "filler").unlink()
    # Never 'completed'. 'running' when even the failure could not be written (the disk had no room
    # left for it): the next run marks it failed before it starts.
    assert query(db_path, "SELECT status FROM runs ORDER BY started_at") in ([("completed",), ("failed",)],
                                                                             [("completed",), ("running",)])
    summary = run_plain(config)
    assert summary.articles_new + 10 == pages or query(db_path, "SELECT count(*) FROM articles") == [(pages,)]
    assert query(db_path, "SELECT count(*), count(DISTINCT url) FROM articles") == [(pages, pages)]
    assert query(db_path, "SELECT status FROM runs ORDER BY started_at") == [
        ("completed",), ("failed",), ("completed",)]
    with sqlite3.connect(lake / "catalog.sqlite") as catalog:  # every file any kept snapshot refers to
        known = {Path(r[0]).name for r in catalog.execute(
            "SELECT path FROM ducklake_data_file UNION ALL SELECT path FROM ducklake_delete_file")}
    leftovers = {f for f in store_files(lake) if f.startswith("data/") and Path(f).name not in known}
    assert leftovers == set(), "no debris of the failed run outlives the next successful one"
    assert not [f for f in store_files(lake) if f.startswith("tmp/") or f.endswith(".new")]
