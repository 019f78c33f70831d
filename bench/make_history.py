"""Synthetic article history for benchmarks, as Parquet files for `newsmon import FILE...`.

    .venv/bin/python bench/make_history.py OUT_DIR --articles N [--seed 7] [--rows-per-file 100000]
                                           [--copy-rate 0.01] [--end YYYY-MM-DD] [--overwrite]

Writes to OUT_DIR:

* history-0000.parquet, history-0001.parquet, ...: N articles in all, --rows-per-file per file (the
  last one may hold fewer), in published_at order, ZSTD-compressed, with the import columns
  url, text, title, published_at (TIMESTAMP WITH TIME ZONE), language, author, feed_url
  (VARCHAR except published_at; url and text never NULL, author NULL for ~30% of rows).
* planted.parquet: the ground truth, one row per planted copy: url (the copy), original_url,
  kind ('exact' or 'near').

Articles. Each text is a random mix of 28-50 real sentences (the range is fitted to the corpus so
that texts average ~4,500 characters) drawn from the article bodies of
shared/corpus/articles/ground_truth.json: the sentences are deduplicated and have at least 5 words
and no CJK; they are grouped in paragraphs of ~3 sentences. Two unrelated texts share almost no
5-word shingle. title is the first sentence cut to ~80 characters; url is
https://site{k}.example/{yyyy}/{mm}/{slug}-{i} (k one of 500 sites, a few large and a long tail of
small ones; i the row number over all files, so urls are unique); feed_url is
https://site{k}.example/feed.xml; published_at is spread evenly over the 365 days before --end
(00:00 UTC, default today), later rows later; language is 'en', 'fr' or 'de' at random (metadata
only: the sentences are in whatever language the corpus has, mostly English).

Planted copies. round(N * --copy-rate) rows, about half exact and half near copies, each of an earlier
original article (never of a copy), on another site, published 5 minutes to 7 days after the
original (median ~8 hours; always strictly later; the copy takes the time of its row, so all rows
stay in published_at order):
* exact: the original's text, byte for byte or with only case, quotes, punctuation or whitespace
  changed, so newsmon's normalised content hash is the same;
* near: the original with 5-15% of its sentences dropped or replaced, and/or a short credit
  paragraph ("Reporting by X; editing by Y") appended; every near copy is checked to keep a Jaccard
  similarity of at least 0.75 between the 5-word shingle sets (of newsmon's tokens) of the two texts
  (an edit that falls below is redone smaller).

The output is the same for the same arguments (seed, articles, rows per file, copy rate and
--end). Memory stays flat (~0.6 GB, whatever N): the rows of one file are written as NDJSON to a
temporary directory inside OUT_DIR (~4.5 KB per row: 450 MB for 100,000 rows, two files at most),
which duckdb converts to Parquet in a background thread while the next file is generated; of the
originals only the sentence numbers of the most recent 20,000-40,000 are kept to copy from.
"""
from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, NamedTuple

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ingest.dedup import tokens  # noqa: E402

CORPUS = REPO.parent / "shared/corpus/articles/ground_truth.json"

TARGET_CHARS = 4500
SPREAD = 11  # sentences per text: the mean fitted to TARGET_CHARS, +- SPREAD
PARAGRAPH_BREAK = 0.3  # chance that a sentence ends its paragraph: ~3.3 sentences per paragraph
SITES = 500
DAYS = 365
LANGUAGES = (b"en", b"fr", b"de")
LANGUAGE_WEIGHTS = (0.6, 0.3, 0.1)
NO_AUTHOR = 0.3
EXACT_SHARE = 0.5
MIN_DELAY_H = 5 / 60  # a copy follows its original by MIN_DELAY_H plus an exponential delay of mean
MEAN_DELAY_H = 12.0  # MEAN_DELAY_H, capped at MAX_DELAY_H
MAX_DELAY_H = 7 * 24.0
RECENT = 20_000  # originals kept to copy from (between RECENT and 2*RECENT); older ones are forgotten
SHINGLE = 5
MIN_NEAR_JACCARD = 0.75  # near copies stay well above newsmon's default near_threshold of 0.6 (MinHash noise ~0.04)
TITLE_CHARS = 80
ROW_GROUP = 10_000  # duckdb buffers a whole row group: the default 122,880 rows would be ~1 GB of text

