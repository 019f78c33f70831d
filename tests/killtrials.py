"""Seeded kill -9 trials of a 200-article cycle: the harness behind tests/test_kill_trials.py and
bench/fault_bench.py.

One uninterrupted cycle gives the reference. Then each trial starts the real `newsmon run` from the
same empty store, in a process group of its own, SIGKILLs the group at a seeded point of a stage
(tests/killpoints.py), checks that no process of it is left, runs the next cycle to completion in
this process (what `newsmon run` does without a Prefect API: flows.cycle.run_cycle), and compares the
store and what the receivers got with the reference (tests/killcheck.py).

With `reuse_ingest`, webhook, email and publish kills start from a copy of the store taken as the
reference's alert stage began (every article stored, every story queued: what a kill at that moment
leaves). The killed run then has no page to read and goes straight to its alert stage, which halves
the cost of those trials; the benchmark runs the full cycle every time.

Stores live on tmpfs when there is one: a SIGKILL loses nothing the kernel already holds, whatever the
file system, and a shared disk's fsyncs would cost most of the trial time.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.killcheck import StoreDigest, digest, mail_problems, store_problems, webhook_problems
from tests.killpoints import (POLL_S, RUN_TIMEOUT_S, KillPoint, Profile, Progress, Watch, commits_since, follow,
                              orphans_of, plan)
from tests.killsite import PAGES, KillSite, atom_dir, database

REPO = Path(__file__).resolve().parents[1]
STAGES = ("start", "fetch", "extract", "store", "deliver", "publish")
LATE_KINDS = ("webhook", "email", "publish")


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run: its store digest and the counts kill points are placed against."""

    digest: StoreDigest
    profile: Profile


@dataclass
class TrialResult:
    """One trial: where it killed, how far the run got, what the next run left that breaks the promise."""

    number: int
    point: KillPoint
    where: str  # the kill point in counts, e.g. 'store 5/8 +34ms'
    killed: bool
    progress: Progress
    problems: list[str] = field(default_factory=list)
    webhook_repeats: int = 0
    mail_repeats: int = 0

    @property
    def stage(self) -> str:
        """The stage the kill landed in: its trigger's, or for a delay the last stage the run had begun."""
        if self.point.kind == "delay" or not self.killed:
            return self.progress.reached()
        return {"webhook": "deliver", "email": "deliver"}.get(self.point.kind, self.point.kind)

    def line(self) -> str:
        """One line for the report."""
        state = "killed in" if self.killed else "ended before the kill point, in"
        verdict = "ok" if not self.problems else "; ".join(self.problems)
        return (f"trial {self.number:>2}: {self.where:<20} {state} {self.stage:<8} "
                f"repeats: webhook {self.webhook_repeats}, email {self.mail_repeats}: {verdict}")


