"""Sharded ingest benchmark: N concurrent `newsmon run --shard K/N` processes on one PostgreSQL-catalog lake.

    .venv/bin/python bench/shard_bench.py                                   # 200 feeds x 5 entries, 1 and 3 shards
    .venv/bin/python bench/shard_bench.py --feeds 2000 --entries 10 --shards 1,2,4

A generated site (its own process, so it never competes with a run for the GIL) serves `--feeds`
RSS feeds of `--entries` distinct article pages each on 127.0.0.1, every response delayed by
`--latency-ms`. A throwaway PostgreSQL cluster (tests/postgres.py) holds one fresh database per
configuration. For each shard count the N processes start together and the wall time runs from
the first start to the last exit. Reported per configuration: wall, articles stored (must be
feeds x entries, once each), pages/s, scaling efficiency against one process, and the lake
commits run again after a conflict (summed from the runs' summaries).
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(latency_s)
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            feed = re.fullmatch(r"/f/(\d+)\.xml", self.path)
            page = re.fullmatch(r"/a/(\d+)/(\d+)\.html", self.path)
            if feed:
                body, kind = _feed(base, int(feed.group(1)), entries), "application/rss+xml"
            elif page:
                body, kind = _page(int(page.group(1)), int(page.group(2))), "text/html"
            else:
                body, kind = b"", "text/plain"
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def config(directory: Path, conninfo: str, base: str, feeds: int) -> Path:
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


def run(config_path: Path, shards: int, logs: Path) -> dict:
    """All shard processes at once; wall from the first start to the last exit."""
    started = time.monotonic()
    procs = []
    for k in range(1, shards + 1):
        args = [NEWSMON, "run", "--config", str(config_path)] + (["--shard", f"{k}/{shards}"] if shards > 1 else [])
        procs.append(subprocess.Popen(args, stdout=open(logs / f"{shards}-{k}.log", "wb"), stderr=subprocess.STDOUT))
    for p in procs:
        p.wait()
    wall = time.monotonic() - started
    text = "".join((logs / f"{shards}-{k}.log").read_text() for k in range(1, shards + 1))
    failed = [p.returncode for p in procs if p.returncode]
    articles = sum(int(m) for m in re.findall(r"^articles: (\d+) new", text, re.M))
    retries = sum(int(m) for m in re.findall(r"^lake:\s+(\d+) commit", text, re.M))
    return {"shards": shards, "wall": wall, "articles": articles, "retries": retries, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--shards", default="1,3")
    args = parser.parse_args()
    port_out = multiprocessing.Queue()
    site = multiprocessing.Process(target=serve, args=(port_out, args.entries, args.latency_ms / 1000), daemon=True)
    site.start()
    base = f"http://127.0.0.1:{port_out.get(timeout=30)}"
    results = []
    with PostgresCluster() as cluster, tempfile.TemporaryDirectory(prefix="newsmon-shard-bench-") as tmp:
        for shards in [int(s) for s in args.shards.split(",")]:
            path = config(Path(tmp) / f"s{shards}", cluster.new_database(), base, args.feeds)
            results.append(run(path, shards, Path(tmp)))
            r = results[-1]
            print(f"{shards} shard(s): {r['wall']:.1f}s, {r['articles']} articles, "
                  f"{r['articles'] / r['wall']:.1f} pages/s, {r['retries']} commit retries"
                  + (f", FAILED {r['failed']}" if r["failed"] else ""), flush=True)
    site.terminate()
    one = results[0]
    print(f"\n{args.feeds} feeds x {args.entries} entries, {args.latency_ms:.0f} ms per response, "
          f"{multiprocessing.cpu_count()} cores")
    print("| processes | wall | articles | pages/s | speed-up | efficiency | commit retries |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        speedup = one["wall"] / r["wall"]
        print(f"| {r['shards']} | {r['wall']:.1f} s | {r['articles']} | {r['articles'] / r['wall']:.1f} | "
              f"{speedup:.2f}x | {speedup / r['shards'] * one['shards']:.0%} | {r['retries']} |")


if __name__ == "__main__":
    main()
