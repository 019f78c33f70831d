"""Soak: many feeds through many cycles; newsmon's memory, file descriptors and store must not creep.

    .venv/bin/python bench/soak.py                            # 2,000 feeds x 20 entries, 10 cycles
    .venv/bin/python bench/soak.py --feeds 300 --cycles 10    # the same shape, fewer feeds

A generated site (its own process, so it never competes with a run for the GIL) serves --feeds RSS
feeds of --entries items each, and the article pages they link, on 127.0.0.1. Before cycle k the
site moves every feed on by --new-percent of its entries (5%: one new item in a feed of 20, the
oldest one dropped), so cycle 1 stores feeds x entries articles and each later cycle feeds x new.
Pages are small real-looking articles: a headline, a byline, a date and 4-8 paragraphs of sentences
drawn from the corpus bodies (shared/corpus/articles/ground_truth.json), the same for the same
(feed, entry), so extraction is not the whole cost of a cycle.

Each cycle is a real `newsmon run --config F` subprocess (no PREFECT_API_URL: plain functions).
While it runs, every 0.2 s: the RSS summed over its process tree (newsmon and its extraction
worker) and the number of open file descriptors of the newsmon process (/proc/PID/fd); the peaks
are reported. After it: the articles in the store and the store's size (every file under its
folder: catalog, Parquet files, dedup and search indexes).

Reported: a table per cycle; peak RSS and fds of the last cycle over cycle 2 (cycle 1 is the bulk
load, 20 times the new articles of a later cycle, so no steady state; the target is <= 1.2); and
the store size against articles stored: a least-squares line over every cycle, its R^2 and the
largest deviation of a cycle from it (linear: R^2 near 1, deviations of a few percent).
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
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from html import escape
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale_bench import dir_bytes, tree_rss_mb  # noqa: E402
from bench.site import serve_site  # noqa: E402

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
GROUND_TRUTH = REPO.parent / "shared/corpus/articles/ground_truth.json"
BASE_TIME = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc)
SAMPLE_S = 0.2


# ---------------------------------------------------------------------------------------------- the site


class Shape:
    """Which entries each feed lists in a cycle: a window of `entries` that moves on by `new` per cycle."""

    def __init__(self, entries: int, new: int) -> None:
        self.entries, self.new = entries, new

    def window(self, cycle: int) -> range:
        start = (cycle - 1) * self.new
        return range(start, start + self.entries)


def article_page(sentences: list[str], feed: int, entry: int) -> tuple[str, bytes]:
    """(headline, page bytes) of one article: the same for the same (feed, entry)."""
    rng = random.Random(feed * 1_000_003 + entry)
    paragraphs = [" ".join(rng.choice(sentences) for _ in range(rng.randint(2, 4))) for _ in range(rng.randint(4, 8))]
    headline = rng.choice(sentences)[:90].rsplit(" ", 1)[0]
    published = BASE_TIME + timedelta(minutes=entry)
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(headline)} | Desk {feed}'
            f'</title></head><body><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/business">'
            f'Business</a></nav><article><h1>{escape(headline)}</h1><p class="byline">By Staff Reporter {entry % 37}'
            f'</p><time datetime="{published.isoformat()}">{published:%d %B %Y}</time>{body}</article>'
            f"<footer><p>Desk {feed} newsroom. All rights reserved.</p></footer></body></html>")
    return headline, page.encode()


def feed_document(sentences: list[str], base: str, feed: int, window: range) -> bytes:
    """RSS 2.0 listing the entries of `window`, newest first."""
    items = []
    for entry in reversed(window):
        headline, _ = article_page(sentences, feed, entry)
        link = f"{base}/a/{feed}/{entry}.html"
        items.append(f"<item><title>{escape(headline)}</title><link>{link}</link><guid>{link}</guid>"
                     f"<pubDate>{format_datetime(BASE_TIME + timedelta(minutes=entry))}</pubDate></item>")
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Desk {feed}</title>'
            f"<link>{base}/</link><description>soak feed</description>{''.join(items)}</channel></rss>").encode()


def serve(port_out, cycle, shape: Shape) -> None:
    """The site's process: /f/<feed>.xml for the current cycle, /a/<feed>/<entry>.html for any entry."""
    from bench.make_history import load_sentences

    sentences = load_sentences(GROUND_TRUTH)
    serve_site(port_out, lambda base, feed: feed_document(sentences, base, feed, shape.window(cycle.value)),
               lambda feed, entry: article_page(sentences, feed, entry)[1])


# ---------------------------------------------------------------------------------------------- one cycle


@dataclass
class Cycle:
    """What one `newsmon run` cost and left behind."""

    number: int
    wall_s: float
    new: int  # articles the run reported new
    stored: int  # articles in the store after it
    peak_rss_mb: float  # summed over the process tree
    peak_fds: int  # of the newsmon process
    store_bytes: int


def write_config(work: Path, base: str, feeds: int) -> Path:
    listed = "".join(f'[[feeds]]\nurl = "{base}/f/{n}.xml"\n\n' for n in range(feeds))
    path = work / "newsmon.toml"
    # Loopback needs allow_private_networks; one host serves every feed, so per_host is the concurrency.
    path.write_text(f'[storage]\ndatabase = "{work / "newsmon.duckdb"}"\n\n[fetch]\nallow_private_networks = true\n'
                    f"respect_robots = false\nconcurrency = 32\nper_host = 32\ntimeout_s = 60\n\n{listed}",
                    encoding="utf-8")
    return path


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # exited between two samples
        return 0


