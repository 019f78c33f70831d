"""Extraction quality on the 181 corpus pages: body F1, title, date and language, as newsmon stores them.

    .venv/bin/python bench/extract_quality.py            # both feed cases below
    .venv/bin/python bench/extract_quality.py --json F   # also write the figures to F

Each page goes through ingest.extract.extract_article, as a fetched page served from a neutral
loopback URL (so nothing is read from the corpus URL), in two cases:
    page only   the feed entry carries no title, date or author: everything comes from the page
    with feed   the entry carries what a feed gives: the page's <title> text and a publication time

What is compared, and with what (the corpus has only the URL and the body text as ground truth):
    body F1     bag of words against articleBody (CJK counted per character), mean over all pages
    date        the day in the corpus URL (/2019/11/18/, 2019-11-18, 20191118), for the pages whose URL has one;
                in the "with feed" case the feed's time is stored whatever the page says, so only "page only" counts
    language    py3langid on the ground-truth body (long, clean text: the best reference available)
    title       slug words of the corpus URL (3+ words) found in the stored title: mean recall, and the
                share of pages where at least 60% of them are found
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ARTICLES = Path(__file__).resolve().parents[2] / "shared/corpus/articles"

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+", re.UNICODE)
_URL_DAY = re.compile(r"(?<!\d)(20[0-2]\d)[/-]?(0[1-9]|1[0-2])[/-]?(0[1-9]|[12]\d|3[01])(?!\d)")
_SLUG_WORD = re.compile(r"[a-z]{3,}")
_SLUG_NOISE = {"html", "htm", "php", "aspx", "www", "com", "news", "article", "articles", "story", "the", "and",
               "for", "with", "amp", "index", "view"}
TITLE_HIT = 0.6  # share of slug words a title must hold to count as the page's headline


def tokens(text: str | None) -> Counter:
    """Lower-cased words; CJK ideographs and kana one per character (they have no spaces)."""
    return Counter(_TOKEN.findall((text or "").lower()))


def f1(got: str | None, truth: str) -> float:
    """Bag-of-words F1 of an extracted text against the ground truth."""
    g, t = tokens(got), tokens(truth)
    common = sum((g & t).values())
    if not common:
        return 0.0
    precision, recall = common / sum(g.values()), common / sum(t.values())
    return 2 * precision * recall / (precision + recall)


def url_day(url: str) -> date | None:
    """The publication day an article URL spells out, if any."""
    match = _URL_DAY.search(url)
    if not match:
        return None
    try:
        return date(*map(int, match.groups()))
    except ValueError:
        return None


def slug_words(url: str) -> set[str]:
    """Words of the URL path's longest segment (the slug), when it has 3 or more."""
    path = url.split("?")[0].split("://", 1)[-1].partition("/")[2]
    best = max(path.split("/"), key=lambda s: len(_SLUG_WORD.findall(s.lower())), default="")
    words = set(_SLUG_WORD.findall(best.lower())) - _SLUG_NOISE
    return words if len(words) >= 3 else set()


def page_title(body: bytes) -> str | None:
    """The <title> text, as the benchmark's feeds give it."""
    import html

    match = re.search(rb"<title[^>]*>(.*?)</title>", body[:200_000], re.S | re.I)
    return " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split()) or None if match else None


def measure(with_feed: bool) -> dict:
    """Extract every corpus page and score what would be stored."""
    import py3langid

    from ingest.extract import extract_article
    from ingest.models import OK, FeedEntry, FetchedPage

    truth = json.loads((ARTICLES / "ground_truth.json").read_text(encoding="utf-8"))
    now = datetime.now(timezone.utc)
    feed_time = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc)
    scores: dict[str, list[float]] = {"f1": [], "date": [], "language": [], "title_recall": [], "title_hit": []}
    empty, seconds = 0, 0.0
    for page_id in sorted(truth):
        body, gold = (ARTICLES / f"{page_id}.html").read_bytes(), truth[page_id]
        url = f"http://127.0.0.1:8/c0/{page_id}.html"
        entry = FeedEntry("http://127.0.0.1:8/feed.xml", url, url, page_title(body) if with_feed else None,
                          feed_time if with_feed else None, None)
        started = time.process_time()
        article = extract_article(FetchedPage(entry, OK, 200, url, body, "text/html", now))
        seconds += time.process_time() - started
        empty += article is None
        scores["f1"].append(f1(article.text if article else "", gold["articleBody"]))
        scores["language"].append(float(article is not None and
                                        article.language == py3langid.classify(gold["articleBody"])[0]))
        day = url_day(gold["url"])
        if day is not None and not with_feed:
            got = article.published_at.date() if article and article.published_at else None
            scores["date"].append(float(got == day))
        words = slug_words(gold["url"])
        if words:
            found = len(words & set(tokens(article.title if article else ""))) / len(words)
            scores["title_recall"].append(found)
            scores["title_hit"].append(float(found >= TITLE_HIT))
    return {"pages": len(truth), "no_article": empty, "cpu_ms_per_page": 1000 * seconds / len(truth),
            **{k: statistics.mean(v) if v else None for k, v in scores.items()},
            "date_pages": len(scores["date"]), "title_pages": len(scores["title_recall"])}


def report(results: dict[str, dict]) -> str:
    """One line per case."""
    lines = ["case        pages  no article  body F1  date ok (pages)  language ok  title slug recall  "
             "title >=60% (pages)  CPU ms/page"]
    for case, r in results.items():
        date_ok = f"{r['date']:.3f} ({r['date_pages']})" if r["date"] is not None else "n/a (feed time)"
        lines.append(f"{case:<11} {r['pages']:>5}  {r['no_article']:>10}  {r['f1']:>7.3f}  {date_ok:>15}  "
                     f"{r['language']:>11.3f}  {r['title_recall']:>17.3f}  "
                     f"{r['title_hit']:.3f} ({r['title_pages']}){'':>6}  {r['cpu_ms_per_page']:>11.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = {"page only": measure(with_feed=False), "with feed": measure(with_feed=True)}
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
