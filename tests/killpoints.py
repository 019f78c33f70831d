"""Where a kill trial kills `newsmon run`, and how it sees the run get there.

Each kind of point lands in one stage of the cycle:

    fetch    when the site sees the N-th page request (killed before it answers)
    extract  when the extraction worker has used a seeded share of the CPU it used in the reference
    store    0-50 ms after the N-th lake commit that inserted articles: between that commit and the
             dedup-index and full-text commits that follow it
    webhook  when the N-th webhook POST reaches the receiver: before it answers, or 1-50 ms after
             (the run then has its 2xx and is marking the delivery)
    email    when the message reaches the SMTP receiver: before its 250, or 1-50 ms after
    publish  0-50 ms after the k-th lake commit that follows the alert feed file's appearance: feed
             files, upkeep (flush, merge, expiry, file deletion), closing the indexes
    delay    a seeded share of the reference run's length (counted under the stage the run reached)

A point is a share of the reference run's count of its event, so a plan depends on the seed only.
"""
from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.killsite import KillSite, atom_dir, database

KINDS = ("fetch", "extract", "store", "webhook", "email", "publish", "delay")
POLL_S = 0.01
RUN_TIMEOUT_S = 300  # a run that neither dies nor ends by then fails its trial instead of hanging the suite


@dataclass(frozen=True)
class Profile:
    """Counts of the reference run, against which kill points are placed."""

    pages: int
    extract_ticks: int  # CPU clock ticks the extraction worker used
    article_commits: int
    webhooks: int
    mails: int
    publish_commits: int  # lake commits after the alert feed file appeared (upkeep)
    seconds: float

    def total(self, kind: str) -> int:
        """The reference's count of a kind's event (publish: its commits, and the feed file itself)."""
        return {"fetch": self.pages, "extract": self.extract_ticks, "store": self.article_commits,
                "webhook": self.webhooks, "email": self.mails, "publish": self.publish_commits + 1}[kind]


@dataclass(frozen=True)
class KillPoint:
    """Where a trial kills the run: `at` is a share (0-1] of the reference's count of the kind's event."""

    kind: str  # one of KINDS
    at: float
    late_s: float = 0.0  # wait this long after the event (0: at once, in the receiver before it answers)

    def threshold(self, profile: Profile) -> int:
        """The count at which the kill fires (publish: commits after the feed file, from 0)."""
        if self.kind == "publish":
            return min(profile.publish_commits, math.floor(self.at * profile.total(self.kind)))
        return max(1, math.ceil(self.at * profile.total(self.kind)))

    def describe(self, profile: Profile) -> str:
        """E.g. 'webhook 3/7 +28ms', 'delay 4.45s'."""
        if self.kind == "delay":
            return f"delay {self.at * profile.seconds:.2f}s"
        late = f" +{self.late_s * 1000:.0f}ms" if self.late_s else ""
        total = profile.publish_commits if self.kind == "publish" else profile.total(self.kind)
        return f"{self.kind} {self.threshold(profile)}/{total}{late}"


