"""End-to-end ingest benchmark: real news pages served over loopback, read through the real `newsmon run`.

    .venv/bin/python bench/ingest_bench.py            # full: 181 pages, 10x scale (~6-10 min)
    .venv/bin/python bench/ingest_bench.py --quick    # 60 pages, 3x scale (~2 min)

Every figure that is compared is measured in the same invocation, and the report prints ratios:
    throughput  newsmon run pages/s over extract_article alone in a plain loop (the ceiling)
    breakdown   the same batch through run_cycle(settings, Stages()) with timers, and each stage alone
    scale       cost per article at 1x and Nx the corpus; peak RSS of a small batch on an empty vs a full store
    re-run      a second run with nothing new (feeds answer 304) against the first
    prefect     the same batch through the @flow (TASK_STAGES) and through plain functions (no Prefect)

The HTTP server (tests/loopback.py) runs in its own process, so it never competes with the run for the GIL.
`newsmon run` gets no PREFECT_API_URL, so it runs the stages as plain functions (flows/cli.py); the @flow
is measured through an instrumented child, after a warm-up flow run has migrated the new PREFECT_HOME.
The store is a DuckLake folder (storage/db.py) committed per batch; there is no publish step any more, so
where the report used to time publish (checkpoint + copy) it times the lake maintenance each run ends with.
"""
from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Callable, Sequence
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus"
ARTICLES = CORPUS / "articles"
FEEDS = 10
PAGE_BATCH = 25  # flows.cycle.PAGE_BATCH, for counting task runs without importing the pipeline
MARKER = "zqbench"  # every inserted sentence carries it, so stored texts that differ can be counted
BASE_TIME = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark invocation."""

    pages: int  # corpus pages used (the first N by id)
    scale: int  # copies in the scale run
    small: int  # pages in the small batch (RSS vs stored articles)
    repeats: int  # repeats of the cheap comparisons


FULL = Plan(pages=181, scale=10, small=60, repeats=2)
QUICK = Plan(pages=60, scale=3, small=30, repeats=1)


# ---------------------------------------------------------------------------- corpus and site


def corpus_pages(limit: int) -> list[tuple[str, bytes, str]]:
    """(id, html bytes, ground-truth body) of the first `limit` corpus pages, in id order."""
    truth = json.loads((ARTICLES / "ground_truth.json").read_text(encoding="utf-8"))
    ids = sorted(truth)[:limit]
    return [(i, (ARTICLES / f"{i}.html").read_bytes(), truth[i]["articleBody"]) for i in ids]


def insertion_point(body: bytes, truth: str) -> int | None:
    """Byte offset of a body paragraph's first words in the page (middle paragraphs first), outside scripts."""
    start = max(body.lower().find(b"<body"), 0)
    paras = [p for p in truth.split("\n") if len(p.split()) >= 3]
    for para in paras[len(paras) // 2:] + paras[: len(paras) // 2][::-1]:
        pos = _find_words(body, para.split(), start)
        if pos is not None:
            return pos
    return None


def _find_words(body: bytes, words: list[str], start: int) -> int | None:
    for n in (6, 4, 3):
        probe = " ".join(words[:n])
        for variant in dict.fromkeys([probe, html.escape(probe, quote=False), html.escape(probe)]):
            needle = variant.encode("utf-8")
            pos = body.find(needle, start)
            while pos >= 0:
                if body.rfind(b"<script", start, pos) <= body.rfind(b"</script", start, pos):
                    return pos
                pos = body.find(needle, pos + 1)
    return None


def page_copy(body: bytes, point: int | None, copy: int, page_id: str) -> bytes:
    """Copy 0 is the page as published; copy k > 0 carries one distinct sentence in its body text."""
    if copy == 0:
        return body
    sentence = (f"Archive copy {copy} of report {page_id[:8]} was filed under reference "
                f"{MARKER}{copy}x{page_id[:6]} by the regional desk. ").encode()
    if point is None:  # no paragraph found in the markup: add it as a paragraph of its own
        point = body.lower().find(b"<body")
        point = body.find(b">", point) + 1 if point >= 0 else 0
        sentence = b"<p>" + sentence + b"</p>"
    return body[:point] + sentence + body[point:]


def page_path(copy: int, page_id: str) -> str:
    return f"/c{copy}/{page_id}.html"


def feed_xml(name: str, items: Sequence[tuple[str, str, datetime]], base: str) -> bytes:
    """An RSS 2.0 document listing (path, title, published) items."""
    out = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
           f"<title>bench {escape(name)}</title><link>{base}/</link><description>benchmark feed</description>"]
    for path, title, published in items:
        out.append(f"<item><title>{escape(title)}</title><link>{base}{path}</link>"
                   f'<guid isPermaLink="true">{base}{path}</guid><pubDate>{format_datetime(published)}</pubDate>'
                   f"<description>{escape(title)}: summary from the feed.</description></item>")
    out.append("</channel></rss>")
    return "".join(out).encode("utf-8")


