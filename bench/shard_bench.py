"""Sharded ingest benchmark: 1, 2 and 4 concurrent `newsmon run --shard K/N` processes on one lake
with a PostgreSQL catalog.

    .venv/bin/python bench/shard_bench.py                      # 2,000 feeds x 10 entries, 50 ms, 1/2/4 shards
    .venv/bin/python bench/shard_bench.py --feeds 60 --entries 5 --shards 1,3   # a quick look

A generated site serves `--feeds` RSS feeds of `--entries` distinct article pages each on
127.0.0.1, every response delayed by `--latency-ms`. It runs in its own process (a thread per
connection, a deep listen queue), so it never competes with a run for the GIL; its CPU time is
reported to show it is not the bottleneck. A throwaway PostgreSQL cluster (tests/postgres.py)
holds one fresh database per configuration, and each configuration writes a fresh data folder.

For each shard count the N processes start together; wall time runs from the first start to the
last exit (process start-up included, as on a real cycle). Reported per configuration: wall,
articles stored (checked in the lake: feeds x entries, each URL once), articles/s, feeds/s,
speed-up and scaling efficiency against one unsharded process, CPU seconds of the newsmon
processes (in all and per article) and of the site, lake commits run again after a conflict,
and the machine's load average: on a shared machine the wall figures depend on it, the CPU per
article much less.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.site import serve_site  # noqa: E402
from flows.config import load_settings  # noqa: E402
from storage.db import open_reader  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
_WORDS = [a + b for a in "ba ce di fo gu la me ni po ru sa te vi zo ka".split() for b in "n r s l m t".split()]


def _page(feed: int, entry: int) -> bytes:
    rng = random.Random(feed * 100_000 + entry)
    text = " ".join(rng.choice(_WORDS) for _ in range(160))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Item {feed}.{entry}</title></head>'
            f"<body><article><h1>Item {feed}.{entry}</h1><p>{text}.</p></article></body></html>").encode()


def _feed(base: str, feed: int, entries: int) -> bytes:
    items = "".join(f"<item><title>Item {feed}.{e}</title><link>{base}/a/{feed}/{e}.html</link>"
                    f"<pubDate>Mon, 25 Nov 2019 {e % 24:02d}:{feed % 60:02d}:00 +0000</pubDate></item>"
                    for e in range(entries))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>F{feed}</title>{items}</channel></rss>'.encode()


def serve(port_out, entries: int, latency_s: float) -> None:
    """The generated site: /f/<n>.xml feeds and /a/<feed>/<entry>.html pages, each answer delayed."""
    serve_site(port_out, lambda base, feed: _feed(base, feed, entries), _page, latency_s)


def config(directory: Path, conninfo: str, base: str, feeds: int) -> Path:
    """One machine's config: the shared catalog, its own data folder, 32 requests in flight."""
    directory.mkdir(parents=True)
    listed = "".join(f'[[feeds]]\nurl = "{base}/f/{n}.xml"\n\n' for n in range(feeds))
    path = directory / "newsmon.toml"
    path.write_text(f'''[storage]
database = "{directory / 'local' / 'newsmon.duckdb'}"
catalog = "postgres:{conninfo}"
data_path = "{directory / 'lake'}"

[fetch]
allow_private_networks = true
respect_robots = false
concurrency = 32
per_host = 32
timeout_s = 30

{listed}''', encoding="utf-8")
    return path


@dataclass
class Result:
    """One configuration: N shard processes over the whole site."""

    shards: int
    wall: float
    articles: int  # rows in the lake after the run
    distinct_urls: int
    cpu_s: float  # user + system time of the newsmon processes and their extraction pools
    site_cpu_s: float
    retries: int
    failed: list[int]
    load: tuple[float, float]  # 1-minute load average before and after


def _stat(pid: int | str) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (ppid is [1], utime [11], stime [12], start [19])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_of(pid: int) -> float:
    """User + system CPU seconds a live process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeCPU:
    """CPU seconds of some processes and all their descendants, sampled from /proc every half second.

    A run's extraction pool lives in a forkserver that outlives the run and is never waited for,
    so the rusage of waited-for children would leave out most of the extraction. Each process is
    known by (pid, start time), so a recycled pid is never counted; what a process spends in its
    last half second before it exits may be missed.
    """

    def __init__(self, roots: list[int]) -> None:
        self._tracked = {(pid, _stat(pid)[19]) for pid in roots}
        self._cpu: dict[tuple[int, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        """Stop sampling (after one last sample); the CPU seconds of every process seen."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self._cpu.values()) / os.sysconf("SC_CLK_TCK")

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def _sample(self) -> None:
        live: dict[int, tuple[int, str, int]] = {}  # pid -> (ppid, start, ticks)
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    f = _stat(name)
                except OSError:
                    continue  # gone meanwhile
                live[int(name)] = (int(f[1]), f[19], int(f[11]) + int(f[12]))
        tracked_pids = {pid for pid, (_, start, _) in live.items() if (pid, start) in self._tracked}
        grew = True
        while grew:  # add every live descendant of a tracked process
            new = {pid for pid, (ppid, _, _) in live.items() if ppid in tracked_pids} - tracked_pids
            tracked_pids |= new
            grew = bool(new)
        for pid in tracked_pids:
            _, start, ticks = live[pid]
            self._tracked.add((pid, start))
            self._cpu[(pid, start)] = max(self._cpu.get((pid, start), 0), ticks)


