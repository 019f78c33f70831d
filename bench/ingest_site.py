"""The benchmark's news site on loopback: corpus pages under distinct URLs, RSS feeds with ETags, robots.txt.

Run by bench/ingest_bench.py as a process of its own (`python bench/ingest_site.py SPEC`), so serving
never competes with the measured run for an interpreter lock. Copy k of a page is served at
/c<k>/<id>.html; copy k > 0 carries one distinct sentence in its body paragraph, so copies are near
duplicates rather than exact ones. Feeds answer 304 to the ETag they gave.
"""
from __future__ import annotations

import html
import json
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Callable, Iterator, Sequence
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus"
ARTICLES = CORPUS / "articles"
FEEDS = 37  # RSS feeds the items are spread over, round robin
MARKER = "zqbench"  # every inserted sentence carries it, so stored texts that differ can be counted
BASE_TIME = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc)


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
        self.proc = subprocess.Popen([sys.executable, __file__, spec],
                                     stdout=subprocess.PIPE, text=True, env=child_env())
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


def served_bodies(pages, copies: Sequence[int]) -> Iterator[bytes]:
    """The page bytes the site serves for `copies` of `pages`, in feed order (what a run downloads)."""
    points = {page_id: insertion_point(body, truth) for page_id, body, truth in pages}
    for copy in copies:
        for page_id, body, _ in pages:
            yield page_copy(body, points[page_id], copy, page_id)


def child_env() -> dict[str, str]:
    """The environment for child processes: no Prefect API, no NEWSMON_* overrides, no proxies."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "NEWSMON_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["PYTHONPATH"] = str(REPO)
    return env


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    serve({k: (v[0], v[1]) for k, v in spec["batches"].items()}, spec["pages"])