def run_cycle(number: int, config: Path, env: dict[str, str], log: Path) -> Cycle:
    """One `newsmon run`, its process tree sampled until it exits."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([NEWSMON, "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=config.parent)
    peaks = {"rss": 0.0, "fds": 0}

    def sample() -> None:
        while proc.poll() is None:
            peaks["rss"] = max(peaks["rss"], tree_rss_mb(proc.pid))
            peaks["fds"] = max(peaks["fds"], open_fds(proc.pid))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    status = proc.wait()
    wall = time.perf_counter() - started
    sampler.join()
    output = log.read_text()
    if status != 0:
        raise SystemExit(f"cycle {number}: newsmon run exited {status}\n{output[-3000:]}")
    new = int(re.search(r"^articles: (\d+) new", output, re.M).group(1))
    database = config.parent / "newsmon.duckdb"
    return Cycle(number, wall, new, stored_articles(database), peaks["rss"], peaks["fds"],
                 dir_bytes(store_folder(database)))


def stored_articles(database: Path) -> int:
    from storage.db import open_reader

    con = open_reader(database)
    try:
        return con.execute("SELECT count(*) FROM articles").fetchone()[0]
    finally:
        con.close()


def store_folder(database: Path) -> Path:
    from storage.paths import store_dir

    return store_dir(database)


def child_env() -> dict[str, str]:
    # No PREFECT_API_URL: `newsmon run` runs the stages as plain functions; NEWSMON_* would override the config.
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "NEWSMON_"))
            and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}


# ---------------------------------------------------------------------------------------------- report


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float, float]:
    """Least squares y = a + b x: (a, b, R^2, largest |residual| / y)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    residuals = [y - (a + b * x) for x, y in zip(xs, ys)]
    syy = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum(r * r for r in residuals) / syy if syy else 1.0
    return a, b, r2, max(abs(r) / y for r, y in zip(residuals, ys))


def report(args, new: int, cycles: list[Cycle], total_s: float) -> str:
    lines = [f"soak: {args.feeds:,} feeds x {args.entries} entries, {len(cycles)} cycles, {new} new entr"
             f"{'y' if new == 1 else 'ies'} per feed per cycle ({args.new_percent:g}%); {os.cpu_count()} CPUs, "
             f"load average {os.getloadavg()[0]:.1f} at the end; {total_s / 60:.1f} min in all",
             f"command: .venv/bin/python bench/soak.py --feeds {args.feeds} --entries {args.entries} "
             f"--cycles {args.cycles} --new-percent {args.new_percent:g}", "",
             "| cycle | new articles | articles stored | wall | peak RSS (tree) | peak open fds | store size | "
             "store bytes / article |", "|---|---|---|---|---|---|---|---|"]
    for c in cycles:
        lines.append(f"| {c.number} | {c.new:,} | {c.stored:,} | {c.wall_s:,.0f} s | {c.peak_rss_mb:,.0f} MB | "
                     f"{c.peak_fds} | {c.store_bytes / 2**20:,.1f} MB | {c.store_bytes / max(c.stored, 1):,.0f} |")
    if len(cycles) >= 3:
        second, last = cycles[1], cycles[-1]
        rss, fds = last.peak_rss_mb / second.peak_rss_mb, last.peak_fds / max(second.peak_fds, 1)
        lines += ["", f"cycle {last.number} / cycle 2: peak RSS {rss:.2f}x, peak open fds {fds:.2f}x (target <= 1.2x: "
                      f"{'met' if max(rss, fds) <= 1.2 else 'NOT met'})"]
        a, b, r2, worst = linear_fit([c.stored for c in cycles], [c.store_bytes for c in cycles])
        lines.append(f"store size vs articles stored, cycles 1-{last.number}: {b:,.0f} bytes per article + "
                     f"{a / 2**20:,.1f} MB, R^2 {r2:.4f}, largest deviation from the line {worst:.1%}")
    expected = [args.feeds * args.entries] + [args.feeds * new] * (len(cycles) - 1)
    if [c.new for c in cycles] != expected:
        lines.append(f"NEW ARTICLES DIFFER from feeds x new entries: {[c.new for c in cycles]} vs {expected}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=20, help="items in each feed")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--new-percent", type=float, default=5.0, help="of each feed's items new in each cycle")
    parser.add_argument("--keep", action="store_true", help="keep the store and the run logs")
    args = parser.parse_args(argv)
    new = max(1, round(args.entries * args.new_percent / 100))
    cycle = multiprocessing.Value("i", 1)
    port_out = multiprocessing.Queue()
    site = multiprocessing.Process(target=serve, args=(port_out, cycle, Shape(args.entries, new)), daemon=True)
    site.start()
    work = Path(tempfile.mkdtemp(prefix="newsmon-soak-"))
    started, cycles = time.perf_counter(), []
    try:
        config = write_config(work, f"http://127.0.0.1:{port_out.get(timeout=60)}", args.feeds)
        for number in range(1, args.cycles + 1):
            cycle.value = number
            cycles.append(run_cycle(number, config, child_env(), work / f"cycle-{number}.log"))
            c = cycles[-1]
            print(f"cycle {number}: {c.new:,} new, {c.stored:,} stored, {c.wall_s:,.0f} s, "
                  f"RSS {c.peak_rss_mb:,.0f} MB, fds {c.peak_fds}, store {c.store_bytes / 2**20:,.1f} MB", flush=True)
    finally:
        site.terminate()
        site.join(10)
        if args.keep:
            print(f"kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    print("\n" + report(args, new, cycles, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
