"""The `digest` Prefect flow: send what digest channels have been collecting."""
from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timedelta, timezone

from prefect import flow

from alerts.channels import DIGEST
from storage.alerts import last_sent_at
from storage.db import open_writer
from storage.lock import writer_lock
from storage.pgkeys import PgKeys

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
    shared = settings.storage.shared
    # A digest is rare and small: wait for an ingest run in flight instead of skipping a day. With a
    # shared catalog there is no such lock: each delivery is claimed in PostgreSQL instead.
    with writer_lock(settings.database, wait_s=DIGEST_LOCK_WAIT_S) if shared is None else nullcontext():
        con = open_writer(settings.database, settings.storage.memory_limit, shared)
        keys = PgKeys(shared.conninfo, "digest") if shared else None
        try:
            names = due_channels(settings, last_sent_at(con), datetime.now(timezone.utc))
            deliver_pending(con, settings.channels, names, report, keys, settings.secrets)
        finally:
            if keys is not None:
                keys.close()
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
