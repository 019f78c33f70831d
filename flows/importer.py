"""`newsmon import FILE...`: backfill articles from Parquet or JSON Lines through the store stage.

Rows take the path fetched articles take: canonical URL, exact and near duplicates (against the
store and within the files), one lake commit per chunk. A URL already stored is skipped, so
importing a file twice adds nothing, and an import killed midway keeps every committed chunk and
finishes on the next try. Parsing, validation and MinHash, the CPU-heavy part, run in worker
processes (one per core) while this process writes the previous chunk.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
import uuid
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ingest.archive import BadRecord, article_from_record, batch_records, features, json_record, jsonl_lines
from ingest.dedup import DedupParams
from storage import runs as run_store
from storage.db import transaction
from storage.imports import UnreadableFile, parquet_batches, parquet_rows
from storage.lock import writer_lock

from flows.alert_feeds import write_alert_feeds
from flows.compaction import compact_in_child
from flows.config import Settings
from flows.delivery import alert_and_deliver
from flows.maintenance import maintain
from flows.persist import Prepared, Store, open_store, prepared_from, store_articles

log = logging.getLogger("newsmon.import")
CHUNK = 2000  # rows per worker task and per lake commit
IN_FLIGHT = 3  # chunks being prepared while one is written: enough to keep every worker busy
# The index is committed every INDEX_COMMIT_CHUNKS chunks, with a page cache that holds a large index:
# its keys are random, so a commit writes nearly every B-tree page they touch, for 2,000 rows or for
# 40,000. A kill loses at most these uncommitted keys, which the next open replays from the lake.
INDEX_COMMIT_CHUNKS = 20
INDEX_CACHE_MB = 1024
SEARCH_HEAP_MB = 256  # the full-text index writer's buffer; it writes a segment each time this fills
# Full-text indexing costs ~0.9 ms of CPU per article, more than anything else an import does: with a
# single indexing thread it falls behind and the import ends waiting for it (docs/BENCHMARKS.md).
SEARCH_THREADS = min(4, os.cpu_count() or 1)
MAX_EXAMPLES = 10  # bad rows reported with their place in the file


@dataclass
class ImportSummary:
    """What an import did."""

    files: int = 0
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    already_stored: int = 0
    bad_rows: int = 0
    bad_examples: list[str] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)
    alerts_fired: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The summary printed at the end."""
        rate = self.rows / self.seconds if self.seconds else 0.0
        out = [f"import: {self.files} file(s), {self.rows} rows in {self.seconds:.1f}s ({rate:,.0f} rows/s): "
               f"{self.imported} new ({self.duplicates} of them duplicates), {self.already_stored} already stored, "
               f"{self.bad_rows} bad"]
        out += [f"  bad row {example}" for example in self.bad_examples]
        if self.bad_rows > len(self.bad_examples):
            out.append(f"  ... and {self.bad_rows - len(self.bad_examples)} more bad rows")
        out += [f"  failed file {failure}" for failure in self.failed_files]
        if self.alerts_fired:
            out.append(f"  alerts: {self.alerts_fired} fired")
        return out


@dataclass(frozen=True)
class Chunk:
    """Rows of one file as a worker receives them: an Arrow batch (Parquet) or raw lines (JSON Lines).

    Rows become Python objects in the worker, so the writing process only reads bytes."""

    name: str  # the file's name, for 'where' in bad-row reports
    first_row: int = 1  # Parquet: the number of the batch's first row
    batch: Any = None
    lines: tuple[tuple[int, str], ...] = ()

    def __len__(self) -> int:
        return self.batch.num_rows if self.batch is not None else len(self.lines)

    def records(self) -> list[tuple[str, Any]]:
        """(where, record or BadRecord) of every row."""
        if self.batch is not None:
            return [(f"{self.name} row {self.first_row + i}", record)
                    for i, record in enumerate(batch_records(self.batch))]
        return [(f"{self.name}:{number}", json_record(line)) for number, line in self.lines]


def prepare_records(chunk: Chunk, params: DedupParams, imported_at: datetime) -> tuple[list[Prepared], list[str]]:
    """Validate a chunk's rows and compute their dedup features; returns (prepared, 'where: why' of bad rows)."""
    articles, norms, bad = [], [], []
    for where, record in chunk.records():
        try:
            article, norm = article_from_record(record, imported_at)
        except BadRecord as exc:
            bad.append(f"{where}: {exc}")
            continue
        articles.append(article)
        norms.append(norm)
    return prepared_from(articles, features(norms, params), params), bad


