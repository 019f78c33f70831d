"""Storage at scale: does a run cost the same with a big history as with an empty store?

    .venv/bin/python bench/scale_bench.py                      # 1,000,000 articles (see docs/BENCHMARKS.md)
    .venv/bin/python bench/scale_bench.py --articles 100000    # a smaller history, same report

One invocation, every compared figure measured in it:
  history   bench/make_history.py writes N synthetic articles (corpus sentences mixed at random, ~1% planted
            exact and near copies) as Parquet, cached in --cache between invocations
  import    wall time of the real `newsmon import` over those files, start-up included -> rows/s
  dedup     precision and recall of the planted copies as linked by that import
  run       the 181 corpus pages (10 feeds on a loopback server in its own process) through the real
            `newsmon run` into the big store and into an empty one: wall time, start-up included, and the
            peak RSS of the whole process tree (newsmon, its Prefect API server, its extraction worker)
  re-run    the same command again, nothing new (every feed answers 304): wall, big vs empty
  disk      bytes of the store folder (catalog, Parquet files, dedup index) / bytes of text it holds
  query     `newsmon sql` articles per day over the last 30 days on the big store (process wall time)
  readers   1,810 new pages into the big store, once alone and once with `newsmon sql` in a loop plus a
            plain duckdb process that keeps the store attached for 30 s; every read must answer
Ratios are printed against the targets of the storage design (docs/STORAGE.md).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_bench import Site, child_env, feed_urls, write_config  # noqa: E402
from storage.db import EXTENSIONS, attach_sql, extension_file, open_reader, store_dir  # noqa: E402

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
PAGES = 181
READER_SECONDS = 30


@dataclass
class Proc:
    """One finished child process."""

    wall_s: float
    peak_tree_mb: float
    output: str


def tree_rss_mb(root: int) -> float:
    """Summed RSS of a process and all its descendants, now."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(p, 0) for p in tree) / 2**20


def run(cmd: Sequence[str], env: dict[str, str], log: Path) -> Proc:
    """Run cmd to completion, sampling the RSS of its whole process tree every 50 ms."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    status = proc.wait()
    wall = time.perf_counter() - started
    sampler.join()
    if status != 0:
        sys.exit(f"{' '.join(cmd[:3])}: exit {status}\n{log.read_text()[-3000:]}")
    return Proc(wall, peak[0], log.read_text())


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make_history(cache: Path, articles: int, env: dict[str, str]) -> list[Path]:
    """The generated Parquet files, made once per size and reused."""
    folder = cache / f"history-{articles}"
    if not (folder / "planted.parquet").exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "make_history.py"), str(folder), "--articles",
                        str(articles)], check=True, env=env)
    return sorted(folder.glob("history-*.parquet"))


def import_config(work: Path, database: Path) -> Path:
    path = work / f"import-{database.parent.name}.toml"
    path.write_text(f'[storage]\ndatabase = "{database}"\n', encoding="utf-8")
    return path


def planted_quality(database: Path, planted: Path) -> tuple[float, float, int, int]:
    """(precision, recall, links made, copies planted) of the duplicate links among imported articles."""
    con = open_reader(database)
    try:
        con.execute(f"CREATE TEMP TABLE planted AS SELECT * FROM read_parquet('{planted}')")
        planted_n, correct = con.execute("""
            SELECT count(*), count(*) FILTER (WHERE c.duplicate_of = coalesce(o.duplicate_of, o.id))
            FROM planted p JOIN articles c ON c.source_url = p.url JOIN articles o ON o.source_url = p.original_url
        """).fetchone()
        linked = con.execute("SELECT count(*) FROM articles WHERE duplicate_of IS NOT NULL "
                             "AND extraction = 'import'").fetchone()[0]
    finally:
        con.close()
    return (correct / linked if linked else 1.0), (correct / planted_n if planted_n else 0.0), linked, planted_n


def text_bytes(database: Path) -> int:
    con = open_reader(database)
    try:
        return con.execute("SELECT sum(strlen(text)) FROM articles").fetchone()[0] or 0
    finally:
        con.close()


HOLDER = """
import sys, time, duckdb
loads, attach, seconds = sys.argv[1].split(";"), sys.argv[2], float(sys.argv[3])
con = duckdb.connect(config={"autoinstall_known_extensions": False, "allow_unsigned_extensions": True})
for load in loads:
    con.execute(load)
