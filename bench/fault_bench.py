"""kill -9 at seeded points of a 200-article cycle, then the next run: does the store end up as an
uninterrupted run's, with only the documented delivery repeats?

    .venv/bin/python bench/fault_bench.py                      # 50 trials, seed 1
    .venv/bin/python bench/fault_bench.py --trials 10 --seed 7

The harness is tests/killtrials.py (the same one tests/test_kill_trials.py runs for 10 trials):
a fixture site, webhook and SMTP receivers on 127.0.0.1, a reference run, then per trial a
`newsmon run` SIGKILLed (its whole process group) in fetch, extract, store, deliver or publish,
or after a seeded delay, and the next run to completion. Prints one line per trial and a table
per stage; exits 1 when any trial broke the promise.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.killtrials import TABLE_COLUMNS, run_trials, stage_table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # The completing runs run in this process: their warnings (indexes caught up, runs marked failed)
    # are what a kill should cause, not news.
    logging.getLogger("newsmon").setLevel(logging.ERROR)
    started = time.monotonic()
    print(f"fault bench: {args.trials} kill -9 trials of a 200-article cycle, seed {args.seed}", flush=True)
    reference, results = run_trials(args.seed, args.trials, on_result=lambda r: print(r.line(), flush=True))
    p = reference.profile
    print(f"\nreference run: {p.pages} page requests, {p.article_commits} article commits, "
          f"{p.webhooks} webhooks, {p.mails} email(s), extraction worker {p.extract_ticks} CPU ticks, "
          f"{p.seconds:.1f}s")
    print_table(TABLE_COLUMNS, stage_table(results))
    print(f"(bench wall {time.monotonic() - started:.0f}s)")
    return 1 if any(r.problems for r in results) else 0


def print_table(columns, rows) -> None:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    sys.exit(main())