def page_title(body: bytes, fallback: str) -> str:
    match = re.search(rb"<title[^>]*>(.*?)</title>", body[:200_000], re.S | re.I)
    text = html.unescape(match.group(1).decode("utf-8", "replace")) if match else ""
    return " ".join(text.split())[:200] or fallback


def batch_items(pages, copies: Sequence[int], limit: int) -> list[tuple[str, str, datetime]]:
    """Feed items for `copies` of the first `limit` pages, each with its own publication time."""
    items = []
    for copy in copies:
        for n, (page_id, body, _) in enumerate(pages[:limit]):
            published = BASE_TIME - timedelta(minutes=copy * len(pages) + n)
            items.append((page_path(copy, page_id), page_title(body, page_id), published))
    return items


def feed_urls(base: str, batch: str) -> list[str]:
    return [f"{base}/feeds/{batch}/{f}.xml" for f in range(FEEDS)]


# ---------------------------------------------------------------------------- server process


def serve(batches: dict[str, tuple[list[int], int]], page_limit: int) -> None:
    """Child process: serve robots.txt, the batches' feeds (ETag, 304) and every page copy; print the port."""
    from tests.loopback import LoopbackHTTPServer, Response

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # threads inherit it: sigwait below
    pages = corpus_pages(page_limit)
    points = {page_id: insertion_point(body, truth) for page_id, body, truth in pages}
    server = LoopbackHTTPServer()
    server.route("/robots.txt", Response(200, b"User-agent: *\nDisallow: /private/\n",
                                         {"Content-Type": "text/plain"}))
    copies_served = sorted({c for copies, _ in batches.values() for c in copies})
    for page_id, body, _ in pages:
        for copy in copies_served:
            server.route(page_path(copy, page_id), _page_handler(body, points[page_id], copy, page_id))
    for name, (copies, limit) in batches.items():
        items = batch_items(pages, copies, limit)
        for f, url in enumerate(feed_urls("", name)):
            server.route(url, _feed_handler(name, items[f::FEEDS], server))
    server.route("/_stats", lambda request: Response(200, json.dumps(_stats(server)).encode()))
    with server:
        print(server.port, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


def _page_handler(body: bytes, point: int | None, copy: int, page_id: str) -> Callable:
    from tests.loopback import Response

    def answer(request) -> Response:
        return Response(200, page_copy(body, point, copy, page_id), {"Content-Type": "text/html; charset=utf-8"})
    return answer


def _feed_handler(name: str, items, server) -> Callable:
    from tests.loopback import Response

    state: dict[str, bytes] = {}

    def answer(request) -> Response:
        if "doc" not in state:  # built on first request, when the port (and so the links) are known
            state["doc"] = feed_xml(name, items, server.base)
        doc = state["doc"]
        etag = f'"{hash(doc) & 0xFFFFFFFF:08x}"'
        headers = {"ETag": etag, "Last-Modified": format_datetime(BASE_TIME, usegmt=True),
                   "Content-Type": "application/rss+xml"}
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", headers)
        return Response(200, doc, headers)
    return answer


def _stats(server) -> dict[str, int]:
    counts = {"robots": 0, "feed_200": 0, "feed_304": 0, "page": 0}
    for r in list(server.requests):
        if r.path == "/robots.txt":
            counts["robots"] += 1
        elif r.path.startswith("/feeds/"):
            counts["feed_304" if r.headers.get("if-none-match") else "feed_200"] += 1
        elif r.path.startswith("/c"):
            counts["page"] += 1
    return counts


class Site:
    """The server child process, as seen from the benchmark."""

    def __init__(self, batches: dict[str, tuple[list[int], int]], page_limit: int) -> None:
        spec = json.dumps({"batches": batches, "pages": page_limit})
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", "serve", spec],
                                     stdout=subprocess.PIPE, text=True, env=_child_env())
        port = self.proc.stdout.readline().strip()
        if not port:
            raise RuntimeError("benchmark server did not start")
        self.base = f"http://127.0.0.1:{port}"

    def stats(self) -> dict[str, int]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.base + "/_stats", timeout=10) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


# ---------------------------------------------------------------------------- runs in child processes


@dataclass
class Run:
    """One child process: wall time, peak RSS, and what it reported or stored."""

    label: str
    wall_s: float
    peak_rss_mb: float  # VmHWM of the process itself, polled
    tree_maxrss_mb: float  # wait4 ru_maxrss: the largest of the process and its children (extraction worker)
    report: dict = field(default_factory=dict)  # from an instrumented child
    db: dict = field(default_factory=dict)  # read back from the store (newsmon run)
    ceiling_at: int = 0  # number of ceiling measurements taken before this run


