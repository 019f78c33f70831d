"""The `digest` Prefect flow: send what digest channels have been collecting."""
from __future__ import annotations

from prefect import flow

from alerts.channels import DIGEST
from storage.db import open_writer, publish
from storage.lock import writer_lock

from flows.config import load_settings
from flows.delivery import deliver_pending
from flows.summary import AlertReport

DIGEST_LOCK_WAIT_S = 600


@flow(name="digest", log_prints=False)
async def digest_flow(config: str = "newsmon.toml") -> dict:
    """Deliver every pending hit of the digest channels, one message per channel."""
    settings = load_settings(config)
    report = AlertReport()
    names = [name for name, channel in settings.channels.items() if channel.mode == DIGEST]
    # A digest is rare and small: wait for an ingest run in flight instead of skipping a day.
    with writer_lock(settings.database, wait_s=DIGEST_LOCK_WAIT_S):
        con = open_writer(settings.database)
        try:
            deliver_pending(con, settings.channels, names, report)
            publish(con, settings.database)
        finally:
            con.close()
    return {"delivered": report.delivered, "pending": report.pending, "failed": report.failed}
