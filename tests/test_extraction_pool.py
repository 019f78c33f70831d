"""flows/extraction.py: how many processes extract, and when a thread does instead."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from flows.deathsig import PARENT_VARIABLE
from flows.extraction import EXTRACT_PROCESS_MIN_PAGES, extraction_pool, worker_count


def test_one_worker_per_cpu_unless_configured():
    assert worker_count(0) == len(os.sched_getaffinity(0))
    assert worker_count(3) == 3


def test_small_runs_extract_in_a_thread_and_real_runs_in_processes(monkeypatch):
    monkeypatch.setenv(PARENT_VARIABLE, "")  # the pool sets it for its forkserver: restored after the test
    with extraction_pool(EXTRACT_PROCESS_MIN_PAGES - 1) as small:
        assert isinstance(small, ThreadPoolExecutor)
    with extraction_pool(EXTRACT_PROCESS_MIN_PAGES, workers=2) as pool:
        assert isinstance(pool, ProcessPoolExecutor) and pool._max_workers == 2