def write_config(work: Path, name: str, urls: Sequence[str], database: Path) -> Path:
    """A newsmon.toml for `urls`; loopback needs allow_private_networks, robots.txt is respected (default)."""
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\ntags = ["bench"]\n\n' for u in urls)
    path = work / f"{name}.toml"
    path.write_text(f'[storage]\ndatabase = "{database}"\n\n[fetch]\nallow_private_networks = true\n\n{feeds}',
                    encoding="utf-8")
    return path


def _child_env() -> dict[str, str]:
    # Without PREFECT_API_URL, `newsmon run` skips Prefect; NEWSMON_* would override the bench's configs.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "NEWSMON_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_child(label: str, cmd: list[str], env: dict[str, str], log: Path) -> Run:
    """Run cmd to completion, polling its peak RSS; a failure stops the benchmark with the child's log."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    hwm = [0.0]
    poller = threading.Thread(target=_poll_hwm, args=(proc.pid, hwm), daemon=True)
    poller.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{label}: exit {proc.returncode}\n{log.read_text()[-3000:]}")
    return Run(label, wall, hwm[0], usage.ru_maxrss / 1024)


def _poll_hwm(pid: int, hwm: list[float]) -> None:
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return
        match = re.search(r"VmHWM:\s+(\d+) kB", text)
        if not match:  # zombie: the process has exited
            return
        hwm[0] = max(hwm[0], int(match.group(1)) / 1024)
        time.sleep(0.05)


def newsmon_run(label: str, config: Path, env: dict[str, str], work: Path) -> Run:
    """The real command, `newsmon run --config F`; in-cycle time and counts are read back from the store."""
    exe = Path(sys.executable).with_name("newsmon")
    cmd = [str(exe), "run", "--config", str(config)] if exe.exists() else \
        [sys.executable, "-m", "flows.cli", "run", "--config", str(config)]
    run = run_child(label, cmd, env, work / f"{label}.log")
    run.db = last_run(_database(config))
    return run


def instrumented(label: str, kind: str, config: Path, env: dict[str, str], work: Path) -> Run:
    """This file as a child (`plain`, `flow` or `parts`), reporting its own timings as JSON."""
    out = work / f"{label}.json"
    run = run_child(label, [sys.executable, __file__, "--child", kind, str(config), str(out)], env,
                    work / f"{label}.log")
    run.report = json.loads(out.read_text())
    return run


def _database(config: Path) -> Path:
    return Path(re.search(r'database = "([^"]+)"', config.read_text()).group(1))


def last_run(database: Path) -> dict:
    """The newest ingest run of a store, with article counts and the store folder's size."""
    from storage.db import open_reader, store_dir

    con = open_reader(database)
    try:
        started, finished, summary = con.execute("""SELECT started_at, finished_at, summary FROM runs
            WHERE kind = 'ingest' ORDER BY started_at DESC LIMIT 1""").fetchone()
        total, copies, marked, trafilatura = con.execute(f"""SELECT count(*), count(duplicate_of),
            count(*) FILTER (WHERE text LIKE '%{MARKER}%'), count(*) FILTER (WHERE extraction = 'trafilatura')
            FROM articles""").fetchone()
    finally:
        con.close()
    summary = json.loads(summary)
    return {"db_mb": folder_bytes(store_dir(database)) / 2**20, "cycle_s": (finished - started).total_seconds(),
            "new": summary["articles_new"], "duplicates": summary["articles_duplicate"], "failed": summary["articles_failed"],
            "stored": total, "linked": copies, "marked": marked, "extracted": trafilatura}


def folder_bytes(folder: Path) -> int:
    """Size on disk of a store: every file under its folder (catalog, Parquet files, dedup index)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- instrumented children


class Timers:
    """Seconds spent in wrapped functions, summed per name (thread-safe enough: one writer per name)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU time of the calling thread, for sync wrappers
        self.calls: dict[str, int] = {}

    def _add(self, name: str, elapsed: float, cpu: float = 0.0) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu
        self.calls[name] = self.calls.get(name, 0) + 1

    def sync(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - started, time.thread_time() - cpu)
        return wrapper

    def coro(self, name: str, fn: Callable) -> Callable:
        """Wall time; `cpu` gets the whole process's CPU time (all threads) over the call."""
        async def wrapper(*args, **kwargs):
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - started, time.process_time() - cpu)
        return wrapper


OPEN = "open store (migrate, index catch-up)"
MAINTAIN = "maintenance (compact, expire, clean)"


