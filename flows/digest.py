"""The `digest` Prefect flow: send what digest channels have been collecting."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow

from alerts.channels import DIGEST
from storage.alerts import last_sent_at
from storage.db import open_writer
from storage.lock import writer_lock

from flows.config import load_settings
from flows.delivery import deliver_pending
from flows.summary import AlertReport

DIGEST_LOCK_WAIT_S = 600
PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1)}
# Cron runs drift by seconds to minutes: a digest due "daily" must not slip a whole day for that.
SLACK = timedelta(minutes=10)


@flow(name="digest", log_prints=False)
async def digest_flow(config: str = "newsmon.toml") -> dict:
    """Deliver every pending hit of the digest channels, one message per channel."""
    settings = load_settings(config)
    report = AlertReport()
    # A digest is rare and small: wait for an ingest run in flight instead of skipping a day.
    with writer_lock(settings.database, wait_s=DIGEST_LOCK_WAIT_S):
        con = open_writer(settings.database, settings.storage.memory_limit)
        try:
            names = due_channels(settings, last_sent_at(con), datetime.now(timezone.utc))
            deliver_pending(con, settings.channels, names, report, settings.secrets)
        finally:
            con.close()
    return {"delivered": report.delivered, "pending": report.pending, "failed": report.failed}


def due_channels(settings, last_sent: dict[str, datetime], now: datetime) -> list[str]:
    """Digest channels whose period (hourly/daily/weekly) has passed since their last message."""
    due = []
    for name, channel in settings.channels.items():
        if channel.mode != DIGEST:
            continue
        previous = last_sent.get(name)
        if previous is None or now - previous >= PERIODS[channel.schedule] - SLACK:
            due.append(name)
    return due
