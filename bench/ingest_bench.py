"""End-to-end ingest benchmark: `newsmon run` over real news pages on loopback, against trafilatura alone.

    .venv/bin/python bench/ingest_bench.py            # 181 corpus pages x 10 = 1,810 pages in 37 feeds
    .venv/bin/python bench/ingest_bench.py --quick    # 60 pages x 3 = 180 pages in 37 feeds

Measured in one invocation, in this order, so that ratios compare figures taken side by side:
    ceiling (before)  plain `trafilatura.extract(html_bytes)` with default options, one process, a plain
                      loop over exactly the bytes the site serves; only the extract() calls are timed
    run               the real `newsmon run --config F` as a subprocess, into an empty store: wall time
                      from spawn to exit (start-up included), memory and CPU of every process of its tree
    no-op run         `newsmon run` again on the same store: every feed answers 304
    profile           the same pages into another empty store through run_cycle with timers on its stages
                      (same code path as `newsmon run` without Prefect), its tree sampled the same way
    ceiling (after)   as before; the ratio uses the mean of the two
The site (bench/ingest_site.py) runs in its own process. Memory: see bench/proc_tree.py.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest_site import (ARTICLES, FEEDS, MARKER, Site, child_env, corpus_pages, feed_urls,  # noqa: E402
                         served_bodies)
from proc_tree import TreeSample, TreeSampler  # noqa: E402

# Targets (docs/BENCHMARKS.md, "Ingest (end to end)").
TARGET_RATIO = 1.0  # newsmon run pages/s, start-up included, over the ceiling's pages/s
TARGET_NOOP_S = 3.0
TARGET_RSS_MB = 500.0


@dataclass(frozen=True)
class Plan:
    pages: int  # corpus pages (the first N by id)
    copies: int  # each under its own URL


FULL = Plan(pages=181, copies=10)
QUICK = Plan(pages=60, copies=3)


@dataclass
class Run:
    """One child process: wall time, its process tree, and what it reported or stored."""

    label: str
    wall_s: float
    tree: TreeSample
    report: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- child processes


def run_child(label: str, cmd: list[str], env: dict[str, str], log: Path) -> Run:
    """Run cmd to completion with its tree sampled; a failure stops the benchmark with the child's log."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    sampler = TreeSampler(proc.pid)
    proc.wait()
    wall = time.perf_counter() - started
    tree = sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{label}: exit {proc.returncode}\n{log.read_text()[-3000:]}")
    return Run(label, wall, tree)


def write_config(work: Path, name: str, urls: Sequence[str], database: Path) -> Path:
    """A newsmon.toml for `urls`; loopback needs allow_private_networks, robots.txt is respected (default)."""
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\ntags = ["bench"]\n\n' for u in urls)
    path = work / f"{name}.toml"
    path.write_text(f'[storage]\ndatabase = "{database}"\n\n[fetch]\nallow_private_networks = true\n\n{feeds}',
                    encoding="utf-8")
    return path


def newsmon_run(label: str, config: Path, env: dict[str, str], work: Path) -> Run:
    """The real command, `newsmon run --config F`; what it stored is read back from the store."""
    exe = Path(sys.executable).with_name("newsmon")
    run = run_child(label, [str(exe), "run", "--config", str(config)], env, work / f"{label}.log")
    run.report = last_run(Path(re.search(r'database = "([^"]+)"', config.read_text()).group(1)))
    return run


def last_run(database: Path) -> dict:
    """The newest ingest run of a store: its cycle time and what it stored."""
    from storage.db import open_reader

    con = open_reader(database)
    try:
        started, finished, summary = con.execute("""SELECT started_at, finished_at, summary FROM runs
            WHERE kind = 'ingest' ORDER BY started_at DESC LIMIT 1""").fetchone()
        stored, linked, marked, extracted = con.execute(f"""SELECT count(*), count(duplicate_of),
            count(*) FILTER (WHERE text LIKE '%{MARKER}%'), count(*) FILTER (WHERE extraction = 'trafilatura')
            FROM articles""").fetchone()
    finally:
        con.close()
    summary = json.loads(summary)
    return {"cycle_s": (finished - started).total_seconds(), "new": summary["articles_new"],
            "failed": summary["articles_failed"], "not_modified": summary["feeds_not_modified"],
            "stored": stored, "linked": linked, "marked": marked, "extracted": extracted}