def _time_cycle_phases(cycle, timers: Timers) -> None:
    """Wrap the module-level helpers both the plain and the flow paths go through."""
    # Extraction runs in a worker process for runs of 50+ pages: its time is not visible here, and a
    # wrapper could not be sent there anyway. Small runs use a thread, which is timed.
    if cycle.EXTRACT_PROCESS_MIN_PAGES > 10_000:
        cycle.extract_article = timers.sync("extract (worker thread busy)", cycle.extract_article)
    cycle._read_feeds = timers.coro("feeds phase", cycle._read_feeds)
    cycle._read_pages = timers.coro("pages phase (fetch+extract+store)", cycle._read_pages)
    cycle._maintain = timers.sync(MAINTAIN, cycle._maintain)
    cycle.open_store = timers.sync(OPEN, cycle.open_store)
    cycle.run_cycle = timers.coro("cycle", cycle.run_cycle)


def child_plain(config: str, out: str) -> None:
    """run_cycle(settings, Stages()) with asyncio.run: no Prefect at all."""
    t0 = time.perf_counter()
    from flows import cycle
    from flows.config import load_settings

    imported = time.perf_counter()
    timers = Timers()
    _time_cycle_phases(cycle, timers)
    base = cycle.Stages()
    stages = cycle.Stages(fetch_feed=base.fetch_feed, fetch_and_extract=base.fetch_and_extract,
                          store=timers.sync("store (incl. MinHash)", base.store),
                          alerts=timers.sync("alerts", base.alerts))
    settings = load_settings(config)
    summary = asyncio.run(cycle.run_cycle(settings, stages))
    _report(out, timers, {"import_s": imported - t0, "total_s": time.perf_counter() - t0,
                          "articles_new": summary.articles_new})


def child_flow(config: str, out: str) -> None:
    """The @flow exactly as `newsmon run` calls it, with timers around the cycle."""
    t0 = time.perf_counter()
    from flows.cli import prepare_prefect
    from flows.config import load_settings

    prepare_prefect(load_settings(config))
    from flows import cycle
    from flows.ingest import ingest_flow

    imported = time.perf_counter()
    timers = Timers()
    marks: dict[str, float] = {}
    _time_cycle_phases(cycle, timers)
    timed_cycle = cycle.run_cycle

    async def marked_cycle(*args, **kwargs):
        marks["cycle_start"] = time.perf_counter()
        try:
            return await timed_cycle(*args, **kwargs)
        finally:
            marks["cycle_end"] = time.perf_counter()
    cycle.run_cycle = marked_cycle
    called = time.perf_counter()
    summary = asyncio.run(ingest_flow(config))
    done = time.perf_counter()
    _report(out, timers, {"import_s": imported - t0, "startup_s": marks["cycle_start"] - called,
                          "teardown_s": done - marks["cycle_end"], "flow_call_s": done - called,
                          "total_s": done - t0, "articles_new": summary.articles_new})


