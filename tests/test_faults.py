"""Faults: crashes, hostile receivers, broken store files, a full disk. Real processes and servers on 127.0.0.1."""
from __future__ import annotations

from dataclasses import replace

import pytest

from flows.config import load_settings
from flows.delivery import deliver_pending
from flows.persist import open_store
from flows.summary import AlertReport
from tests.helpers import article_html, query, rss, run_plain, simple_config
from tests.loopback import Response, SMTPSink

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