class Trials:
    """The site, one empty store to copy, the reference run; then trial after trial."""

    def __init__(self, site: KillSite, workdir: Path, reuse_ingest: bool = False) -> None:
        self.site, self.workdir, self.reuse_ingest = site, workdir, reuse_ingest
        self.config = site.config(workdir)
        self.template = workdir / "template"
        self.ingested = workdir / "ingested"
        self.reference: Reference | None = None

    def prepare(self) -> Reference:
        """Build the empty store once (each run starts from a copy) and run the reference cycle."""
        from storage.db import open_writer

        store = database(self.workdir).parent
        store.mkdir(parents=True)
        open_writer(database(self.workdir)).close()
        # The catalog records the data folder's absolute path: every run uses this same folder, from a copy.
        store.rename(self.template)
        self._fresh_store(self.template)
        watch = self._reference_run()
        found = digest(database(self.workdir))
        problems = self._reference_problems(found)
        feeds = list(atom_dir(self.workdir).glob("*.xml"))
        if not feeds:
            problems.append("no alert feed file was written")
        if problems:
            raise RuntimeError(f"the reference run is not a valid reference: {problems}")
        p = watch.progress
        upkeep = commits_since(watch.catalog, feeds[0].stat().st_mtime)
        self.reference = Reference(found, Profile(p.pages, max(p.extract_ticks, 1), p.article_commits, p.webhooks,
                                                  p.mails, upkeep, p.seconds))
        return self.reference

    def _reference_run(self) -> Watch:
        """The uninterrupted cycle, in this process like the completing runs, counted by a polling thread."""
        from flows.config import load_settings
        from flows.cycle import Stages, run_cycle
        from flows.delivery import alert_and_deliver

        def copy_then_alert(con, settings, **kwargs):
            if self.reuse_ingest:
                shutil.copytree(database(self.workdir).parent, self.ingested)
            return alert_and_deliver(con, settings, **kwargs)

        watch = Watch(self.workdir, root=os.getpid())
        stop = threading.Event()

        def poll_until_stopped() -> None:
            while not stop.wait(POLL_S):
                watch.poll()

        poller = threading.Thread(target=poll_until_stopped, daemon=True)
        poller.start()
        try:
            summary = asyncio.run(run_cycle(load_settings(self.config), Stages(alerts=copy_then_alert)))
        finally:
            stop.set()
            poller.join()
        watch.finish(self.site)
        if summary.skipped:
            raise RuntimeError(f"the reference run was skipped: {summary.skipped}")
        return watch

    def _reference_problems(self, found: StoreDigest) -> list[str]:
        problems = [f"{len(found.articles)} articles, expected {PAGES}"] if len(found.articles) != PAGES else []
        problems += [f"delivery not sent: {d}" for d in found.deliveries if d[3] != "sent"]
        problems += webhook_problems(found, self.site.webhooks, allowed=0)[0]
        problems += mail_problems(found, self.site.mails, allowed=0)[0]
        return problems + store_problems(found, found)

    def run(self, number: int, point: KillPoint) -> TrialResult:
        """Kill a run at `point`, run the next cycle to completion, compare with the reference."""
        profile = self.reference.profile
        self._fresh_store(self.ingested if self.reuse_ingest and point.kind in LATE_KINDS else self.template)
        proc = self._start()
        watch = Watch(self.workdir, proc, point, profile)
        self.site.listener = watch
        try:
            ended = follow(proc, watch)
        finally:
            self.site.listener = None
        result = TrialResult(number, point, point.describe(profile), watch.killed, watch.finish(self.site))
        if not ended:
            result.problems.append(f"the run neither died nor ended in {RUN_TIMEOUT_S}s")
        elif not watch.killed and proc.returncode != 0:
            result.problems.append(f"the run failed by itself (exit {proc.returncode}): {self._log()[-300:]}")
        survivors = orphans_of(proc.pid)
        if survivors:
            result.problems.append(f"processes outlived the killed run: {survivors}")
        self._complete(result)
        return result

    def _complete(self, result: TrialResult) -> None:
        """The next cycle, to completion; then the store and the receivers against the reference."""
        from flows.config import load_settings
        from flows.cycle import run_cycle

        try:
            summary = asyncio.run(run_cycle(load_settings(self.config)))
        except Exception as exc:  # the promise is that it completes: record why it did not
            result.problems.append(f"the next run failed: {type(exc).__name__}: {exc}")
            return
        if summary.skipped:
            result.problems.append(f"the next run was skipped: {summary.skipped}")
        expected = self.reference.digest
        result.problems += store_problems(expected, digest(database(self.workdir)))
        hook, result.webhook_repeats = webhook_problems(expected, self.site.webhooks)
        mail, result.mail_repeats = mail_problems(expected, self.site.mails)
        result.problems += hook + mail

    def _fresh_store(self, template: Path) -> None:
        store = database(self.workdir).parent
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(template, store)
        self.site.reset()

    def _start(self) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the stages bare, as without a server
        with open(self.workdir / "run.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--config", str(self.config)],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _log(self) -> str:
        return (self.workdir / "run.log").read_text(errors="replace")


def scratch_root() -> Path:
    """tmpfs when there is one (see the module docstring), else the temp dir."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def run_trials(seed: int, trials: int, on_result: Callable[[TrialResult], None] | None = None,
               reuse_ingest: bool = False) -> tuple[Reference, list[TrialResult]]:
    """The whole experiment: site, reference, then `trials` seeded kills, each followed by a completing run."""
    workdir = Path(tempfile.mkdtemp(prefix="newsmon-kill-", dir=scratch_root()))
    results: list[TrialResult] = []
    try:
        with KillSite() as site:
            harness = Trials(site, workdir, reuse_ingest)
            reference = harness.prepare()
            for number, point in enumerate(plan(seed, trials), 1):
                results.append(harness.run(number, point))
                if on_result:
                    on_result(results[-1])
        return reference, results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# "start": killed before the first page request (opening the store, reading the feeds).
# "promise held": the next run completed, the store equals the reference, the receivers saw each hit
# with at most the documented repeat.
TABLE_COLUMNS = ("stage", "trials", "by delay", "killed", "promise held", "webhook repeats", "email repeats")


def stage_table(results: list[TrialResult]) -> list[tuple]:
    """One row per stage a kill landed in (pipeline order), then the total; columns as TABLE_COLUMNS."""
    rows = []
    for stage in STAGES + ("total",):
        mine = [r for r in results if stage in (r.stage, "total")]
        if mine:
            rows.append((stage, len(mine), sum(r.point.kind == "delay" for r in mine), sum(r.killed for r in mine),
                         sum(not r.problems for r in mine), sum(r.webhook_repeats for r in mine),
                         sum(r.mail_repeats for r in mine)))
    return rows
