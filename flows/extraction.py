"""Where pages are extracted: a pool of worker processes, one per CPU, or a thread for a handful of pages.

Extraction is CPU-bound Python (trafilatura parses and walks each page's tree). In worker processes
it uses every core instead of sharing one interpreter lock with downloads and the store; the main
process keeps the event loop and DuckDB and never imports trafilatura at all.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from ingest.dedup import DedupParams
from ingest.models import Article, FetchedPage

from flows.deathsig import PARENT_VARIABLE, die_with_parent

# Starting the pool costs about a second (forkserver, trafilatura's import): it pays off beyond a few dozen pages.
EXTRACT_PROCESS_MIN_PAGES = 50


def extract_page(page: FetchedPage, params: DedupParams) -> tuple[Article, tuple[int, ...] | None] | None:
    """The page's article and MinHash signature (ingest.extract.extract_signed), in whichever process runs it."""
    # Imported on first call: the workers have it preloaded, and the main process only needs it for small runs.
    from ingest.extract import extract_signed

    return extract_signed(page, params)


def worker_count(workers: int = 0) -> int:
    """Extraction processes to start: `workers`, or one per CPU this process may run on when it is 0."""
    if workers > 0:
        return workers
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def extraction_pool(pages: int, workers: int = 0) -> Executor:
    """A process pool of worker_count(workers) for real runs; one thread for fewer than EXTRACT_PROCESS_MIN_PAGES."""
    if pages < EXTRACT_PROCESS_MIN_PAGES:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract")
    # forkserver: workers fork from a clean server process, never from this one with its threads.
    # The server and every worker die with their parent (flows/deathsig.py), even on SIGKILL.
    context = multiprocessing.get_context("forkserver")
    os.environ[PARENT_VARIABLE] = str(os.getpid())  # the forkserver inherits it: a parent gone early is seen
    context.set_forkserver_preload(["flows.deathsig_preload", "flows.extraction_preload"])
    return ProcessPoolExecutor(max_workers=worker_count(workers), mp_context=context, initializer=die_with_parent)