def child_command(kind: str, *args: str) -> list[str]:
    return [sys.executable, __file__, "--child", kind, *args]


# ---------------------------------------------------------------------------- the ceiling (a child)


def child_ceiling(spec: str, out: str) -> None:
    """Plain trafilatura.extract() with default options over the served bytes, one process, one loop."""
    plan = json.loads(spec)
    t0 = time.perf_counter()
    import trafilatura

    imported = time.perf_counter() - t0
    pages = corpus_pages(plan["pages"])
    wall = cpu = 0.0
    count = 0
    for body in served_bodies(pages, range(plan["copies"])):
        w, c = time.perf_counter(), time.process_time()
        trafilatura.extract(body)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
        count += 1
    Path(out).write_text(json.dumps({"pages": count, "wall_s": wall, "cpu_s": cpu, "import_s": imported}))


# ---------------------------------------------------------------------------- the profile (a child)


class Timers:
    """Wall and CPU seconds spent in wrapped functions, summed per name."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def _add(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def sync(self, name: str, fn: Callable) -> Callable:
        """CPU of the calling thread (the store runs in a thread of its own)."""
        def wrapper(*args, **kwargs):
            w, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - w, time.thread_time() - c)
        return wrapper

    def coro(self, name: str, fn: Callable) -> Callable:
        """CPU of the whole process (all threads) over the call."""
        async def wrapper(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - w, time.process_time() - c)
        return wrapper


STAGES = ("open store", "feeds (fetch + parse)", "pages (fetch, extract, store)", "  of which store batches",
          "alerts", "maintenance")


def child_profile(config: str, out: str) -> None:
    """run_cycle(settings, Stages()) as `newsmon run` calls it without Prefect, with timers on its stages."""
    t0, c0 = time.perf_counter(), time.process_time()
    from flows import cycle
    from flows.config import load_settings

    imported = time.perf_counter() - t0
    timers = Timers()
    cycle.open_store = timers.sync("open store", cycle.open_store)
    cycle._read_feeds = timers.coro("feeds (fetch + parse)", cycle._read_feeds)
    cycle._read_pages = timers.coro("pages (fetch, extract, store)", cycle._read_pages)
    cycle._maintain = timers.sync("maintenance", cycle._maintain)
    base = cycle.Stages()
    stages = cycle.Stages(fetch_feed=base.fetch_feed, fetch_and_extract=base.fetch_and_extract,
                          store=timers.sync("  of which store batches", base.store),
                          alerts=timers.sync("alerts", base.alerts))
    settings = load_settings(config)
    w, c = time.perf_counter(), time.process_time()
    summary = asyncio.run(cycle.run_cycle(settings, stages))
    timers._add("cycle", time.perf_counter() - w, time.process_time() - c)
    Path(out).write_text(json.dumps({"import_s": imported, "wall": timers.wall, "cpu": timers.cpu,
                                     "new": summary.articles_new, "total_s": time.perf_counter() - t0,
                                     "total_cpu_s": time.process_time() - c0}))


# ---------------------------------------------------------------------------- the benchmark


class Bench:
    """Runs the measurements in a fixed order and keeps what they gave."""

    def __init__(self, plan: Plan, work: Path) -> None:
        self.plan, self.work = plan, work
        self.env = {**child_env(), "PREFECT_HOME": str(work / "prefect-home")}
        self.site = Site({"news": (list(range(plan.copies)), plan.pages)}, plan.pages)
        self.ceilings: list[dict] = []
        self.runs: dict[str, Run] = {}
        self.noop_requests: dict[str, int] = {}
        self.loads: list[float] = []

    def config(self, name: str) -> Path:
        database = self.work / name / "newsmon.duckdb"
        return write_config(self.work, name, feed_urls(self.site.base, "news"), database)

    def ceiling(self) -> None:
        out = self.work / f"ceiling{len(self.ceilings)}.json"
        spec = json.dumps({"pages": self.plan.pages, "copies": self.plan.copies})
        run = run_child("ceiling", child_command("ceiling", spec, str(out)), self.env, self.work / "ceiling.log")
        self.ceilings.append({**json.loads(out.read_text()), "process_s": run.wall_s})
        self._note("ceiling", run.wall_s)

    def run_all(self) -> None:
        self.ceiling()
        store = self.config("run")
        self.runs["run"] = newsmon_run("newsmon run", store, self.env, self.work)
        self._note("newsmon run", self.runs["run"].wall_s)
        before = self.site.stats()
        self.runs["noop"] = newsmon_run("no-op run", store, self.env, self.work)
        self.noop_requests = {k: v - before[k] for k, v in self.site.stats().items()}
        self._note("no-op run", self.runs["noop"].wall_s)
        out = self.work / "profile.json"
        run = run_child("profile", child_command("profile", str(self.config("profile")), str(out)), self.env,
                        self.work / "profile.log")
        run.report = json.loads(out.read_text())
        self.runs["profile"] = run
        self._note("profile", run.wall_s)
        self.ceiling()

    def _note(self, what: str, seconds: float) -> None:
        self.loads.append(os.getloadavg()[0])
        print(f"  .. {what}: {seconds:.1f} s (load {self.loads[-1]:.1f})", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.site.close()


# ---------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def ceiling_rate(b: Bench) -> float:
    """Pages/s of the ceiling: mean of the runs before and after."""
    return statistics.mean(c["pages"] / c["wall_s"] for c in b.ceilings)


def report(b: Bench, elapsed: float, command: str) -> str:
    """The printed report: every ratio is between figures of this invocation."""
    p = b.plan
    lines = [f"newsmon ingest benchmark: {p.pages} corpus pages x {p.copies} = {p.pages * p.copies} pages "
             f"in {FEEDS} RSS feeds over loopback; {os.cpu_count()} CPUs; "
             f"load average {min(b.loads):.1f}-{max(b.loads):.1f} during the run",
             f"command: {command}   (took {elapsed:.0f} s)", ""]
    for section in (_ceiling_lines, _run_lines, _targets_lines, _process_lines, _stage_lines):
        lines += section(b) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _ceiling_lines(b: Bench) -> list[str]:
    out = ["ceiling: trafilatura.extract(html_bytes), default options, one process, a plain loop over the same "
           "bytes the site serves (only the extract() calls timed)"]
    for when, c in zip(("before", "after"), b.ceilings):
        out.append(f"   {when:<6} {c['pages']} pages: {c['pages'] / c['wall_s']:6.1f} pages/s wall, "
                   f"{1000 * c['cpu_s'] / c['pages']:5.1f} ms CPU/page ({c['wall_s']:.1f} s; "
                   f"process with its imports {c['process_s']:.1f} s)")
    out.append(f"   mean   {ceiling_rate(b):6.1f} pages/s")
    return out


def _run_lines(b: Bench) -> list[str]:
    rate = ceiling_rate(b)
    out = ["runs: wall from spawn to exit (start-up included); memory of the whole process tree",
           "   run            new  stored  copies linked  wall s  cycle s  pages/s  ratio  peak tree PSS  peak tree RSS  "
           "sum of VmHWM  processes"]
    for key in ("run", "noop"):
        r = b.runs[key]
        d = r.report
        pages_s = d["new"] / r.wall_s
        out.append(f"   {r.label:<13} {d['new']:>4}  {d['stored']:>6}  {d['linked']:>13}  {r.wall_s:>6.1f}  "
                   f"{d['cycle_s']:>7.1f}  {pages_s:>7.1f}  {pages_s / rate if d['new'] else 0:>5.2f}  "
                   f"{r.tree.peak_pss_mb:>10.0f} MB  {r.tree.peak_rss_mb:>10.0f} MB  {r.tree.hwm_sum_mb:>9.0f} MB  {len(r.tree.procs):>9}")
    req = b.noop_requests
    out.append(f"   no-op run requests: {req['feed_304']} feeds 304, {req['feed_200']} feeds 200, {req['page']} pages, "
               f"{req['robots']} robots.txt")
    return out


def _targets_lines(b: Bench) -> list[str]:
    run, noop = b.runs["run"], b.runs["noop"]
    ratio = run.report["new"] / run.wall_s / ceiling_rate(b)
    pss = max(run.tree.peak_pss_mb, noop.tree.peak_pss_mb)
    hwm = max(run.tree.hwm_sum_mb, noop.tree.hwm_sum_mb)
    return ["targets",
            f"   end to end >= {TARGET_RATIO:.1f}x the ceiling: {ratio:.2f}x  {verdict(ratio >= TARGET_RATIO)}",
            f"   no-op run <= {TARGET_NOOP_S:.0f} s wall: {noop.wall_s:.1f} s  {verdict(noop.wall_s <= TARGET_NOOP_S)}",
            f"   peak memory of the tree <= {TARGET_RSS_MB:.0f} MB (sampled sum of PSS): {pss:.0f} MB  "
            f"{verdict(pss <= TARGET_RSS_MB)}; sum of per-process VmHWM (upper bound, shared pages counted "
            f"per process): {hwm:.0f} MB"]


def _process_lines(b: Bench) -> list[str]:
    out = ["where the time goes, per process (CPU and seconds alive from /proc, sampled every 50 ms)",
           "   run            process             count  CPU s   CPU ms/page  alive s  VmHWM MB (each)"]
    for key in ("run", "noop", "profile"):
        r = b.runs[key]
        new = r.report.get("new") or 0
        for role, (n, cpu, alive) in sorted(r.tree.by_role().items()):
            per = f"{1000 * cpu / new:11.1f}" if new else f"{'-':>11}"
            hwm = ", ".join(f"{p.hwm_mb:.0f}" for p in r.tree.procs.values() if p.role == role)
            out.append(f"   {r.label:<14} {role:<18} {n:>5}  {cpu:6.1f}  {per}  {alive:7.1f}  {hwm}")
    c = b.ceilings[-1]
    out.append(f"   (ceiling: {1000 * c['cpu_s'] / c['pages']:.1f} ms CPU/page for extract() alone)")
    return out


def _stage_lines(b: Bench) -> list[str]:
    r = b.runs["profile"].report
    n = r["new"]
    out = [f"where the time goes, per stage of the main process (profile: run_cycle with timers, {n} pages;",
           "   CPU of all the main process's threads, except store batches: their own thread's CPU)",
           f"   {'stage':<32}  wall s  CPU s  CPU ms/page",
           f"   {'imports (flows.cycle)':<32}  {r['import_s']:6.2f}"]
    for name in STAGES:
        if name in r["wall"]:
            out.append(f"   {name:<32}  {r['wall'][name]:6.2f}  {r['cpu'][name]:5.2f}  "
                       f"{1000 * r['cpu'][name] / max(n, 1):11.1f}")
    out.append(f"   {'cycle':<32}  {r['wall']['cycle']:6.2f}  {r['cpu']['cycle']:5.2f}  "
               f"{1000 * r['cpu']['cycle'] / max(n, 1):11.1f}")
    out.append(f"   {'process (imports to exit)':<32}  {b.runs['profile'].wall_s:6.2f}  {r['total_cpu_s']:5.2f}")
    return out


# ---------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.pages} pages x {QUICK.copies}")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        {"ceiling": child_ceiling, "profile": child_profile}[args.child[0]](*args.child[1:])
        return 0
    if not ARTICLES.is_dir():
        sys.exit(f"corpus not found: {ARTICLES}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="newsmon-ingest-bench-") as tmp:
        bench = Bench(QUICK if args.quick else FULL, Path(tmp))
        try:
            bench.run_all()
        finally:
            bench.close()
        command = ".venv/bin/python bench/ingest_bench.py" + (" --quick" if args.quick else "")
        print(report(bench, time.perf_counter() - started, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
