"""Fuzz newsmon's input boundaries with hypothesis, seeded from ../shared/corpus.

    .venv/bin/python bench/fuzz.py                           # every target, 10 minutes each (50 min)
    .venv/bin/python bench/fuzz.py --minutes 1 --target urls

Targets: config (load_settings), rules (the alert rule parser), feeds (parse_feed), extract
(extract_article, then the feed-summary fallback) and urls (canonical_url). Their properties are
the checks of tests/properties.py and their inputs the strategies of tests/strategies.py: the same
as the property tests of `make test`, with every corpus seed up to 1 MB and no limit on examples.

Each target runs as a series of hypothesis runs, each with a fresh random seed, until its minutes
are up. A failure (a broken property, or any exception escaping the entry point) is shrunk by
hypothesis to a minimal example; the target then goes on with its next run. Reported per target:
examples run (shrinking included), distinct outcomes (the labels the checks return) and each
distinct failure with its minimal example. Exit status 1 when any target failed.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis.reporting import with_reporter  # noqa: E402

from tests.properties import TARGETS, Target  # noqa: E402

RUN_SECONDS = 20.0  # aim of one hypothesis run: short enough to stop near the deadline


@dataclass
class Tally:
    """What one target's fuzzing saw."""

    examples: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: dict = field(default_factory=dict)  # (exception type, where raised) -> (runs finding it, example)
    runs: int = 0


def fuzz_target(target: Target, seconds: float, rng: random.Random) -> Tally:
    """Hypothesis runs of `target` with fresh seeds until `seconds` have passed."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    rate = 1.0  # examples per second, learnt from the runs so far
    inputs = target.inputs()
    with tempfile.TemporaryDirectory(prefix=f"newsmon-fuzz-{target.name}-") as folder:
        while time.monotonic() < deadline:
            left = deadline - time.monotonic()
            examples = max(5, min(2000, int(rate * min(RUN_SECONDS, left))))
            started, before = time.monotonic(), tally.examples
            _one_run(target, inputs, examples, rng.getrandbits(64), Path(folder), tally)
            rate = max(0.2, (tally.examples - before) / max(time.monotonic() - started, 1e-3))
    return tally


def _one_run(target: Target, inputs, examples: int, run_seed: int, folder: Path, tally: Tally) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              print_blob=False)
    @seed(run_seed)
    @given(inputs)
    def run(value) -> None:
        label = target.check(value, folder)
        tally.examples += 1
        tally.outcomes[label] += 1

    tally.runs += 1
    try:
        with with_reporter(lambda message: None):  # the minimal example is read from the exception's notes
            run()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, then fuzzing goes on
        for failure in exc.exceptions if isinstance(exc, ExceptionGroup) else [exc]:
            _record(failure, tally)


def _record(exc: BaseException, tally: Tally) -> None:
    """Count one failure; hypothesis has shrunk it and noted the minimal example on the exception."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    # One failure per place it is raised: the same bug reached through other inputs counts once.
    key = (type(exc).__name__, f"{Path(where.filename).name}:{where.lineno} ({where.name})")
    found, _ = tally.failures.get(key, (0, ""))
    message = (str(exc).strip().splitlines() or [""])[0][:300]
    example = "\n".join(getattr(exc, "__notes__", [])).strip()
    example = example if len(example) <= 1500 else example[:1500] + f" … ({len(example):,} characters)"
    tally.failures[key] = (found + 1, f"{message}\n{example}\n  raised at {where.filename}:{where.lineno}")


def report(name: str, minutes: float, tally: Tally) -> str:
    """One target's block of the report."""
    lines = [f"{name}: {tally.examples:,} examples in {minutes:g} min ({tally.runs} hypothesis runs), "
             f"{len(tally.outcomes)} distinct outcomes, {len(tally.failures)} distinct failures"]
    for label, count in tally.outcomes.most_common(8):
        lines.append(f"    {count:>8,}  {label}")
    if len(tally.outcomes) > 8:
        lines.append(f"    {sum(tally.outcomes.values()) - sum(c for _, c in tally.outcomes.most_common(8)):>8,}"
                     f"  ({len(tally.outcomes) - 8} other outcomes)")
    for (kind, where), (found, example) in tally.failures.items():
        lines.append(f"  FAILURE {kind} at {where} (found in {found} run(s))")
        lines.extend("    " + line for line in example.splitlines())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="per target (default 10)")
    parser.add_argument("--target", choices=sorted(TARGETS), action="append",
                        help="fuzz only this target (repeatable); default: all")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run seeds (default: random)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    failed = False
    for name in args.target or list(TARGETS):
        tally = fuzz_target(TARGETS[name], args.minutes * 60, rng)
        print(report(name, args.minutes, tally), flush=True)
        failed |= bool(tally.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