def child_parts(config: str, out: str) -> None:
    """Each stage alone on the same batch: fetch only, extract only, MinHash only, store only, maintenance."""
    from flows import cycle
    from flows.config import load_settings
    from flows.maintenance import maintain
    from flows.persist import open_store
    from ingest.dedup import signature

    settings = load_settings(config)
    result: dict[str, float] = {}
    cpu, wall = time.process_time(), time.perf_counter()
    pages = asyncio.run(_fetch_only(cycle, settings))
    result["fetch_wall_s"], result["fetch_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu
    wall = time.perf_counter()
    articles = [a for a in map(cycle.extract_article, pages) if a is not None]
    result["extract_s"], result["pages"] = time.perf_counter() - wall, len(pages)
    wall = time.perf_counter()
    for a in articles:
        signature(a.text, settings.dedup)
    result["minhash_s"] = time.perf_counter() - wall
    store = open_store(settings.database, settings.dedup, settings.storage.memory_limit)
    wall = time.perf_counter()
    for i in range(0, len(articles), cycle.PAGE_BATCH):
        batch = cycle.PageBatch(tuple(articles[i:i + cycle.PAGE_BATCH]), (), 0)
        cycle.store_batch(store, batch, settings, "bench")
    result["store_s"] = time.perf_counter() - wall
    wall = time.perf_counter()
    maintain(store.con, settings.storage.snapshot_retention_days)
    result["maintain_s"] = time.perf_counter() - wall
    store.close()
    result["maxrss_mb"] = _self_maxrss_mb()
    Path(out).write_text(json.dumps(result))


async def _fetch_only(cycle, settings) -> list:
    """Feeds and pages with the run's own Fetcher and limits, nothing else."""
    from flows.sources import resolve_sources
    from ingest.fetch import Fetcher
    from ingest.models import OK

    async with Fetcher(settings.fetch) as fetcher:
        sources = await resolve_sources(settings.feeds, fetcher)
        results = await asyncio.gather(*(cycle.fetch_feed(fetcher, s) for s in sources))
        entries = list({e.url: e for r in results for e in r.entries}.values())
        pages = await asyncio.gather(*(fetcher.fetch_page(e) for e in entries))
    return [p for p in pages if p.outcome == OK]


def _self_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _report(out: str, timers: Timers, extra: dict) -> None:
    Path(out).write_text(json.dumps({**extra, "timers": timers.seconds, "cpu": timers.cpu, "calls": timers.calls,
                                     "maxrss_mb": _self_maxrss_mb()}))


# ---------------------------------------------------------------------------- the ceiling


def ceiling(pages) -> tuple[float, float]:
    """ingest.extract.extract_article alone over the corpus files in a plain loop: (pages/s, CPU s per page)."""
    from ingest.extract import extract_article
    from ingest.models import OK, FeedEntry, FetchedPage

    now = datetime.now(timezone.utc)
    fetched = []
    for page_id, body, _ in pages:
        url = f"http://127.0.0.1:8/c0/{page_id}.html"
        entry = FeedEntry("http://127.0.0.1:8/feed.xml", url, url, page_id, now, "summary")
        fetched.append(FetchedPage(entry, OK, 200, url, body, "text/html", now))
    started, cpu = time.perf_counter(), time.process_time()
    for page in fetched:
        extract_article(page)
    return len(fetched) / (time.perf_counter() - started), (time.process_time() - cpu) / len(fetched)


# ---------------------------------------------------------------------------- the benchmark


class Bench:
    """Runs the measurements in a fixed order and keeps what they gave."""

    def __init__(self, plan: Plan, work: Path, quick: bool) -> None:
        self.plan, self.work, self.quick = plan, work, quick
        self.pages = corpus_pages(plan.pages)
        self.env = {**_child_env(), "PREFECT_HOME": str(work / "prefect-home")}
        self.ceilings: list[tuple[float, float]] = []
        self.runs: dict[str, list[Run]] = {}
        self.rerun_requests: dict[str, int] = {}
        self.batches = {"warm": ([0], 0), "one": ([0], plan.pages), "scale": (list(range(plan.scale)), plan.pages),
                        "small": ([plan.scale], plan.small)}
        self.site = Site(self.batches, plan.pages)
        self.fresh = 0

    def config(self, batch: str, database: Path | None = None) -> Path:
        """A config for `batch` writing into `database`, or into a new empty one."""
        if database is None:
            self.fresh += 1
            database = self.work / f"db{self.fresh}" / "newsmon.duckdb"
        return write_config(self.work, f"{batch}-{database.parent.name}", feed_urls(self.site.base, batch), database)

    def keep(self, key: str, run: Run) -> Run:
        run.ceiling_at = len(self.ceilings)
        self.runs.setdefault(key, []).append(run)
        print(f"  .. {run.label}: {run.wall_s:.1f} s", file=sys.stderr, flush=True)
        return run

    def measure_ceiling(self) -> None:
        self.ceilings.append(ceiling(self.pages))
        print(f"  .. ceiling: {self.ceilings[-1][0]:.1f} pages/s", file=sys.stderr, flush=True)

    def run_all(self) -> None:
        # Prefect's first start in a new PREFECT_HOME migrates its database: measured apart, before the flow runs.
        self.keep("warm", instrumented("warm-up", "flow", self.config("warm"), self.env, self.work))
        self.measure_ceiling()
        one = self.config("one")
        self.keep("one", newsmon_run("newsmon-1x", one, self.env, self.work))
        before = self.site.stats()
        self.keep("rerun", newsmon_run("newsmon-rerun", one, self.env, self.work))
        self.rerun_requests = {k: v - before[k] for k, v in self.site.stats().items()}
        for r in range(self.plan.repeats):  # alternated, so drifting machine load hits both sides
            self.keep("plain", instrumented(f"plain-{r}", "plain", self.config("one"), self.env, self.work))
            self.keep("flow", instrumented(f"flow-{r}", "flow", self.config("one"), self.env, self.work))
            self.measure_ceiling()
        self.keep("parts", instrumented("parts", "parts", self.config("one"), self.env, self.work))
        full = self.config("scale")
        self.keep("scale", newsmon_run(f"newsmon-{self.plan.scale}x", full, self.env, self.work))
        self.measure_ceiling()
        self.keep("small-empty", instrumented("small-empty", "plain", self.config("small"), self.env, self.work))
        self.keep("small-full", instrumented("small-full", "plain", self.config("small", _database(full)),
                                             self.env, self.work))

    def close(self) -> None:
        self.site.close()


# ---------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(b: Bench, elapsed: float, command: str) -> str:
    """The printed report: every ratio is between figures of this invocation."""
    p = b.plan
    lines = [f"newsmon ingest benchmark ({'quick' if b.quick else 'full'}): {p.pages} corpus pages in "
             f"{FEEDS} RSS feeds over loopback; scale {p.scale}x; {os.cpu_count()} CPUs; "
             f"load average at the end {os.getloadavg()[0]:.1f}",
             f"command: {command}   (took {elapsed:.0f} s)", ""]
    for section in (_ceiling_lines, _throughput_lines, _breakdown_lines, _prefect_lines, _scale_lines, _rerun_lines):
        lines += section(b) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _ceil(b: Bench) -> tuple[float, float]:
    """Mean ceiling: (pages/s wall, CPU ms per page)."""
    return statistics.mean(c[0] for c in b.ceilings), 1000 * statistics.mean(c[1] for c in b.ceilings)


def _near_ceil(b: Bench, run: Run) -> float:
    """The ceiling measured around a run (mean of the one before and the one after): load drifts."""
    around = b.ceilings[max(run.ceiling_at - 1, 0): run.ceiling_at + 1]
    return statistics.mean(c[0] for c in around)


def _ceiling_lines(b: Bench) -> list[str]:
    rate, cpu = _ceil(b)
    spread = ", ".join(f"{c[0]:.1f}" for c in b.ceilings)
    return [f"ceiling: extract_article alone, plain loop over the same {b.plan.pages} files",
            f"   {rate:.1f} pages/s wall (runs: {spread}), {cpu:.1f} ms CPU per page"]


def _cycle_cpu_ms(run: Run) -> float:
    return 1000 * run.report["cpu"]["cycle"] / run.report["articles_new"]


def _throughput_lines(b: Bench) -> list[str]:
    rate, cpu = _ceil(b)
    out = ["1. Throughput, new pages into an empty store (ratio = pages/s over the ceiling's pages/s)",
           "   `newsmon run`, no Prefect API: plain functions (cycle = runs.started_at..finished_at read back from",
           "   the store; the rest is process start, imports, lake maintenance and exit)",
           "   ratios against the ceiling measured around each run (mean of the one before and after)",
           "   run               pages  wall s  cycle s  rest s  wall p/s  cycle p/s  wall ratio  cycle ratio"]
    for run in b.runs["one"] + b.runs["scale"]:
        n, cyc, rate = run.db["new"], run.db["cycle_s"], _near_ceil(b, run)
        out.append(f"   {run.label:<17} {n:>5}  {run.wall_s:>6.1f}  {cyc:>7.1f}  {run.wall_s - cyc:>6.1f}  "
                   f"{n / run.wall_s:>8.1f}  {n / cyc:>9.1f}  {n / run.wall_s / rate:>10.2f}  {n / cyc / rate:>11.2f}")
    warm = b.runs["warm"][0]
    out.append(f"   first flow run in a new PREFECT_HOME, 0 pages: {warm.wall_s:.1f} s "
               f"(Prefect start-up {warm.report['startup_s']:.1f} s)")
    out.append("   in the flow (instrumented child, the path `newsmon run` takes with PREFECT_API_URL set; "
               "start-up excluded):")
    wall_ratios, cpu_ratios = [], []
    for run in b.runs["flow"]:
        r, rate = run.report, _near_ceil(b, run)
        n, cyc = r["articles_new"], r["timers"]["cycle"]
        wall_ratios.append(n / cyc / rate)
        cpu_ratios.append(cpu / _cycle_cpu_ms(run))
        out.append(f"   {run.label:<8} {n} pages in {cyc:.2f} s = {n / cyc:.1f} p/s (ratio {wall_ratios[-1]:.2f}); "
                   f"CPU {_cycle_cpu_ms(run):.1f} ms/page (ratio {cpu_ratios[-1]:.2f}); "
                   f"Prefect start-up {r['startup_s']:.1f} s")
    wall_ok, cpu_ok = statistics.median(wall_ratios) >= 0.8, statistics.median(cpu_ratios) >= 0.8
    in_process = all("extract (worker thread busy)" in run.report["cpu"] for run in b.runs["flow"])
    cpu_verdict = (f"CPU {verdict(cpu_ok)} ({statistics.median(cpu_ratios):.2f})" if in_process else
                   "CPU ratio n/a (extraction ran in a worker process, outside these CPU figures)")
    out.append(f"   target in-flow >= 0.8 of the ceiling: wall {verdict(wall_ok)} "
               f"({statistics.median(wall_ratios):.2f}), {cpu_verdict}; "
               f"with start-up (newsmon run, 1x): "
               f"{b.runs['one'][0].db['new'] / b.runs['one'][0].wall_s / _near_ceil(b, b.runs['one'][0]):.2f}")
    return out


def _breakdown_lines(b: Bench) -> list[str]:
    rate, cpu = _ceil(b)
    parts = b.runs["parts"][0].report
    n = parts["pages"]
    ms = lambda s: f"{1000 * s / n:6.1f} ms/page"  # noqa: E731
    out = ["2. Where the time goes",
           f"   each stage alone, same {n} pages (wall; CPU where it differs):",
           f"     extract_article, plain loop (ceiling)    {1000 / rate:6.1f} ms/page   CPU {cpu:6.1f} ms/page",
           f"     extract_article on the fetched pages     {ms(parts['extract_s'])}",
           f"     fetch only: feeds + pages over loopback  {ms(parts['fetch_wall_s'])}   CPU {ms(parts['fetch_cpu_s'])}",
           f"     MinHash signatures                       {ms(parts['minhash_s'])}",
           f"     store_batch (MinHash, index, lake commit) {ms(parts['store_s'])}",
           f"     maintenance (compact, expire, clean)     {parts['maintain_s']:6.2f} s per run"]
    for run in b.runs["plain"][-1:] + b.runs["flow"][-1:]:
        out += _cycle_split(run)
    return out


def _cycle_split(run: Run) -> list[str]:
    r = run.report
    t, c, n = r["timers"], r["cpu"], r["articles_new"]
    pages = t["pages phase (fetch+extract+store)"]
    extract_cpu = c.get("extract (worker thread busy)")
    out = [f"   inside run_cycle, {run.label} ({n} pages): {t['cycle']:.2f} s wall, {c['cycle']:.2f} s CPU "
           f"(all threads), peak RSS {r['maxrss_mb']:.0f} MB, imports {r['import_s']:.1f} s"]
    phases = (OPEN, "feeds phase", "pages phase (fetch+extract+store)", MAINTAIN)
    out += [f"     {name:<36} {t[name]:6.2f} s" for name in phases if name in t]
    other = t["cycle"] - sum(t.get(k, 0.0) for k in phases)
    out.append(f"     {'rest (alerts, run records, Prefect)':<36} {other:6.2f} s")
    if extract_cpu is None:
        line = ("     pages phase: extraction ran in its worker process (its CPU is not in this process's "
                "figures)")
    else:
        line = (f"     pages phase: extraction thread busy {t['extract (worker thread busy)'] / pages:.0%} of it; "
                f"extraction is {extract_cpu / c['cycle']:.0%} of the cycle's CPU")
    if "store (incl. MinHash)" in t:
        line += f"; store {c['store (incl. MinHash)'] / c['cycle']:.0%}"
    return out + [line]


def _prefect_lines(b: Bench) -> list[str]:
    out = ["3. Prefect overhead: the same batch through the @flow (TASK_STAGES) and through plain functions",
           "   (run_cycle(settings, Stages()) under asyncio.run); cycle = inside run_cycle, start-up excluded",
           "   pair  plain cycle s  flow cycle s  wall ratio  CPU ratio   plain process s  flow process s  "
           "flow start-up s  imports plain/flow s"]
    wall, cpu = [], []
    for i, (plain, flow) in enumerate(zip(b.runs["plain"], b.runs["flow"])):
        pc, fc = plain.report["timers"]["cycle"], flow.report["timers"]["cycle"]
        wall.append(fc / pc)
        cpu.append(flow.report["cpu"]["cycle"] / plain.report["cpu"]["cycle"])
        out.append(f"   {i:<4}  {pc:>13.2f}  {fc:>12.2f}  {wall[-1]:>10.2f}  {cpu[-1]:>9.2f}   {plain.wall_s:>15.1f}  "
                   f"{flow.wall_s:>14.1f}  {flow.report['startup_s']:>15.1f}  "
                   f"{plain.report['import_s']:.1f} / {flow.report['import_s']:.1f}")
    n = b.runs["flow"][0].report["articles_new"]
    tasks = FEEDS + 2 * -(-n // PAGE_BATCH) + 1
    extra = statistics.mean(f.report["timers"]["cycle"] - p.report["timers"]["cycle"]
                            for p, f in zip(b.runs["plain"], b.runs["flow"]))
    out.append(f"   {tasks} task runs per flow run; flow minus plain: {extra:+.2f} s, {1000 * extra / tasks:+.0f} ms per task")
    out.append(f"   target <= 1.15: wall {verdict(statistics.median(wall) <= 1.15)} (median {statistics.median(wall):.2f}), "
               f"CPU of the flow process {verdict(statistics.median(cpu) <= 1.15)} (median {statistics.median(cpu):.2f}; "
               f"the API server's own CPU is another process, not in it)")
    return out


def _scale_lines(b: Bench) -> list[str]:
    one, scale = b.runs["one"][0], b.runs["scale"][0]
    per = lambda r: 1000 * r.db["cycle_s"] / r.db["new"]  # noqa: E731
    out = [f"4. Scale: 1x and {b.plan.scale}x the corpus through `newsmon run` (distinct URLs, one distinct sentence per copy)",
           "   run               new  stored  linked as copies  with the sentence  cycle ms/article  "
           "wall ms/article  store MB  peak RSS MB (process / with its children)"]
    for run in (one, scale):
        d = run.db
        out.append(f"   {run.label:<17} {d['new']:>4}  {d['stored']:>6}  {d['linked']:>16}  {d['marked']:>17}  "
                   f"{per(run):>16.1f}  {1000 * run.wall_s / d['new']:>15.1f}  {d['db_mb']:>8.1f}  "
                   f"{run.peak_rss_mb:>6.0f} / {run.tree_maxrss_mb:.0f}")
    grow = per(scale) / per(one)
    marginal = (scale.wall_s - one.wall_s) / (scale.db["new"] - one.db["new"])
    out.append(f"   cycle cost per article {b.plan.scale}x / 1x: {grow:.2f} (target <= 1.3: {verdict(grow <= 1.3)}); "
               f"marginal wall cost per extra article {1000 * marginal:.1f} ms")
    empty, full = b.runs["small-empty"][0].report, b.runs["small-full"][0].report
    cyc = lambda r: 1000 * r["timers"]["cycle"] / r["articles_new"]  # noqa: E731
    cpu = lambda r: 1000 * r["cpu"]["cycle"] / r["articles_new"]  # noqa: E731
    out.append(f"   the same {b.plan.small} new pages (plain run_cycle) into an empty store and into the store holding "
               f"the {scale.db['stored']} articles above:")
    out.append(f"     peak RSS {empty['maxrss_mb']:.0f} MB vs {full['maxrss_mb']:.0f} MB "
               f"({full['maxrss_mb'] / empty['maxrss_mb']:.2f}); cycle {cyc(empty):.1f} vs {cyc(full):.1f} ms/article "
               f"({cyc(full) / cyc(empty):.2f}); CPU {cpu(empty):.1f} vs {cpu(full):.1f} ms/article "
               f"({cpu(full) / cpu(empty):.2f}); open store {empty['timers'][OPEN]:.2f} s vs "
               f"{full['timers'][OPEN]:.2f} s; maintenance {empty['timers'][MAINTAIN]:.2f} s vs "
               f"{full['timers'][MAINTAIN]:.2f} s")
    return out


def _rerun_lines(b: Bench) -> list[str]:
    first, again = b.runs["one"][0], b.runs["rerun"][0]
    ratio = again.db["cycle_s"] / first.db["cycle_s"]
    req = b.rerun_requests
    return ["5. Re-run of `newsmon run` with nothing new (feeds answer 304 to the stored ETag)",
            f"   cycle {first.db['cycle_s']:.2f} s -> {again.db['cycle_s']:.2f} s ({ratio:.1%}); wall "
            f"{first.wall_s:.1f} s -> {again.wall_s:.1f} s ({again.wall_s / first.wall_s:.0%})",
            f"   requests during the re-run: {req['feed_304']} feeds 304, {req['feed_200']} feeds 200, "
            f"{req['page']} pages, {req['robots']} robots.txt; new articles {again.db['new']}",
            f"   target <= 5% of the first run: cycle {verdict(ratio <= 0.05)} ({ratio:.1%}); "
            f"wall clock {verdict(again.wall_s / first.wall_s <= 0.05)} (process start-up and imports are fixed costs)"]


# ---------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.pages} pages, {QUICK.scale}x scale")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)
    if not ARTICLES.is_dir():
        sys.exit(f"corpus not found: {ARTICLES}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="newsmon-ingest-bench-") as tmp:
        bench = Bench(QUICK if args.quick else FULL, Path(tmp), args.quick)
        try:
            bench.run_all()
        finally:
            bench.close()
        command = ".venv/bin/python bench/ingest_bench.py" + (" --quick" if args.quick else "")
        print(report(bench, time.perf_counter() - started, command))
    return 0


def _child(argv: list[str]) -> int:
    kind, rest = argv[0], argv[1:]
    if kind == "serve":
        spec = json.loads(rest[0])
        serve({k: (v[0], v[1]) for k, v in spec["batches"].items()}, spec["pages"])
    else:
        {"plain": child_plain, "flow": child_flow, "parts": child_parts}[kind](*rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