def import_files(settings: Settings, paths: Sequence[Path], alerts: bool = False, progress=None,
                 workers: int | None = None, wait_s: float = 0.0) -> ImportSummary:
    """Import every file into the store (holding the writer lock); bad rows and files are reported, not fatal.

    A run writing the store is waited for, up to wait_s seconds (then RunInProgress, nothing imported):
    unlike a scheduled run, an import is asked for once and is not repeated by a later one."""
    summary = ImportSummary()
    started = time.monotonic()
    on_wait = lambda holder: log.warning("import: waiting up to %gs: %s", wait_s, holder)  # noqa: E731
    with writer_lock(settings.database, wait_s=wait_s, on_wait=on_wait):
        store = open_store(settings.database, settings.dedup, settings.storage.memory_limit, INDEX_CACHE_MB,
                           search_heap_mb=SEARCH_HEAP_MB, search_threads=SEARCH_THREADS)
        run_id = f"import-{uuid.uuid4().hex[:8]}"
        try:
            with transaction(store.con):
                run_store.start(store.con, run_id, datetime.now(timezone.utc), kind="import")
            with _pool(workers) as pool:
                for path in paths:
                    _import_file(store, pool, path, settings, run_id, alerts, summary, progress)
            if alerts:
                summary.alerts_fired = alert_and_deliver(store.con, settings).fired
                write_alert_feeds(store.con, settings)
            summary.seconds = time.monotonic() - started
            _finish(store, run_id, "completed", summary)
            try:  # the import is committed and recorded: failed upkeep is only retried by the next run
                maintain(store.con, settings.storage.snapshot_retention_days,
                         compactor=lambda: compact_in_child(settings.database, settings.storage.memory_limit))
            except Exception as exc:
                log.warning("maintenance failed, the next run retries it: %s", exc)
        except BaseException:
            _finish(store, run_id, "failed", summary)
            raise
        finally:
            store.close()
            log.info("search index upkeep: %.3fs", store.search_s)
    summary.seconds = time.monotonic() - started
    return summary


def _import_file(store: Store, pool: Executor, path: Path, settings: Settings, run_id: str, alerts: bool,
                 summary: ImportSummary, progress) -> None:
    summary.files += 1
    if progress:
        progress.start(parquet_rows(path) if _is_parquet(path) else None)
    try:
        for n, (prepared, bad, count) in enumerate(_prepared_chunks(pool, _chunks(path), settings.dedup), 1):
            summary.rows += count
            summary.bad_rows += len(bad)
            summary.bad_examples += bad[: max(0, MAX_EXAMPLES - len(summary.bad_examples))]
            result = store_articles(store, prepared, settings.dedup, run_id, queue_alerts=alerts,
                                    commit_index=n % INDEX_COMMIT_CHUNKS == 0)
            if n % INDEX_COMMIT_CHUNKS == 0:
                store.checkpoint_index()  # keeps the index's WAL to one commit window
            summary.imported += len(result.inserted)
            summary.duplicates += len(result.duplicates)
            summary.already_stored += len(prepared) - len(result.inserted)
            if progress:
                progress.advance(count)
    except (OSError, EOFError, UnreadableFile) as exc:  # EOFError: a truncated .gz
        summary.failed_files.append(f"{path}: {exc}")
        log.warning("import of %s stopped: %s", path, exc)
    finally:
        if progress:
            progress.stop()


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _chunks(path: Path) -> Iterator[Chunk]:
    """One file in chunks of about CHUNK rows."""
    if _is_parquet(path):
        first = 1
        for batch in parquet_batches(path, CHUNK):
            if batch.num_rows:
                yield Chunk(path.name, first, batch=batch)
                first += batch.num_rows
        return
    if not path.name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        raise UnreadableFile("unknown format: use .parquet, .jsonl or .jsonl.gz")
    lines: list[tuple[int, str]] = []
    for numbered in jsonl_lines(path):
        lines.append(numbered)
        if len(lines) >= CHUNK:
            yield Chunk(path.name, lines=tuple(lines))
            lines = []
    if lines:
        yield Chunk(path.name, lines=tuple(lines))


def _prepared_chunks(pool: Executor, chunks: Iterable[Chunk], params: DedupParams):
    """(prepared, bad, rows) per chunk, in file order, with up to IN_FLIGHT chunks in the workers."""
    now = datetime.now(timezone.utc)
    waiting: deque[tuple[Future, int]] = deque()
    for chunk in chunks:
        waiting.append((pool.submit(prepare_records, chunk, params, now), len(chunk)))
        if len(waiting) >= IN_FLIGHT:
            future, count = waiting.popleft()
            yield (*future.result(), count)
    while waiting:
        future, count = waiting.popleft()
        yield (*future.result(), count)


def _pool(workers: int | None) -> ProcessPoolExecutor:
    # forkserver: workers start from a clean process, not a fork of this one with its DuckDB threads.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ingest.archive"])
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=context)


def _finish(store: Store, run_id: str, status: str, summary: ImportSummary) -> None:
    try:
        with transaction(store.con):
            run_store.finish(store.con, run_id, status, datetime.now(timezone.utc), _json(summary))
    except Exception:  # after a crash the connection may be unusable; the run row then stays 'running'
        log.debug("could not record import status", exc_info=True)


def _json(summary: ImportSummary) -> str:
    return json.dumps(asdict(summary))