def plan(seed: int, trials: int) -> list[KillPoint]:
    """The kill points of a seed: every kind once (in a seeded order) before any kind repeats."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    while len(kinds) < trials:
        kinds.append(rng.choice(KINDS))
    return [_point(kind, rng) for kind in kinds[:trials]]


def _point(kind: str, rng: random.Random) -> KillPoint:
    share = 1.0 - rng.random()  # (0, 1]
    if kind in ("store", "publish"):
        return KillPoint(kind, share if kind == "store" else share * 0.999, rng.uniform(0, 0.05))
    if kind in ("webhook", "email"):
        return KillPoint(kind, share, rng.choice([0.0, rng.uniform(0.001, 0.05)]))
    if kind == "extract":  # not past 80%: a worker that runs a little faster than the reference's still gets there
        return KillPoint(kind, 0.01 + share * 0.79)
    if kind == "delay":
        return KillPoint(kind, 0.05 + share * 0.85)
    return KillPoint(kind, share * (1 - 1 / 200))  # fetch: page requests 1 to 199 of 200


@dataclass(frozen=True)
class Progress:
    """How far a run got when it was killed (or ended)."""

    pages: int
    extract_ticks: int
    article_commits: int
    webhooks: int
    mails: int
    published: bool
    seconds: float

    def reached(self) -> str:
        """The last stage the run had begun (stages overlap: pages are fetched while others are stored)."""
        for stage, begun in (("publish", self.published), ("deliver", self.webhooks or self.mails),
                             ("store", self.article_commits), ("extract", self.extract_ticks),
                             ("fetch", self.pages)):
            if begun:
                return stage
        return "start"


class Watch:
    """Follows one run: counts what it does, and kills its process group once at the kill point.

    The servers call page_requested / webhook_received / mail_received from their threads; follow()
    calls poll() every POLL_S for what only the disk and /proc show."""

    def __init__(self, workdir: Path, proc: subprocess.Popen | None = None, point: KillPoint | None = None,
                 profile: Profile | None = None, root: int | None = None) -> None:
        """No point: only count (the reference run). `root`: the process whose forkserver runs extraction.

        Without a point nothing reads the catalog while the run is going (see commits_since)."""
        self.workdir, self.proc, self.point = workdir, proc, point
        self.root = root if root is not None else proc.pid
        self.threshold = point.threshold(profile) if point and point.kind != "delay" else 0
        self.delay_s = point.at * profile.seconds if point and point.kind == "delay" else 0.0
        self.catalog = database(workdir).with_suffix(".lake") / "catalog.sqlite"
        self.started = time.monotonic()
        self.ended = self.started
        self.killed = False
        self.due: float | None = None  # when a kill waiting late_s fires
        self.extract_ticks = 0
        self.worker: int | None = None
        self.published_at: int | None = None  # the catalog's snapshot id when the alert feed file appeared
        self.progress: Progress | None = None
        self._lock = threading.Lock()

    def page_requested(self, count: int) -> None:
        self._event("fetch", count)

    def webhook_received(self, count: int) -> None:
        self._event("webhook", count)

    def mail_received(self, count: int) -> None:
        self._event("email", count)

    def _event(self, kind: str, count: int) -> None:
        if self.point is None or self.point.kind != kind or count != self.threshold:
            return
        if self.point.late_s:
            self.due = time.monotonic() + self.point.late_s
        else:
            self.kill()

    def poll(self) -> None:
        """Check what the servers cannot see: worker CPU, lake commits, the feed file, the clock."""
        now = time.monotonic()
        kind = self.point.kind if self.point else None
        if kind in ("extract", None):
            self.extract_ticks = max(self.extract_ticks, self._worker_ticks())
            if kind == "extract" and self.extract_ticks >= self.threshold:
                self.kill()
        if kind == "publish" and self.published_at is None and any(atom_dir(self.workdir).glob("*.xml")):
            self.published_at = latest_snapshot(self.catalog)
        if self.due is None and self._reached(kind):
            self.due = now + self.point.late_s
        if kind == "delay" and now - self.started >= self.delay_s:
            self.kill()
        if self.due is not None and now >= self.due:
            self.kill()

    def _reached(self, kind: str | None) -> bool:
        if kind == "store":
            return article_commits(self.catalog) >= self.threshold
        if kind == "publish" and self.published_at is not None:
            return latest_snapshot(self.catalog) - self.published_at >= self.threshold
        return False

    def kill(self) -> None:
        """SIGKILL the run's whole process group (once, and never after it ended)."""
        with self._lock:
            if self.killed or self.proc is None or self.proc.poll() is not None:
                return
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.killed = True

    def finish(self, site: KillSite) -> Progress:
        """Record how far the run got (once it has exited)."""
        self.ended = time.monotonic()
        self.progress = Progress(site.page_requests, self.extract_ticks, article_commits(self.catalog),
                                 len(site.webhooks), len(site.mails), any(atom_dir(self.workdir).glob("*.xml")),
                                 round(self.ended - self.started, 3))
        return self.progress

    def _worker_ticks(self) -> int:
        """CPU ticks of the extraction worker: the child of the run's forkserver (flows/cycle.py)."""
        if self.worker is None:
            forkserver = next((p for p in children(self.root) if b"forkserver" in cmdline(p)), None)
            self.worker = next(iter(children(forkserver)), None) if forkserver else None
        return cpu_ticks(self.worker) if self.worker else 0


def follow(proc: subprocess.Popen, watch: Watch) -> bool:
    """Poll until the run exits; kill it at RUN_TIMEOUT_S. False when it had to be stopped that way."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while proc.poll() is None:
        watch.poll()
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return False
        time.sleep(POLL_S)
    return True


# -- the catalog, read beside the writer (WAL: readers never block it) ---------------------------------

def _catalog_rows(catalog: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute(sql).fetchall()
        con.close()
        return rows
    except sqlite3.Error:  # not created yet, or a writer mid-checkpoint: the next poll sees it
        return []


def latest_snapshot(catalog: Path) -> int:
    """The newest snapshot id: one per lake commit."""
    rows = _catalog_rows(catalog, "SELECT max(snapshot_id) FROM ducklake_snapshot")
    return rows[0][0] or 0 if rows else 0


def commits_since(catalog: Path, moment: float) -> int:
    """Lake commits made after `moment` (epoch seconds). Read once the run is over: this process must not
    read a catalog with Python's sqlite3 while its own DuckDB has it open (storage/damage.py says why)."""
    rows = _catalog_rows(catalog, "SELECT snapshot_time FROM ducklake_snapshot")
    return sum(1 for (at,) in rows if datetime.fromisoformat(at).timestamp() > moment)


def article_commits(catalog: Path) -> int:
    """Lake commits so far that inserted articles (from the catalog's record of each snapshot's changes)."""
    table = _catalog_rows(catalog, "SELECT table_id FROM ducklake_table WHERE table_name = 'articles' "
                                   "AND end_snapshot IS NULL")
    if not table:
        return 0
    marks = {f"inserted_into_table:{table[0][0]}", f"inlined_insert:{table[0][0]}"}
    changes = _catalog_rows(catalog, "SELECT changes_made FROM ducklake_snapshot_changes")
    return sum(1 for (c,) in changes if marks & set((c or "").split(",")))


# -- processes, from /proc ---------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """Direct children of a process (each of its threads lists those it forked)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            pass
    return found


def cmdline(pid: int) -> bytes:
    """A process's command line, arguments joined by spaces."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def cpu_ticks(pid: int) -> int:
    """User + system CPU of a process, in clock ticks."""
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def session_members(sid: int) -> list[int]:
    """Live processes of a session: what is left of a killed run started in a session of its own."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[3] == str(sid) and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def orphans_of(sid: int, wait_s: float = 10.0) -> list[str]:
    """Command lines of a killed run's processes still alive after wait_s (then killed, so none leaks)."""
    deadline = time.monotonic() + wait_s
    while (left := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    found = [cmdline(p)[:120].decode(errors="replace") for p in left]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return found