FIRST = ("Anna", "David", "Li", "Sofia", "James", "Maria", "Lucas", "Emma", "Omar", "Chloé", "Jonas",
         "Aisha", "Pierre", "Hanna", "Mateo", "Yuki", "Grace", "Tomás", "Nadia", "Felix")
LAST = ("Keller", "Moreau", "Wei", "Rossi", "Okafor", "Santos", "Dubois", "Schmidt", "Nguyen", "Garcia",
        "Martin", "Müller", "Kowalski", "Haddad", "Lefèvre", "Brown", "Silva", "Tanaka", "Novak", "Weber")
AUTHORS = [f"{first} {last}" for first in FIRST for last in LAST]
CREDITS = (
    "Reporting by {a}; editing by {b}.",
    "Additional reporting by {a} and {b}; editing by {c}.",
    "This story was first published on site{k}.example. Reporting by {a}.",
    "Copyright {y} site{k}.example. All rights reserved. Distributed by {a} for the wire desk.",
)

# Split after . ! ? and whitespace, but not after the usual English abbreviations (otherwise
# "Mr. Smith said" becomes two "sentences").
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bNo\.)(?<!\bMrs\.)(?<!\bU\.S\.)\s+")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")

# The columns of the temporary NDJSON rows, and the SELECT that makes them the import columns.
NDJSON_COLUMNS = ("{'url': 'VARCHAR', 'text': 'VARCHAR', 'title': 'VARCHAR', 'us': 'BIGINT', "
                  "'language': 'VARCHAR', 'author': 'VARCHAR', 'feed_url': 'VARCHAR'}")
IMPORT_SELECT = "url, text, title, make_timestamptz(us) AS published_at, language, author, feed_url"
PLANTED_COLUMNS = "{'url': 'VARCHAR', 'original_url': 'VARCHAR', 'kind': 'VARCHAR'}"


def json_str(s: str) -> bytes:
    """s escaped for the inside of a JSON string, UTF-8."""
    return json.dumps(s, ensure_ascii=False)[1:-1].encode("utf-8")


def sql_str(path: Path) -> str:
    """A path as an SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


# ---------------------------------------------------------------- sentence pool

def load_sentences(corpus: Path) -> list[str]:
    """Distinct sentences of the corpus bodies with at least 5 words and no CJK, in corpus order."""
    truth = json.loads(corpus.read_text(encoding="utf-8"))
    seen: dict[str, None] = {}
    for key in sorted(truth):
        for para in (truth[key].get("articleBody") or "").split("\n"):
            for sentence in _SENTENCE_END.split(para.strip()):
                sentence = " ".join(sentence.split())
                # Short fragments ("Buy Now", "Photo:") recur across articles, and CJK text has no
                # spaces to count words by: both would make unrelated texts look alike.
                if len(sentence.split()) >= 5 and not _CJK.search(sentence):
                    seen.setdefault(sentence)
    return list(seen)


def title_of(sentence: str) -> str:
    """The sentence cut at a word boundary to about TITLE_CHARS characters."""
    if len(sentence) <= TITLE_CHARS:
        return sentence
    cut = sentence.rfind(" ", 0, TITLE_CHARS)
    return sentence[: cut if cut > 20 else TITLE_CHARS].rstrip(" ,;:") + "…"


def slug_of(title: str) -> str:
    """ASCII slug of the first words of a title ('story' when nothing ASCII is left)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return "-".join(_SLUG_JUNK.sub(" ", ascii_title).split()[:7])[:60].strip("-") or "story"