def stored(config_path: Path) -> tuple[int, int]:
    """(articles, distinct URLs) in the lake, read through its PostgreSQL catalog."""
    settings = load_settings(config_path)
    con = open_reader(settings.database, shared=settings.storage.shared)
    try:
        return con.execute("SELECT count(*), count(DISTINCT url) FROM articles").fetchone()
    finally:
        con.close()


def run(config_path: Path, shards: int, logs: Path, site_pid: int) -> Result:
    """All shard processes at once; wall from the first start to the last exit."""
    load_before, site_before = os.getloadavg()[0], cpu_of(site_pid)
    started = time.monotonic()
    procs = []
    for k in range(1, shards + 1):
        args = [NEWSMON, "run", "--config", str(config_path)] + (["--shard", f"{k}/{shards}"] if shards > 1 else [])
        with open(logs / f"{shards}-{k}.log", "wb") as log:
            procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
    tree = TreeCPU([p.pid for p in procs])
    for p in procs:
        p.wait()
    wall = time.monotonic() - started
    cpu, site_cpu, load_after = tree.stop(), cpu_of(site_pid) - site_before, os.getloadavg()[0]
    text = "".join((logs / f"{shards}-{k}.log").read_text() for k in range(1, shards + 1))
    retries = sum(int(m) for m in re.findall(r"^lake:\s+(\d+) commit", text, re.M))
    articles, distinct = stored(config_path)
    return Result(shards, wall, articles, distinct, cpu, site_cpu, retries,
                  [p.returncode for p in procs if p.returncode], (load_before, load_after))


def table(results: list[Result], feeds: int) -> list[str]:
    """The markdown table: throughput and scaling against the first (one-process) configuration."""
    one = results[0]
    lines = ["| processes | wall | articles stored | articles/s | feeds/s | speed-up | efficiency "
             "| CPU s (newsmon) | CPU ms / article | CPU s (site) | commit retries | load avg before → after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        speedup = one.wall / r.wall
        lines.append(f"| {r.shards} | {r.wall:.1f} s | {r.articles} ({r.distinct_urls} URLs) | "
                     f"{r.articles / r.wall:.1f} | {feeds / r.wall:.1f} | {speedup:.2f}x | "
                     f"{speedup * one.shards / r.shards:.0%} | {r.cpu_s:.0f} | {1000 * r.cpu_s / max(r.articles, 1):.1f} | "
                     f"{r.site_cpu_s:.0f} | {r.retries} | {r.load[0]:.1f} → {r.load[1]:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--shards", default="1,2,4")
    args = parser.parse_args()
    port_out = multiprocessing.Queue()
    site = multiprocessing.Process(target=serve, args=(port_out, args.entries, args.latency_ms / 1000), daemon=True)
    site.start()
    base = f"http://127.0.0.1:{port_out.get(timeout=30)}"
    expected = args.feeds * args.entries
    results = []
    try:
        with PostgresCluster() as cluster, tempfile.TemporaryDirectory(prefix="newsmon-shard-bench-") as tmp:
            for shards in [int(s) for s in args.shards.split(",")]:
                path = config(Path(tmp) / f"s{shards}", cluster.new_database(), base, args.feeds)
                r = run(path, shards, Path(tmp), site.pid)
                results.append(r)
                ok = r.articles == r.distinct_urls == expected and not r.failed
                print(f"{shards} process(es): {r.wall:.1f} s, {r.articles} articles ({r.distinct_urls} URLs, "
                      f"expected {expected}), {r.articles / r.wall:.1f} articles/s, CPU {r.cpu_s:.0f} s, "
                      f"site CPU {r.site_cpu_s:.0f} s, {r.retries} commit retries"
                      + ("" if ok else f"  WRONG: failed exits {r.failed}"), flush=True)
    finally:
        site.terminate()
        site.join()
    cores = os.cpu_count()
    print(f"\n{args.feeds} feeds x {args.entries} entries ({expected} articles), {args.latency_ms:.0f} ms per "
          f"response, {cores} cores: with more processes than cores, extra shards overlap waiting on "
          f"latency; they cannot add CPU.")
    print("\n".join(table(results, args.feeds)))


if __name__ == "__main__":
    main()