con.execute(attach)
answers, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    con.execute("SELECT count(*) FROM newsmon.articles").fetchone()
    answers += 1
    time.sleep(0.5)
print(answers)
"""


def with_readers(database: Path, config: Path, seconds: float, env: dict[str, str]) -> tuple[threading.Thread, dict]:
    """Start `newsmon sql` in a loop and a duckdb process holding the store; results land in the dict."""
    result = {"sql_ok": 0, "sql_failed": 0, "holder_answers": 0, "holder_ok": False}
    loads = ";".join(f"LOAD '{extension_file(name)}'" for name in EXTENSIONS)

    def loop() -> None:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, loads, attach_sql(database, True), str(seconds)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            done = subprocess.run([NEWSMON, "sql", "--config", str(config), "SELECT count(*) FROM articles"],
                                  capture_output=True, text=True, env=env, timeout=120)
            result["sql_ok" if done.returncode == 0 else "sql_failed"] += 1
        out, err = holder.communicate(timeout=120)
        result["holder_ok"] = holder.returncode == 0
        result["holder_answers"] = int(out.strip() or 0) if holder.returncode == 0 else 0
        result["holder_error"] = err[-500:]

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, default=REPO / ".bench-cache")
    parser.add_argument("--reuse", type=Path, metavar="WORK",
                        help="the work folder of an earlier invocation: keep its imported store and import figures, "
                             "re-measure everything after the import")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="newsmon-scale-"))
    env = {**child_env(), "PREFECT_HOME": str(work / "prefect-home")}
    history = make_history(args.cache, args.articles, env)
    planted = history[0].with_name("planted.parquet")
    big, empty = work / "big" / "newsmon.duckdb", work / "empty" / "newsmon.duckdb"
    empty.parent.mkdir()
    if args.reuse:
        big = args.reuse / "big" / "newsmon.duckdb"
        imported = _earlier_import(args.reuse / "import.log")
    else:
        big.parent.mkdir()
        imported = run([NEWSMON, "import", "--config", str(import_config(work, big)), *map(str, history)], env,
                       work / "import.log")
    print(f"  .. import: {imported.wall_s:.1f} s", file=sys.stderr, flush=True)
    precision, recall, linked, planted_n = planted_quality(big, planted)

    base = 30 if args.reuse else 0  # copies the reused store has not seen yet
    site = Site({"warm": ([base], 0), "one": ([base], PAGES), "alone": (list(range(base + 1, base + 11)), PAGES),
                 "readers": (list(range(base + 11, base + 21)), PAGES)}, PAGES)
    try:
        run([NEWSMON, "run", "--config", str(write_config(work, "warm", feed_urls(site.base, "warm"),
                                                          work / "warm" / "n.duckdb"))], env, work / "warm.log")
        configs = {name: write_config(work, f"one-{name}", feed_urls(site.base, "one"), db)
                   for name, db in (("big", big), ("empty", empty))}
        runs = {name: run([NEWSMON, "run", "--config", str(configs[name])], env, work / f"{name}.log")
                for name in ("empty", "big")}
        reruns = {name: run([NEWSMON, "run", "--config", str(configs[name])], env, work / f"{name}-rerun.log")
                  for name in ("empty", "big")}
        query_run = run([NEWSMON, "sql", "--config", str(configs["big"]),
                         "SELECT CAST(published_at AS DATE) AS day, count(*) AS articles FROM articles "
                         "WHERE published_at > now() - INTERVAL 30 DAY GROUP BY day ORDER BY day"], env,
                        work / "query.log")
        alone = run([NEWSMON, "run", "--config", str(write_config(work, "alone", feed_urls(site.base, "alone"), big))],
                    env, work / "alone.log")
        readers_config = write_config(work, "readers", feed_urls(site.base, "readers"), big)
        thread, readers = with_readers(big, readers_config, READER_SECONDS, env)
        with_load = run([NEWSMON, "run", "--config", str(readers_config)], env, work / "readers.log")
        thread.join()
    finally:
        site.close()
    disk, text = dir_bytes(store_dir(big)), text_bytes(big)
    print(report(args, imported, precision, recall, linked, planted_n, runs, reruns, query_run, disk, text,
                 alone, with_load, readers, time.perf_counter() - started))
    return 0


def _earlier_import(log: Path) -> Proc:
    """The import figures of an earlier invocation, from its log (peak RSS was not kept: 0)."""
    text = log.read_text()
    seconds = float(re.search(r"rows in ([\d.]+)s", text).group(1))
    return Proc(seconds, 0.0, text)


def _new(proc: Proc) -> str:
    match = re.search(r"articles: (\d+) new", proc.output)
    return match.group(1) if match else "?"


def report(args, imported: Proc, precision, recall, linked, planted_n, runs, reruns, query_run, disk, text,
           alone, with_load, readers, elapsed) -> str:
    """The printed report: figures, ratios and targets."""
    rows = args.articles
    ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
    lines = [
        f"scale benchmark: {rows:,} synthetic articles, then {PAGES} corpus pages (newsmon run, loopback)",
        f"  import          {rows:,} rows in {imported.wall_s:.1f} s = {rows / imported.wall_s:,.0f} rows/s "
        f"(target >= 2,000), peak RSS of the tree {imported.peak_tree_mb:,.0f} MB",
        f"  planted copies  precision {precision:.4f} (>= 0.99), recall {recall:.4f} (>= 0.95): "
        f"{linked:,} links made, {planted_n:,} copies planted",
        f"  {PAGES}-page run      big {runs['big'].wall_s:.1f} s / empty {runs['empty'].wall_s:.1f} s = "
        f"{ratio(runs['big'].wall_s, runs['empty'].wall_s):.2f} (<= 1.2); new articles {_new(runs['big'])} / "
        f"{_new(runs['empty'])}",
        f"  peak RSS tree   big {runs['big'].peak_tree_mb:,.0f} MB / empty {runs['empty'].peak_tree_mb:,.0f} MB = "
        f"{ratio(runs['big'].peak_tree_mb, runs['empty'].peak_tree_mb):.2f} (<= 1.2)",
        f"  no-op re-run    big {reruns['big'].wall_s:.1f} s / empty {reruns['empty'].wall_s:.1f} s = "
        f"{ratio(reruns['big'].wall_s, reruns['empty'].wall_s):.2f} (<= 1.2)",
        f"  disk            store {disk / 2**30:.2f} GiB / text {text / 2**30:.2f} GiB = {ratio(disk, text):.2f} (<= 1.2)",
        f"  query           articles per day, last 30 days, `newsmon sql` wall {query_run.wall_s:.2f} s (<= 2)",
        f"  readers         1,810 pages into the big store: alone {alone.wall_s:.1f} s, with readers "
        f"{with_load.wall_s:.1f} s = {ratio(with_load.wall_s, alone.wall_s):.2f}; new {_new(alone)} / {_new(with_load)}; "
        f"newsmon sql {readers['sql_ok']} ok / {readers['sql_failed']} failed; duckdb holder "
        f"{'ok' if readers['holder_ok'] else 'FAILED'} with {readers['holder_answers']} answers",
        f"  (benchmark wall {elapsed / 60:.1f} min)",
    ]
    if not readers["holder_ok"]:
        lines.append(f"  holder error: {readers.get('holder_error')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