@dataclass(frozen=True)
class Pool:
    """The sentences, each with its separator: code c is sentence c % size followed by a space
    (c < size) or by a paragraph break (c >= size). A text is a list of codes, so an original is
    kept as a few hundred bytes of ints and the texts themselves are never held."""

    sentences: list[str]
    raw: list[str]  # piece of each code
    escaped: list[bytes]  # the same, JSON-escaped: a text goes to the NDJSON file piece by piece
    last: list[bytes]  # sentence c % size escaped, without separator: ends a text
    lengths: np.ndarray  # characters of each piece
    titles: list[str]  # title, its escaped form and url slug of a text starting with sentence c % size
    titles_escaped: list[bytes]
    slugs: list[str]
    lo: int  # sentences per text, inclusive range
    hi: int

    @classmethod
    def build(cls, sentences: list[str]) -> "Pool":
        """Pool of these sentences, with the sentences-per-text range fitted to TARGET_CHARS."""
        raw = [s + " " for s in sentences] + [s + "\n\n" for s in sentences]
        mid = round(TARGET_CHARS / (sum(map(len, raw)) / len(raw) + PARAGRAPH_BREAK - 0.5))
        titles = [title_of(s) for s in sentences]
        return cls(sentences, raw, [json_str(p) for p in raw], [json_str(s) for s in sentences],
                   np.array([len(p) for p in raw], dtype=np.int64), titles, [json_str(t) for t in titles],
                   [slug_of(t) for t in titles], max(2, mid - SPREAD), mid + SPREAD)

    @property
    def size(self) -> int:
        """Number of distinct sentences."""
        return len(self.sentences)

    def text(self, codes: list[int], suffix: str = "") -> str:
        """The text of a code list (and an optional final paragraph)."""
        return "".join([self.raw[c] for c in codes[:-1]]) + self.sentences[codes[-1] % self.size] + suffix

    def write_text(self, out: BinaryIO, codes: list[int]) -> None:
        """The JSON-escaped text of a code list (the last sentence without its separator)."""
        if len(codes) > 1:
            out.write(b"".join(itemgetter(*codes)(self.escaped)[:-1]))  # the fastest way measured
        out.write(self.last[codes[-1] % self.size])


# ---------------------------------------------------------------- planted copies

class Original(NamedTuple):
    """What is kept of an original to copy it: its codes, never its text."""

    url: str
    at_us: int
    site: int
    codes: np.ndarray  # a view into the codes drawn for its file (int32)
    language: bytes
    author: int  # index in AUTHORS, -1 for none


class Recent:
    """The most recent originals, in published_at order: between RECENT and 2*RECENT of them."""

    def __init__(self) -> None:
        self.items: list[Original] = []
        self.times: list[int] = []

    def add(self, original: Original) -> None:
        """Remember an original; forget the oldest RECENT once 2*RECENT are held (amortised O(1))."""
        self.items.append(original)
        self.times.append(original.at_us)
        if len(self.items) >= 2 * RECENT:
            del self.items[:RECENT], self.times[:RECENT]

    def pick(self, at_us: int, rnd: random.Random) -> Original:
        """The original published last before at_us minus a random syndication delay."""
        delay_h = MIN_DELAY_H + min(rnd.expovariate(1.0 / MEAN_DELAY_H), MAX_DELAY_H)
        i = bisect.bisect_right(self.times, at_us - int(delay_h * 3600e6)) - 1
        return self.items[max(i, 0)]


