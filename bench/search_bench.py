"""Search benchmark: known-item search on the corpus, stemming checks, and latency/upkeep/size at scale.

    .venv/bin/python bench/search_bench.py                         # corpus part only (~1 min)
    .venv/bin/python bench/search_bench.py --big CONFIG            # + a store of 1M articles (see docs/BENCHMARKS.md)

What each figure measures:
  known-item  the 181 corpus pages go through the real `newsmon run` (10 feeds on a loopback server in its own
              process) into an empty store; for each page, a query of 3 distinctive words of its ground-truth
              body (words of >= 4 letters found in at most 2 of the 181 bodies, drawn at random, seed = page
              number) is searched with search() as `newsmon search` does; rank of the page among the hits
  stemming    inflected French forms of words of the seed article (imported into the same store) and English
              plural/singular swaps of a distinctive word of each English corpus page: the page must be in the top 3
  upkeep      the "search index upkeep" the run logs (adding its articles, committing per batch, closing the
              writer) over the wall time of the whole `newsmon run` process; for the empty store and, with --big,
              for 181 new pages into the big store
  latency     with --big: search() in this process (opening the index each time, as a `newsmon search` process
              does, with snippets) for 200 queries drawn from corpus sentences (1-3 plain words, phrases, a
              language filter, --since, --originals); p50/p95. Also the wall time of 5 `newsmon search` processes
  size        with --big: bytes of <store>.lake/search/ over the bytes of title + text stored in the lake
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_bench import write_config  # noqa: E402
from bench.ingest_site import ARTICLES, Site, child_env, feed_urls, page_path  # noqa: E402

NEWSMON = str(Path(sys.executable).with_name("newsmon"))
SEED_FORMS = [  # (query, why): inflected or unaccented forms of words of tests/fixtures/seed_article.txt
    ("opérations déminages", "plural of opération, déminage"),
    ("soldat état-unien", "singular of soldats états-uniens"),
    ("combattant capturés", "singular of combattants, participle capturé"),
    ("gisement petrolier", "singular of gisements, no accent"),
    ("declarer commandant", "infinitive of déclaré, no accent"),
    ("grève", "absent from the seed: must not find it"),
]


def run_newsmon(args: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([NEWSMON, *args], env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"newsmon {' '.join(args[:2])}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started, proc.stdout + proc.stderr


def upkeep_s(output: str) -> float:
    return float(re.search(r"search index upkeep: ([\d.]+)s", output).group(1))


def distinctive_queries(truth: dict[str, dict]) -> dict[str, str]:
    """Page id -> 3 words of its body found in at most 2 bodies (fewer when the body has fewer)."""
    from alerts.query import normalise_tokens

    words = {pid: normalise_tokens(t["articleBody"]) for pid, t in truth.items()}
    df = Counter(w for ws in words.values() for w in set(ws))
    queries = {}
    for n, pid in enumerate(sorted(truth)):
        body_words = list(dict.fromkeys(words[pid]))
        rare = [w for w in body_words if len(w) >= 4 and not w.isdigit() and df[w] <= 2]
        pool = rare if len(rare) >= 3 else sorted(body_words, key=lambda w: (df[w], -len(w)))[:6]
        queries[pid] = " ".join(random.Random(n).sample(pool, min(3, len(pool))))
    return queries


def known_item(database: Path, base: str, truth: dict, queries: dict) -> tuple[list[int], list[str]]:
    from flows.search import search

    ranks, misses = [], []
    for pid in sorted(truth):
        url = base + page_path(0, pid)
        hits = [h.url for h in search(database, queries[pid], limit=10)]
        rank = hits.index(url) + 1 if url in hits else 0
        ranks.append(rank)
        if rank != 1:
            misses.append(f"{pid[:8]} rank {rank or '>10'}: {queries[pid]!r}")
    return ranks, misses


def stemming_checks(database: Path, base: str, truth: dict) -> list[tuple[str, bool]]:
    from alerts.query import normalise_tokens
    from flows.search import search
    from storage.db import open_reader

    out = []
    seed = "https://seed.example/syrie-deminage"
    for text, why in SEED_FORMS:
        found = seed in [h.url for h in search(database, text, limit=3)]
        out.append((f"seed: {text!r} ({why})", found == ("absent" not in why)))
    con = open_reader(database)
    english = {url for (url,) in con.execute("SELECT url FROM articles WHERE language = 'en'").fetchall()}
    con.close()
    df = Counter(w for t in truth.values() for w in set(normalise_tokens(t["articleBody"])))
    for n, pid in enumerate(sorted(truth)):
        url = base + page_path(0, pid)
        if url not in english:
            continue
        words = [w for w in dict.fromkeys(normalise_tokens(truth[pid]["articleBody"]))
                 if len(w) >= 5 and w.isalpha() and w.isascii() and df[w] <= 2]
        plural = [w for w in words if w.endswith("s") and not w.endswith("ss")]
        singular = [w for w in words if not w.endswith("s")]
        if not plural or len(singular) < 2:
            continue
        rnd = random.Random(n)
        swapped = rnd.choice(plural)[:-1]
        query = " ".join([swapped] + rnd.sample(singular, 2))
        found = url in [h.url for h in search(database, query, limit=3)]
        out.append((f"en {pid[:8]}: {query!r} ({swapped}s in the page)", found))
    return out


def corpus_part(work: Path, env: dict) -> dict:
    truth = json.loads((ARTICLES / "ground_truth.json").read_text(encoding="utf-8"))
    site = Site({"one": ([0], len(truth))}, len(truth))
    try:
        database = work / "corpus" / "newsmon.duckdb"
        config = write_config(work, "corpus", feed_urls(site.base, "one"), database)
        wall, output = run_newsmon(["run", "--config", str(config)], env)
        seed = work / "seed.jsonl"
        seed.write_text(json.dumps({"url": "https://seed.example/syrie-deminage", "language": "fr",
                                    "title": "Syrie : opération de déminage contre Daesh",
                                    "text": (REPO / "tests/fixtures/seed_article.txt").read_text(encoding="utf-8")})
                        + "\n", encoding="utf-8")
        run_newsmon(["import", "--config", str(config), str(seed)], env)
        queries = distinctive_queries(truth)
        ranks, misses = known_item(database, site.base, truth, queries)
        stems = stemming_checks(database, site.base, truth)
    finally:
        site.close()
    return {"run_wall": wall, "upkeep": upkeep_s(output), "ranks": ranks, "misses": misses, "stems": stems,
            "new": re.search(r"articles: (\d+) new", output).group(1)}


def scale_queries(n: int) -> list[tuple[str, dict]]:
    """(query, filters) drawn from corpus sentences (the synthetic history is made of them)."""
    from alerts.query import normalise_tokens
    from search.query import Filters

    truth = json.loads((ARTICLES / "ground_truth.json").read_text(encoding="utf-8"))
    sentences = [s for t in truth.values() for s in re.split(r"(?<=[.!?])\s+", t["articleBody"])
                 if 6 <= len(s.split()) <= 40 and s.isascii()]
    rnd = random.Random(7)
    month = datetime.now(timezone.utc) - timedelta(days=30)
    out = []
    for i in range(n):
        words = [w for w in normalise_tokens(rnd.choice(sentences)) if len(w) >= 4]
        kind = i % 6
        if kind == 3 and len(words) >= 2:
            start = rnd.randrange(len(words) - 1)
            out.append((f'"{words[start]} {words[start + 1]}"', {}))
            continue
        text = " ".join(rnd.sample(words, min(len(words), 1 + i % 3)))
        extra = {4: {"filters": Filters(languages=("fr",))}, 5: {"filters": Filters(since=month)},
                 0: {"originals": True}}.get(kind, {})
        out.append((text, extra))
    return out


def scale_part(config: Path, work: Path, env: dict) -> dict:
    from flows.config import load_settings
    from flows.search import index_path, search
    from search.index import SearchIndex
    from storage.db import open_reader

    database = load_settings(config).database
    SearchIndex.open_reader(index_path(database))  # built beforehand with `newsmon search --reindex`
    latencies = []
    for text, extra in scale_queries(200):
        started = time.perf_counter()
        search(database, text, extra.get("filters", search.__defaults__[0]), 20, extra.get("originals", False))
        latencies.append(time.perf_counter() - started)
    walls = [run_newsmon(["search", "--config", str(config), "--format", "json", q], env)[0]
             for q in ("strike port", "election results", '"prime minister"', "climate change", "apple iphone")]
    con = open_reader(database)
    text = con.execute("SELECT sum(strlen(text)) + sum(coalesce(strlen(title), 0)), count(*) FROM articles").fetchone()
    con.close()
    size = SearchIndex.open_reader(index_path(database)).size_bytes()
    site = Site({"fresh": ([41], 181)}, 181)
    try:
        run_config = write_config(work, "big-run", feed_urls(site.base, "fresh"), database)
        wall, output = run_newsmon(["run", "--config", str(run_config)], env)
    finally:
        site.close()
    return {"latencies": latencies, "walls": walls, "text": text[0], "articles": text[1], "size": size,
            "run_wall": wall, "upkeep": upkeep_s(output), "new": re.search(r"articles: (\d+) new", output).group(1)}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def report(corpus: dict, big: dict | None, elapsed: float, command: str) -> str:
    ranks = corpus["ranks"]
    top1 = sum(r == 1 for r in ranks) / len(ranks)
    top3 = sum(1 <= r <= 3 for r in ranks) / len(ranks)
    passed = sum(ok for _, ok in corpus["stems"])
    lines = [f"$ {command}", "",
             f"known-item, {len(ranks)} corpus pages: rank 1 {top1:.1%} (target >= 90%), top 3 {top3:.1%} "
             f"(target >= 97%), not in top 10: {ranks.count(0)}",
             *[f"  {m}" for m in corpus["misses"]],
             f"stemming: {passed}/{len(corpus['stems'])} checks pass",
             *[f"  {'ok  ' if ok else 'FAIL'} {what}" for what, ok in corpus["stems"]],
             f"upkeep, empty store: {corpus['upkeep']:.2f} s of a {corpus['run_wall']:.1f} s run "
             f"({corpus['new']} new articles) = {corpus['upkeep'] / corpus['run_wall']:.1%} (target <= 10%)"]
    if big:
        lat = [x * 1000 for x in big["latencies"]]
        lines += [f"latency at {big['articles']:,} articles, 200 queries in-process: p50 {pct(lat, 50):.0f} ms "
                  f"(target <= 100), p95 {pct(lat, 95):.0f} ms (target <= 500), max {max(lat):.0f} ms",
                  f"`newsmon search` process wall: median {statistics.median(big['walls']):.2f} s "
                  f"({', '.join(f'{w:.2f}' for w in big['walls'])})",
                  f"index size: {big['size'] / 2**30:.2f} GiB / text {big['text'] / 2**30:.2f} GiB = "
                  f"{big['size'] / big['text']:.2f}x (target <= 0.5x)",
                  f"upkeep, big store: {big['upkeep']:.2f} s of a {big['run_wall']:.1f} s run ({big['new']} new "
                  f"articles) = {big['upkeep'] / big['run_wall']:.1%} (target <= 10%)"]
    lines.append(f"bench wall: {elapsed:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big", type=Path, help="config of a big store whose search index is built")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="newsmon-search-bench-"))
    env = {**child_env(), "PREFECT_HOME": str(work / "prefect-home")}
    corpus = corpus_part(work, env)
    big = scale_part(args.big, work, env) if args.big else None
    command = "python bench/search_bench.py" + (f" --big {args.big}" if args.big else "")
    print(report(corpus, big, time.perf_counter() - started, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
