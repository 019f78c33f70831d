"""The `sharded-ingest` Prefect flow: N shard runs on the `newsmon` work pool, then upkeep once.

Each shard run is a flow run of the `ingest/ingest-shard` deployment with `shard="K/N"`, on the
pool's `shards` queue; N process workers on N machines, each started with `--limit 1`, take one
each. They write the same lake through its PostgreSQL catalog (docs/SCALING.md). When all have
ended, this flow compacts the lake and expires old snapshots once, instead of once per worker.
"""
from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.flow_runs import wait_for_flow_run

from flows.config import load_settings
from flows.upkeep import run_maintenance

SHARD_DEPLOYMENT = "ingest/ingest-shard"


@flow(name="sharded-ingest", log_prints=False)
async def sharded_ingest_flow(config: str = "newsmon.toml", shards: int = 2, deployment: str = SHARD_DEPLOYMENT,
                              timeout_s: int = 3600) -> dict:
    """Run every shard of the feeds as its own deployment run, wait for all, then maintain the lake once."""
    settings = load_settings(config)  # a bad config fails here, before N runs are started
    if settings.storage.shared is None:
        raise ValueError(f"{config}: sharded runs need [storage] catalog = \"postgres:...\" (several writers)")
    if not 1 <= shards <= 10_000:
        raise ValueError(f"shards must be between 1 and 10000, got {shards}")
    logger = get_run_logger()
    # timeout=0: create the run and return at once (awaited here: run_deployment is async in an async flow).
    runs = [await run_deployment(deployment, parameters={"config": config, "shard": f"{k}/{shards}"}, timeout=0)
            for k in range(1, shards + 1)]
    logger.info("started %d shard runs of %s", len(runs), deployment)
    finished = await asyncio.gather(*(wait_for_flow_run(run.id, timeout=timeout_s) for run in runs))
    states = {f"{k}/{shards}": run.state.type.value if run.state else "UNKNOWN"
              for k, run in enumerate(finished, 1)}
    # Upkeep runs even after a failed shard: what the others committed is worth compacting.
    report = await asyncio.to_thread(run_maintenance, settings)
    if report is not None:
        logger.info("maintenance: %d files merged, %d snapshots expired, %d files deleted",
                    report.files_merged, report.snapshots_expired, report.files_deleted)
    failed = {shard: state for shard, state in states.items() if state != "COMPLETED"}
    if failed:
        raise RuntimeError(f"shard runs did not complete: {failed}")
    return {"shards": states, "maintenance": None if report is None else report.__dict__}