def shingle_set(text: str) -> set[str]:
    """5-word shingles of newsmon's tokens of the text."""
    words = tokens(text)
    return {" ".join(words[i : i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets."""
    return len(a & b) / len(a | b)


def exact_variant(text: str, rnd: random.Random) -> str:
    """The same text, or with case, quotes, punctuation or whitespace changed (same normalised text)."""
    kinds = rnd.sample(("same", "case", "quotes", "punctuation", "whitespace"), 2)
    if "same" in kinds:
        return text
    if "case" in kinds:
        head = text.find("\n\n")
        head = len(text) if head < 0 else head
        text = text[:head].upper() + text[head:]  # an all-caps lede, as some wire feeds send it
    if "quotes" in kinds:
        text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    if "punctuation" in kinds:
        text = text.replace(".\n\n", "\n\n").replace(" — ", " - ").replace("...", "…")
    if "whitespace" in kinds:
        text = "\n " + text.replace("\n\n", "\n \n").replace(". ", ".  ") + " \n"
    return text


def credit(rnd: random.Random, year: int) -> str:
    """A short credit paragraph, as wires and syndication partners append."""
    line = rnd.choice(CREDITS).format(a=rnd.choice(AUTHORS), b=rnd.choice(AUTHORS), c=rnd.choice(AUTHORS),
                                      k=rnd.randrange(SITES), y=year)
    return "\n\n" + line


def edit_codes(codes: list[int], pool: Pool, rnd: random.Random, frac: float, replace: bool) -> list[int]:
    """Drop, or replace by random pool sentences, a fraction of the sentences (at least one)."""
    k = min(len(codes) - 1, max(1, round(len(codes) * frac)))
    where = set(rnd.sample(range(len(codes)), k))
    if not replace:
        return [c for i, c in enumerate(codes) if i not in where]
    # A replacement keeps the separator of the sentence it replaces: same paragraph layout.
    return [rnd.randrange(pool.size) + (c // pool.size) * pool.size if i in where else c
            for i, c in enumerate(codes)]


def near_copy(codes: list[int], pool: Pool, rnd: random.Random, year: int) -> tuple[list[int], str]:
    """Codes and suffix of an edited copy whose shingle Jaccard to the original is >= MIN_NEAR_JACCARD."""
    before = shingle_set(pool.text(codes))
    for attempt in range(4):
        kind = rnd.choice(("drop", "replace", "credit", "drop+credit"))
        # Each failed attempt halves the edit; the last resort (a credit line only) always passes.
        frac = rnd.uniform(0.05, 0.15) / 2**attempt
        new = codes if kind == "credit" else edit_codes(codes, pool, rnd, frac, kind == "replace")
        suffix = credit(rnd, year) if "credit" in kind else ""
        if jaccard(before, shingle_set(pool.text(new, suffix))) >= MIN_NEAR_JACCARD:
            return new, suffix
    return codes, credit(rnd, year)


# ---------------------------------------------------------------- rows

@dataclass
class Plan:
    """Run-wide settings and the rows that are planted copies."""

    articles: int
    rows_per_file: int
    start_us: int
    span_us: int
    copy_rows: np.ndarray  # sorted
    copy_exact: np.ndarray  # True: exact, False: near
    seeds: list[np.random.SeedSequence]  # one per file

    def copies_in(self, first: int, stop: int) -> dict[int, bool]:
        """Row -> is exact, for the copies among rows first..stop-1."""
        lo, hi = np.searchsorted(self.copy_rows, [first, stop])
        return dict(zip(self.copy_rows[lo:hi].tolist(), self.copy_exact[lo:hi].tolist()))


def make_plan(articles: int, rows_per_file: int, copy_rate: float, seed: int, end: date) -> Plan:
    """Choose the copy rows and their kinds up front; everything else is drawn file by file."""
    n_files = -(-articles // rows_per_file)
    plan_seed, *file_seeds = np.random.SeedSequence(seed).spawn(n_files + 1)
    rng = np.random.default_rng(plan_seed)
    n_copies = min(round(articles * copy_rate), articles - 1)  # row 0 is always an original
    rows = np.sort(rng.choice(np.arange(1, articles), size=n_copies, replace=False)) if n_copies else np.zeros(0, int)
    end_us = int(datetime(end.year, end.month, end.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    span_us = DAYS * 86_400_000_000
    exact = rng.random(n_copies) < EXACT_SHARE
    return Plan(articles, rows_per_file, end_us - span_us, span_us, rows, exact, file_seeds)


def site_weights() -> np.ndarray:
    """A few large sites and a long tail of small ones (Zipf-like)."""
    w = 1.0 / np.arange(1, SITES + 1) ** 0.8
    return w / w.sum()


def year_month(at_us: int) -> str:
    """'yyyy/mm' of a UTC timestamp in microseconds."""
    at = datetime.fromtimestamp(at_us // 1_000_000, timezone.utc)
    return f"{at.year:04d}/{at.month:02d}"


SITE_ROOTS = [f"https://site{k}.example/" for k in range(SITES)]
FEEDS = [f"https://site{k}.example/feed.xml".encode() for k in range(SITES)]
AUTHORS_JSON = [b'"' + json_str(a) + b'"' for a in AUTHORS] + [b"null"]  # index -1 is null


class RowWriter:
    """Writes rows as NDJSON lines with the columns of NDJSON_COLUMNS."""

    def __init__(self, out: BinaryIO, pool: Pool) -> None:
        self.out = out
        self.pool = pool

    def original(self, url: str, codes: list[int], at_us: int, language: bytes, author: int, site: int) -> None:
        """A row whose text is given by pool codes."""
        self.out.write(b'{"url":"%b","text":"' % url.encode())
        self.pool.write_text(self.out, codes)
        self.rest(codes, at_us, language, author, site)

    def copy(self, url: str, text: str, codes: list[int], at_us: int, language: bytes, author: int, site: int) -> None:
        """A row with its own text; codes give the first sentence (title)."""
        self.out.write(b'{"url":"%b","text":"%b' % (url.encode(), json_str(text)))
        self.rest(codes, at_us, language, author, site)

    def rest(self, codes: list[int], at_us: int, language: bytes, author: int, site: int) -> None:
        """The columns after text."""
        title = self.pool.titles_escaped[codes[0] % self.pool.size]
        self.out.write(b'","title":"%b","us":%d,"language":"%b","author":%b,"feed_url":"%b"}\n'
                       % (title, at_us, language, AUTHORS_JSON[author], FEEDS[site]))


@dataclass
class Drawn:
    """The random draws for all rows of one file, made in bulk with numpy."""

    codes: np.ndarray  # int32: a Python list would cost ~150 MB per 100,000 rows
    offsets: list[int]  # the codes of row j are codes[offsets[j]:offsets[j + 1]]
    chars: np.ndarray  # text length of row j if it is an original
    sites: list[int]
    languages: list[int]
    authors: list[int]  # -1: no author
    at_us: list[int]
    year_months: list[str]


def draw(plan: Plan, pool: Pool, rng: np.random.Generator, first: int, n: int) -> Drawn:
    """Sentences, site, language, author and time of rows first..first+n-1 (copies use only some)."""
    counts = rng.integers(pool.lo, pool.hi + 1, size=n)
    total = int(counts.sum())
    breaks = rng.random(total) < PARAGRAPH_BREAK
    codes = (rng.integers(0, pool.size, size=total) + pool.size * breaks).astype(np.int32)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    # A text's length: its pieces, less the separator of its last sentence (not written).
    last = codes[offsets[1:] - 1]
    chars = np.add.reduceat(pool.lengths[codes], offsets[:-1]) - pool.lengths[last] + pool.lengths[last % pool.size] - 1
    sites = rng.choice(SITES, size=n, p=site_weights())
    languages = rng.choice(len(LANGUAGES), size=n, p=LANGUAGE_WEIGHTS)
    authors = np.where(rng.random(n) < NO_AUTHOR, -1, rng.integers(len(AUTHORS), size=n))
    # Row i is published in the i-th of `articles` equal slices of the span: later rows are later.
    slot = plan.span_us / plan.articles
    at_us = (plan.start_us + (np.arange(first, first + n) + rng.random(n)) * slot).astype(np.int64)
    months = np.datetime_as_string(at_us.astype("datetime64[us]").astype("datetime64[M]"))
    return Drawn(codes, offsets.tolist(), chars, sites.tolist(), languages.tolist(), authors.tolist(),
                 at_us.tolist(), [m.replace("-", "/") for m in months.tolist()])


def write_rows(plan: Plan, file_no: int, pool: Pool, recent: Recent, planted: list, out: BinaryIO) -> int:
    """Write the rows of one file as NDJSON; originals go to `recent`, copies to `planted`. Returns
    the number of characters of text written."""
    first = file_no * plan.rows_per_file
    n = min(plan.rows_per_file, plan.articles - first)
    rng = np.random.default_rng(plan.seeds[file_no])
    rnd = random.Random(int(rng.integers(2**63)))  # per-copy draws: Python's random is faster per call
    d = draw(plan, pool, rng, first, n)
    copies = plan.copies_in(first, first + n)
    rows = RowWriter(out, pool)
    chars = int(d.chars.sum())  # corrected below for the copy rows
    for j in range(n):
        row = first + j
        exact = copies.get(row)
        if exact is None:
            view = d.codes[d.offsets[j] : d.offsets[j + 1]]
            codes = view.tolist()  # indexing lists with Python ints is much faster than with numpy ones
            url = f"{SITE_ROOTS[d.sites[j]]}{d.year_months[j]}/{pool.slugs[codes[0] % pool.size]}-{row}"
            language = LANGUAGES[d.languages[j]]
            rows.original(url, codes, d.at_us[j], language, d.authors[j], d.sites[j])
            recent.add(Original(url, d.at_us[j], d.sites[j], view, language, d.authors[j]))
            continue
        orig = recent.pick(d.at_us[j], rnd)
        # The copy takes its row's time, which is later than any earlier row's (the guard is for
        # rounding only): rows stay in published_at order.
        at_us = max(d.at_us[j], orig.at_us + 1)
        site = (orig.site + 1 + rnd.randrange(SITES - 1)) % SITES  # never the original's site
        codes = orig.codes.tolist()
        if exact:
            text = exact_variant(pool.text(codes), rnd)
        else:
            codes, suffix = near_copy(codes, pool, rnd, int(year_month(at_us)[:4]))
            text = pool.text(codes, suffix)
        url = f"{SITE_ROOTS[site]}{year_month(at_us)}/{pool.slugs[codes[0] % pool.size]}-{row}"
        author = orig.author if rnd.random() < 0.5 else d.authors[j]  # the same byline or the partner's own
        rows.copy(url, text, codes, at_us, orig.language, author, site)
        planted.append((url, orig.url, "exact" if exact else "near"))
        chars += len(text) - int(d.chars[j])
    return chars


# ---------------------------------------------------------------- files

def ndjson_to_parquet(con: duckdb.DuckDBPyConnection, ndjson: Path, columns: str, select: str, path: Path) -> None:
    """Convert an NDJSON file to a ZSTD Parquet file and delete it; path appears only once complete."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        cur = con.cursor()  # one cursor per thread; each starts with the progress bar on
        cur.execute("SET enable_progress_bar = false")
        cur.execute(
            f"""COPY (SELECT {select}
                      FROM read_json({sql_str(ndjson)}, format = 'newline_delimited', columns = {columns}))
                TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP})"""
        )
        os.replace(tmp, path)
    finally:
        ndjson.unlink()
        tmp.unlink(missing_ok=True)


def write_planted(planted: list[tuple[str, str, str]], out: BinaryIO) -> None:
    """The ground truth rows: copy url, original url, kind."""
    for url, original_url, kind in planted:
        out.write(json.dumps({"url": url, "original_url": original_url, "kind": kind}).encode() + b"\n")


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create OUT_DIR; refuse to mix with the output of an earlier run unless told to remove it."""
    out.mkdir(parents=True, exist_ok=True)
    patterns = ("history-*.parquet*", "planted.parquet*", ".make_history-*")
    old = [p for pattern in patterns for p in sorted(out.glob(pattern))]
    if old and not overwrite:
        sys.exit(f"{out} already holds {old[0].name} and {len(old) - 1} more file(s) of a run; "
                 "pass --overwrite to replace them")
    for p in old:
        if p.is_dir():
            shutil.rmtree(p)  # the work directory of a run that was killed
        else:
            p.unlink()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    ap.add_argument("--articles", type=int, required=True, help="rows in all history files together")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rows-per-file", type=int, default=100_000)
    ap.add_argument("--copy-rate", type=float, default=0.01, help="share of rows that are planted copies")
    ap.add_argument("--end", type=date.fromisoformat, default=datetime.now(timezone.utc).date(),
                    help="published_at covers the 365 days before this date, 00:00 UTC (default: today)")
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="ground_truth.json with the source bodies")
    ap.add_argument("--overwrite", action="store_true", help="first delete the files of an earlier run in OUT_DIR")
    args = ap.parse_args(argv)
    if args.articles < 1 or args.rows_per_file < 1:
        ap.error("--articles and --rows-per-file must be at least 1")
    if not 0.0 <= args.copy_rate <= 0.5:
        ap.error("--copy-rate must be between 0 and 0.5")
    return args


def main(argv: list[str] | None = None) -> None:
    """Generate the history files and the ground truth."""
    args = parse_args(argv)
    started = time.perf_counter()
    # Millions of small objects and no reference cycles: the cyclic collector would only rescan
    # the kept originals again and again (~20% of the run time).
    gc.disable()
    prepare_out_dir(args.out_dir, args.overwrite)
    pool = Pool.build(load_sentences(args.corpus))
    plan = make_plan(args.articles, args.rows_per_file, args.copy_rate, args.seed, args.end)
    con = duckdb.connect()
    # One duckdb thread reads and compresses while Python generates; a single thread also keeps the
    # row groups, and so the files, byte-identical from run to run.
    con.execute("SET threads = 1")
    recent, planted, chars = Recent(), [], 0
    # The NDJSON files go next to the output (/tmp may be a RAM disk); duckdb reads them from disk
    # with flat memory (it buffers all of a FIFO's input, so streaming through one does not pay).
    with (tempfile.TemporaryDirectory(dir=args.out_dir, prefix=".make_history-") as work,
          ThreadPoolExecutor(max_workers=1) as converter):
        pending: Future | None = None
        for file_no in range(len(plan.seeds)):
            ndjson = Path(work) / f"history-{file_no:04d}.ndjson"
            with ndjson.open("wb", buffering=1 << 20) as out:
                chars += write_rows(plan, file_no, pool, recent, planted, out)
            if pending is not None:
                pending.result()  # one file converts while the next is generated, never more
            path = args.out_dir / f"history-{file_no:04d}.parquet"
            pending = converter.submit(ndjson_to_parquet, con, ndjson, NDJSON_COLUMNS, IMPORT_SELECT, path)
            pending.add_done_callback(
                lambda _, p=path: print(f"{p.name} {time.perf_counter() - started:.1f} s", file=sys.stderr))
        if pending is not None:
            pending.result()
        ndjson = Path(work) / "planted.ndjson"
        with ndjson.open("wb") as out:
            write_planted(planted, out)
        ndjson_to_parquet(con, ndjson, PLANTED_COLUMNS, "url, original_url, kind", args.out_dir / "planted.parquet")
    size = sum(f.stat().st_size for f in args.out_dir.glob("*.parquet"))
    exact = sum(1 for p in planted if p[2] == "exact")
    print(f"{args.articles} articles in {len(plan.seeds)} file(s), {len(planted)} planted copies "
          f"({exact} exact, {len(planted) - exact} near), mean text {chars / args.articles:.0f} chars, "
          f"{size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s "
          f"(pool: {pool.size} sentences, {pool.lo}-{pool.hi} per text)")


if __name__ == "__main__":
    main()
