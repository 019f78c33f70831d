"""The `ingest` Prefect flow: thin tasks around the stage functions of flows/cycle.py."""
from __future__ import annotations

import inspect

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import cycle
from flows.config import load_settings
from flows.delivery import alert_and_deliver
from flows.progress import terminal_progress
from flows.sharding import parse_shard
from flows.summary import RunSummary

# Stage inputs are live objects (HTTP client, DB connection): nothing to cache or persist.
_TASK = {"cache_policy": NO_CACHE, "persist_result": False}

TASK_STAGES = cycle.Stages(
    fetch_feed=task(cycle.fetch_feed, name="fetch-feed", task_run_name="feed {source.url}", **_TASK),
    fetch_and_extract=task(cycle.fetch_and_extract, name="fetch-and-extract", **_TASK),
    store=task(cycle.store_batch, name="store-batch", **_TASK),
    alerts=task(alert_and_deliver, name="alerts", **_TASK),
)


@flow(name="ingest", log_prints=False)
async def ingest_flow(config: str = "newsmon.toml", shard: str | None = None) -> RunSummary:
    """One ingest cycle for the feeds in `config` (only shard "K/N" of them if given); returns the run summary."""
    settings = load_settings(config)
    logger = get_run_logger()
    with terminal_progress() as progress:
        summary = await cycle.run_cycle(settings, TASK_STAGES, progress=progress, logger=logger,
                                        shard=parse_shard(shard) if shard else None)
    for line in summary.lines():
        logger.info(line)
    await _publish_artifact(summary)
    return summary


async def _publish_artifact(summary: RunSummary) -> None:
    result = create_markdown_artifact(key="newsmon-ingest-summary", markdown=summary.markdown(),
                                      description="newsmon ingest run summary")
    if inspect.isawaitable(result):  # Prefect's sync/async dual API returns a coroutine inside async flows
        await result
