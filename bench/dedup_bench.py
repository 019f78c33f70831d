"""Duplicate detection benchmark: quality on edited copies of real article bodies, and the cost of
the store stage (flows.persist: dedup index lookups, DuckLake commit) against stores of two sizes.

    .venv/bin/python bench/dedup_bench.py            # full run (10k and 100k stores)
    .venv/bin/python bench/dedup_bench.py --quick    # 2k and 20k stores, fewer inserts
    .venv/bin/python bench/dedup_bench.py --only scale

The scale part runs the code newsmon runs: storage.db.open_writer creates each store (a DuckLake
folder) with the migrations in storage/migrations, flows.persist.open_store builds its dedup index
(index.sqlite) by catching up from the lake, and every timed call is what flows.cycle.store_batch
does: prepare (MinHash, band keys) then store_articles. The lakes are filled directly: worker
processes sign the texts and write every articles column as NDJSON, which DuckDB loads with
read_json in one lake commit (storing 100k articles through store_articles would sign them all
again in one process). Band keys now live in index.sqlite, not in an article_bands table; the
per-run CHECKPOINT of the old publish step is replaced by the lake maintenance a run ends with.
datasketch (the `bench` extra) is needed only for the quality section's LSH comparison.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import flows.persist as persist  # noqa: E402
import storage.articles as article_store  # noqa: E402
import storage.index as key_index  # noqa: E402
from flows.config import StoragePolicy  # noqa: E402
from flows.cycle import PAGE_BATCH  # noqa: E402
from flows.maintenance import maintain  # noqa: E402
from flows.persist import StoreResult, open_store  # noqa: E402
from ingest.dedup import (  # noqa: E402
    NEAR, DedupParams, Member, band_keys, content_hash, plan_links, signature, similarity, tokens,
)
from ingest.models import Article  # noqa: E402
from ingest.urls import url_id  # noqa: E402
from storage.db import open_reader, open_writer, store_dir  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus"
DEFAULTS = DedupParams()
EDITS = ("new_intro", "appended", "drop_last_paragraph", "boilerplate", "reorder_10pct", "intro+appended+byline")
NAMES = ("Anna Keller", "David Moreau", "Li Wei", "Sofia Rossi", "James Okafor", "Maria Santos")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


# ---------------------------------------------------------------- quality: labelled set

def load_bodies() -> list[str]:
    """Ground-truth article bodies of the benchmark corpus, in id order."""
    truth = json.loads((CORPUS / "articles/ground_truth.json").read_text(encoding="utf-8"))
    return [truth[k]["articleBody"] for k in sorted(truth)]


def paragraphs(text: str) -> list[list[str]]:
    """Paragraphs as lists of sentences."""
    paras = [p.strip() for p in text.split("\n") if p.strip()]
    return [[s for s in _SENTENCE_END.split(p) if s.strip()] for p in paras]


def join(paras: list[list[str]]) -> str:
    """Paragraphs of sentences back to text."""
    return "\n\n".join(" ".join(p) for p in paras if p)


def foreign_sentence(bodies: list[str], own: int, rng: random.Random) -> str:
    """A sentence of some other article: a rewritten lede or an added line from another desk."""
    while True:
        i = rng.randrange(len(bodies))
        sentences = [s for p in paragraphs(bodies[i]) for s in p if len(s.split()) >= 8]
        if i != own and sentences:
            return rng.choice(sentences)


def reorder(paras: list[list[str]], rng: random.Random) -> list[list[str]]:
    """Move 10% of the sentences (at least one) to random other places."""
    flat = [s for p in paras for s in p]
    for _ in range(max(1, round(len(flat) * 0.1))):
        flat.insert(rng.randrange(len(flat)), flat.pop(rng.randrange(len(flat))))
    return [flat]


def edit(bodies: list[str], i: int, kind: str, rng: random.Random) -> str:
    """Copy of body i with one realistic syndication edit."""
    paras = paragraphs(bodies[i])
    byline = f"Reporting by {rng.choice(NAMES)}; Editing by {rng.choice(NAMES)}"
    if kind == "new_intro":
        return join([[foreign_sentence(bodies, i, rng)] + paras[0][1:]] + paras[1:])
    if kind == "appended":
        return join(paras + [[foreign_sentence(bodies, i, rng)]])
    if kind == "drop_last_paragraph":
        return join(paras[:-1] if len(paras) > 1 else [paras[0][:-1]])
    if kind == "boilerplate":
        return join(paras + [[byline]])
    if kind == "reorder_10pct":
        return join(reorder(paras, rng))
    intro = [[foreign_sentence(bodies, i, rng)] + paras[0][1:]] + paras[1:]
    return join(intro + [[foreign_sentence(bodies, i, rng)], [byline]])


def exact_variant(text: str) -> str:
    """Same words, different whitespace, case of nothing, punctuation and quotes."""
    return "  " + text.replace("\n\n", "\n").replace("’", "'").replace(", ", " , ").replace(".", " .") + "\n"


@dataclass(frozen=True)
class Doc:
    """One text of the labelled set: its source article and how it was made."""

    source: int
    kind: str
    text: str


def labelled_set(bodies: list[str], seed: int = 7) -> list[Doc]:
    """Every body plus one copy per edit kind."""
    rng = random.Random(seed)
    docs = []
    for i, body in enumerate(bodies):
        docs.append(Doc(i, "original", body))
        docs.extend(Doc(i, kind, edit(bodies, i, kind, rng)) for kind in EDITS)
    return docs


# ---------------------------------------------------------------- quality: scoring

def lsh_shape(threshold: float, num_perm: int, target: float = 0.98) -> tuple[int, int]:
    """Bands and rows with P(candidate | J = threshold) >= target and the fewest weak candidates."""
    best = None
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b < target:
            continue
        weak = 1 - (1 - 0.3**r) ** b  # chance that an unrelated-but-similar pair is looked at
        if best is None or (weak, -r) < best[0]:
            best = ((weak, -r), (b, r))
    return best[1] if best else (num_perm, 1)


def candidate_pairs(sigs: np.ndarray, params: DedupParams) -> set[tuple[int, int]]:
    """Index pairs that share at least one band key."""
    buckets: dict[int, list[int]] = {}
    for i, sig in enumerate(sigs):
        for key in band_keys(sig.tolist(), params):
            buckets.setdefault(key, []).append(i)
    return {(a, b) for ids in buckets.values() for x, a in enumerate(ids) for b in ids[x + 1 :]}


def similarities(sigs: np.ndarray) -> np.ndarray:
    """All-pairs estimated Jaccard (upper triangle filled)."""
    n = len(sigs)
    out = np.zeros((n, n), dtype=np.float32)
    for i in range(n - 1):
        out[i, i + 1 :] = (sigs[i + 1 :] == sigs[i]).mean(axis=1)
    return out


def score(docs: list[Doc], sigs: np.ndarray, sims: np.ndarray, cands: set, threshold: float) -> dict:
    """Pairwise precision and recall of 'candidate and similarity >= threshold'."""
    tp = fp = 0
    for a, b in cands:
        if sims[a, b] >= threshold:
            if docs[a].source == docs[b].source:
                tp += 1
            else:
                fp += 1
    per_source = Counter(d.source for d in docs)
    positives = sum(n * (n - 1) // 2 for n in per_source.values())
    return {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / positives, "fp": fp,
            "cands_per_doc": 2 * len(cands) / len(docs)}


def edit_recall(docs: list[Doc], sims: np.ndarray, cands: set, threshold: float) -> dict[str, float]:
    """Share of copies linked directly to their original, by edit kind."""
    first = {d.source: i for i, d in reversed(list(enumerate(docs)))}
    hits: Counter = Counter()
    totals: Counter = Counter()
    for i, d in enumerate(docs):
        if d.kind != "original":
            o = first[d.source]
            totals[d.kind] += 1
            hits[d.kind] += (o, i) in cands and sims[o, i] >= threshold
    return {k: hits[k] / totals[k] for k in totals}


def signed(docs: list[Doc], params: DedupParams) -> tuple[list[Doc], np.ndarray]:
    """The docs with a signature (long enough) and their signatures as a matrix."""
    pairs = [(d, signature(d.text, params)) for d in docs]
    kept = [(d, s) for d, s in pairs if s is not None]
    return [d for d, _ in kept], np.array([s for _, s in kept], dtype=np.uint32)


def sweep(docs: list[Doc], thresholds, shingle_sizes) -> list[tuple]:
    """Scores for each shingle size and threshold, LSH shaped for that threshold."""
    rows = []
    for k in shingle_sizes:
        params = replace(DEFAULTS, shingle=k)
        kept, sigs = signed(docs, params)
        sims = similarities(sigs)
        print(f"shingle {k}: {negative_margin(kept, sims)}")
        for t in thresholds:
            b, r = lsh_shape(t, params.num_perm)
            cands = candidate_pairs(sigs, replace(params, near_threshold=t, bands=b, rows=r))
            rows.append((k, t, b, r, score(kept, sigs, sims, cands, t), edit_recall(kept, sims, cands, t)))
    return rows


def negative_margin(docs: list[Doc], sims: np.ndarray) -> str:
    """How similar different stories get, and how dissimilar copies of one story get."""
    same = np.array([[a.source == b.source for b in docs] for a in docs])
    upper = np.triu(np.ones_like(same), k=1)
    neg, pos = sims[upper & ~same], sims[upper & same]
    return (f"different stories: max J={neg.max():.3f}, 99.99th pct={np.quantile(neg, 0.9999):.3f}; "
            f"copies of one story: min J={pos.min():.3f}, 5th pct={np.quantile(pos, 0.05):.3f}")


def cluster_check(docs: list[Doc], params: DedupParams) -> dict:
    """Run plan_links over the whole set as one batch and score the clusters it forms."""
    start = datetime(2024, 1, 1)
    new = [Member(i, i, start + timedelta(minutes=i), content_hash(d.text), signature(d.text, params))
           for i, d in enumerate(docs)]
    links = {link.article_id: link for link in plan_links(new, [], params)}
    root = {i: links[i].duplicate_of if links[i].duplicate_of is not None else i for i in links}
    chains = sum(1 for i in links if links[i].duplicate_of is not None and links[links[i].duplicate_of].duplicate_of is not None)
    same_pred = {(a, b) for a in root for b in root if a < b and root[a] == root[b]}
    same_true = {(a, b) for a in root for b in root if a < b and docs[a].source == docs[b].source}
    tp = len(same_pred & same_true)
    return {"precision": tp / len(same_pred) if same_pred else 1.0, "recall": tp / len(same_true), "chains": chains,
            "originals_kept": sum(1 for i, d in enumerate(docs) if d.kind == "original" and root[i] == i)}


def quality(quick: bool) -> None:
    """Print the quality section."""
    bodies = load_bodies()
    docs = labelled_set(bodies)
    short = sum(1 for d in docs if len(tokens(d.text)) < DEFAULTS.min_words)
    print(f"\n## Quality: {len(bodies)} ground-truth bodies x (original + {len(EDITS)} edits) = {len(docs)} texts")
    print(f"texts below min_words={DEFAULTS.min_words} (left out of near matching): {short}")
    exact_ok = sum(content_hash(exact_variant(b)) == content_hash(b) for b in bodies)
    print(f"exact layer: whitespace/punctuation/quote variants with the same content_hash: {exact_ok}/{len(bodies)}")
    kept, sigs = signed(docs, DEFAULTS)
    sims = similarities(sigs)
    cands = candidate_pairs(sigs, DEFAULTS)
    s = score(kept, sigs, sims, cands, DEFAULTS.near_threshold)
    d = DEFAULTS
    print(f"\ndefaults: threshold={d.near_threshold} shingle={d.shingle} num_perm={d.num_perm} bands={d.bands} rows={d.rows}")
    print(f"pairwise: precision={s['precision']:.4f} recall={s['recall']:.4f} false_pos={s['fp']} "
          f"lsh_candidates_per_text={s['cands_per_doc']:.2f}")
    print("direct recall of each copy against its original:")
    for kind, rec in edit_recall(kept, sims, cands, d.near_threshold).items():
        print(f"  {kind:<24} {rec:.4f}")
    c = cluster_check(docs, DEFAULTS)
    print(f"clusters from plan_links (one batch): precision={c['precision']:.4f} recall={c['recall']:.4f} "
          f"chains={c['chains']} originals_kept_as_original={c['originals_kept']}/{len(bodies)}")
    lsh_alternatives(kept, sigs, sims)
    thresholds = (0.5, 0.6, 0.7, 0.8, 0.9)
    print("\nsweep (LSH shaped per threshold: P(candidate | J=threshold) >= 0.98); pairwise P/R over all")
    print("pairs, then direct recall of each copy against its original, per edit:")
    print("shingle thr  b  r precision recall   FP " + " ".join(f"{k[:10]:>10}" for k in EDITS))
    for k, t, b, r, m, per_edit in sweep(docs, thresholds, (5,) if quick else (3, 4, 5)):
        cells = " ".join(f"{per_edit[e]:>10.3f}" for e in EDITS)
        print(f"{k:>7} {t:>3} {b:>2} {r:>2} {m['precision']:>9.4f} {m['recall']:.4f} {m['fp']:>4} {cells}")


def lsh_alternatives(kept: list[Doc], sigs: np.ndarray, sims: np.ndarray) -> None:
    """Recall at the default threshold for datasketch's own (b, r) choices against ours."""
    from datasketch import MinHashLSH  # the bench extra: only this comparison needs it

    t = DEFAULTS.near_threshold
    print(f"\nLSH shape at threshold {t} (num_perm={DEFAULTS.num_perm}), confirmed by similarity; "
          f"rule P(candidate | J={t}) >= 0.98 gives {lsh_shape(t, DEFAULTS.num_perm)}:")
    shapes = {"default": (DEFAULTS.bands, DEFAULTS.rows), "42x3": (42, 3), "25x5": (25, 5), "20x6": (20, 6)}
    for label, weights in (("datasketch weights=(0.5,0.5)", (0.5, 0.5)), ("datasketch weights=(0.1,0.9)", (0.1, 0.9))):
        lsh = MinHashLSH(threshold=t, num_perm=DEFAULTS.num_perm, weights=weights)
        shapes[label] = (lsh.b, lsh.r)
    for label, (b, r) in shapes.items():
        m = score(kept, sigs, sims, candidate_pairs(sigs, replace(DEFAULTS, bands=b, rows=r)), t)
        p_at_t = 1 - (1 - t**r) ** b
        print(f"  {label:<30} b={b:<3} r={r:<3} P(cand|J={t})={p_at_t:.3f} recall={m['recall']:.4f} "
              f"precision={m['precision']:.4f} cands/text={m['cands_per_doc']:.2f}")


# ---------------------------------------------------------------- scale: the store newsmon runs

STORE_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
RUN_ID = "bench"
CHUNK = 2_000  # stored articles made per worker task; store sizes are multiples of it
KINDS = ("fresh", "near", "near", "exact", "earlier")
# Steps of the store stage, timed by wrapping the functions flows.persist calls through its modules
# (see phase_clock): prepare, then store_articles' index probes, lake reads and writes, and commits.
PHASES = {(persist, "prepare"): "sign", (key_index, "known_urls"): "urls", (key_index, "candidates"): "cands",
          (key_index, "clusters"): "cands", (article_store, "members"): "read", (persist, "plan_links"): "plan",
          (article_store, "insert_articles"): "insert", (article_store, "update_links"): "links",
          (article_store, "queue_for_alerts"): "queue", (persist, "transaction"): "commit",
          (key_index, "add"): "index"}
PHASE_LABELS = (*dict.fromkeys(PHASES.values()), "rest")
# Every column of articles; bulk_load checks that the table has exactly these.
ROW_COLUMNS = {
    "id": "BIGINT", "seq": "BIGINT", "url": "VARCHAR", "source_url": "VARCHAR", "feed_url": "VARCHAR",
    "title": "VARCHAR", "author": "VARCHAR", "published_at": "TIMESTAMP WITH TIME ZONE", "date_source": "VARCHAR",
    "fetched_at": "TIMESTAMP WITH TIME ZONE", "language": "VARCHAR", "text": "VARCHAR", "word_count": "INTEGER",
    "description": "VARCHAR", "sitename": "VARCHAR", "extraction": "VARCHAR", "content_hash": "VARCHAR",
    "signature": "UINTEGER[]", "run_id": "VARCHAR", "duplicate_of": "BIGINT", "duplicate_kind": "VARCHAR",
    "similarity": "DOUBLE"}


@lru_cache(maxsize=1)
def vocabulary() -> tuple[list[str], np.ndarray]:
    """Words of the corpus bodies with their frequencies (a realistic, Zipf-like vocabulary)."""
    counts = Counter(w for body in load_bodies() for w in tokens(body))
    words, freq = zip(*counts.most_common())
    p = np.array(freq, dtype=np.float64)
    return list(words), p / p.sum()


def synthetic_texts(n: int, seed: int, low: int = 120, high: int = 250) -> list[str]:
    """n random texts of low..high words drawn from the corpus vocabulary."""
    # Shorter than most real articles so that signing 100k of them stays within the time budget;
    # the lookup reads signatures (num_perm values whatever the length), never texts.
    words, p = vocabulary()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high, size=n)
    picks = rng.choice(len(words), size=int(lengths.sum()), p=p)
    out, at = [], 0
    for length in lengths:
        out.append(" ".join(words[j] for j in picks[at : at + length]))
        at += length
    return out


def near_copy(text: str, rng: random.Random) -> str:
    """A syndicated copy of a synthetic text: other first words, an added closing line."""
    words = text.split()
    lede = " ".join(rng.sample(words, 12))
    return f"{lede} {' '.join(words[12:])} Reporting by {rng.choice(NAMES)}; Editing by {rng.choice(NAMES)}"


def store_url(i: int) -> str:
    """URL of the i-th stored article (97 sites)."""
    return f"https://site{i % 97}.example/news/{i}"


def make_article(url: str, text: str, published: datetime) -> Article:
    """An extracted article as the page stage hands it to store_articles."""
    host = url.split("/")[2]
    return Article(url=url, feed_url=f"https://{host}/feed.xml", title=" ".join(text.split()[:8]), author=None,
                   published_at=published, date_source="feed", fetched_at=published + timedelta(minutes=5),
                   language="en", text=text, content_hash=content_hash(text), extraction="trafilatura",
                   source_url=url, word_count=len(text.split()))


def article_row(a: Article, seq: int, sig: tuple | None, link: tuple[int, float] | None) -> dict:
    """The articles row store_articles leaves for `a`, every column (link: original's id, similarity)."""
    dup, sim = link or (None, None)
    return {"id": url_id(a.url), "seq": seq, "url": a.url, "source_url": a.source_url, "feed_url": a.feed_url,
            "title": a.title, "author": a.author, "published_at": a.published_at.isoformat(),
            "date_source": a.date_source, "fetched_at": a.fetched_at.isoformat(), "language": a.language,
            "text": a.text, "word_count": a.word_count, "description": a.description, "sitename": a.sitename,
            "extraction": a.extraction, "content_hash": a.content_hash, "signature": list(sig) if sig else None,
            "run_id": RUN_ID, "duplicate_of": dup, "duplicate_kind": NEAR if link else None, "similarity": sim}


def chunk_texts(k: int, seed: int) -> tuple[list[str], dict[int, int]]:
    """Texts of store rows k*CHUNK...; every 20th is a near copy of an earlier one (index -> source index)."""
    texts = synthetic_texts(CHUNK, seed * 1000 + k)
    rng = random.Random(seed * 1000 + k)
    # Sources are never copies themselves: the store must hold clusters, not chains.
    copies = {i: rng.choice([j for j in range(max(0, i - 40), i) if j % 20]) for i in range(20, CHUNK, 20)}
    for i, src in copies.items():
        texts[i] = near_copy(texts[src], rng)
    return texts, copies


def _write_chunk(job: tuple[int, int, str, bool]) -> tuple[int, list[str]]:
    """Make, sign and link chunk k of the store; write its article rows as an NDJSON file.

    Runs in a worker process. Returns how many planted copies were linked (those reaching the
    threshold, as store_articles links them) and, when asked, the chunk's texts."""
    k, seed, folder, keep_texts = job
    texts, copies = chunk_texts(k, seed)
    base = k * CHUNK
    arts = [make_article(store_url(base + i), t, STORE_START + timedelta(minutes=base + i)) for i, t in enumerate(texts)]
    sigs = [signature(t, DEFAULTS) for t in texts]
    linked = 0
    with open(f"{folder}/articles-{k:03d}.ndjson", "w") as fa:
        for i, (a, sig) in enumerate(zip(arts, sigs)):
            src, link = copies.get(i), None
            if src is not None and sig and sigs[src] and similarity(sig, sigs[src]) >= DEFAULTS.near_threshold:
                link = (url_id(arts[src].url), similarity(sig, sigs[src]))
                linked += 1
            fa.write(json.dumps(article_row(a, base + i + 1, sig, link)) + "\n")
    return linked, texts if keep_texts else []


def make_store_rows(n: int, keep: int, seed: int, folder: Path) -> tuple[int, list[str]]:
    """Write the rows of an n-article store on every core; return linked copies and the first `keep` texts."""
    vocabulary()  # computed once here; the forked workers inherit it
    jobs = [(k, seed, str(folder), k * CHUNK < keep) for k in range(n // CHUNK)]
    with ProcessPoolExecutor() as pool:
        done = list(pool.map(_write_chunk, jobs))
    return sum(linked for linked, _ in done), [t for _, texts in done for t in texts][:keep]


@dataclass
class Store:
    """A store under test: the database path given to open_store, and the open store (lake + index)."""

    name: str
    path: Path
    store: persist.Store | None = None

    def disk(self) -> str:
        """Size on disk of the store folder and of its parts (Parquet files, catalog, dedup index)."""
        files = [p for p in store_dir(self.path).rglob("*") if p.is_file()]
        mb = lambda ps: sum(p.stat().st_size for p in ps) / 2**20  # noqa: E731
        parquet = [p for p in files if p.suffix == ".parquet"]
        catalog = [p for p in files if p.name.startswith("catalog.sqlite")]
        index = [p for p in files if p.name.startswith("index.sqlite")]
        return (f"{mb(files):.1f} MB ({len(parquet)} Parquet files {mb(parquet):.1f} MB, catalog {mb(catalog):.1f} MB, "
                f"index {mb(index):.1f} MB)")


def bulk_load(store: Store, folder: Path, n: int) -> float:
    """Create the store with open_writer and load the first n articles' rows in one lake commit; seconds."""
    t0 = time.perf_counter()
    con = open_writer(store.path)
    columns = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_catalog = current_database() AND table_name = 'articles'").fetchall())
    if columns != ROW_COLUMNS:
        differ = sorted(set(columns.items()) ^ set(ROW_COLUMNS.items()))
        raise SystemExit(f"ROW_COLUMNS no longer matches the articles table: {differ}")
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in ROW_COLUMNS.items()) + "}"
    con.execute(f"INSERT INTO articles BY NAME SELECT * FROM read_json(?, format = 'newline_delimited', "
                f"columns = {spec})", [[str(folder / f"articles-{k:03d}.ndjson") for k in range(n // CHUNK)]])
    con.close()
    return time.perf_counter() - t0


def build_index(store: Store) -> float:
    """Open the store as a run does: open_store catches the empty dedup index up from the lake; seconds."""
    quiet = logging.getLogger(persist.log.name)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "stored by an interrupted run" warning: here the rows were bulk-loaded
    try:
        t0 = time.perf_counter()
        opened = open_store(store.path, DEFAULTS)
        indexed = key_index.last_seq(opened.index)
        opened.close()
        elapsed = time.perf_counter() - t0
    finally:
        quiet.setLevel(level)
    rows = lake_articles(store.path)
    if indexed != rows:  # every bulk-loaded row must be in the index before anything is timed against it
        raise SystemExit(f"{store.name}: index caught up to seq {indexed}, the lake holds {rows} articles")
    return elapsed


def lake_articles(database: Path) -> int:
    """Articles in the lake, counted the way a reader sees them."""
    con = open_reader(database)
    try:
        return con.execute("SELECT count(*) FROM articles").fetchone()[0]
    finally:
        con.close()


@dataclass(frozen=True)
class Planted:
    """A new article and what storing it must do; source is the id of the stored article it copies."""

    article: Article
    kind: str  # one of KINDS
    source: int | None


def planted(texts: list[str], sources: list[int], fresh: list[str], site: str, seed: int) -> list[Planted]:
    """New articles cycling through KINDS: fresh, near and exact copies, copies published before their source."""
    rng = random.Random(seed)
    late = STORE_START + timedelta(days=365)
    out = []
    for i, j in enumerate(sources):
        kind = KINDS[i % len(KINDS)]
        text = {"fresh": fresh[i], "exact": exact_variant(texts[j])}.get(kind) or near_copy(texts[j], rng)
        published = STORE_START + timedelta(minutes=j - 30) if kind == "earlier" else late + timedelta(minutes=i)
        art = make_article(f"https://{site}{i % 13}.example/story/{i}", text, published)
        out.append(Planted(art, kind, None if kind == "fresh" else url_id(store_url(j))))
    return out


@contextmanager
def phase_clock() -> Iterator[Counter]:
    """Milliseconds spent in each step of the store stage, accumulated while the block runs."""
    spent: Counter = Counter()
    originals = {(module, name): getattr(module, name) for module, name in PHASES}

    def timed(fn, label):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += (time.perf_counter() - t0) * 1000
        return wrapper

    def timed_commit(fn, label):
        # Only the COMMIT (leaving the block) is counted: the body's steps are timed on their own.
        @contextmanager
        def wrapper(con):
            with fn(con) as inner:
                yield inner
                t0 = time.perf_counter()
            spent[label] += (time.perf_counter() - t0) * 1000
        return wrapper

    for (module, name), fn in originals.items():
        wrap = timed_commit if name == "transaction" else timed
        setattr(module, name, wrap(fn, PHASES[module, name]))
    try:
        yield spent
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)


def store_stage(store: persist.Store, articles: list[Article]) -> StoreResult:
    """What flows.cycle.store_batch does with a batch (without its fetch_log rows)."""
    return persist.store_articles(store, persist.prepare(articles, DEFAULTS), DEFAULTS, RUN_ID)


def time_batches(stores: list[Store], batches: list[list[Planted]]) -> dict[str, list[dict]]:
    """The store stage for each batch in every store in turn (interleaved); per call: ms, steps, result."""
    out: dict[str, list[dict]] = {s.name: [] for s in stores}
    with phase_clock() as spent:
        for b, batch in enumerate(batches):
            for store in stores if b % 2 == 0 else stores[::-1]:  # neither store always goes first
                spent.clear()
                t0 = time.perf_counter()
                result = store_stage(store.store, [p.article for p in batch])
                ms = (time.perf_counter() - t0) * 1000
                out[store.name].append({"ms": ms, "phases": dict(spent, rest=ms - sum(spent.values())),
                                        "result": result})
    return out


def report_timings(title: str, timings: dict[str, list[dict]], size: int) -> None:
    """Per-article cost (call time / batch size) per store, step medians and means, and the big/small ratios."""
    print(f"\n{title}: ms per article; then each step per article, its median and (below) its mean:")
    print("store  calls  median    mean     p90     max | " + " ".join(f"{ph:>6}" for ph in PHASE_LABELS))
    medians, means = {}, {}
    for name, calls in timings.items():
        per = [c["ms"] / size for c in calls]
        medians[name], means[name] = statistics.median(per), statistics.fmean(per)
        steps = " ".join(f"{statistics.median(c['phases'].get(ph, 0.0) / size for c in calls):>6.2f}"
                         for ph in PHASE_LABELS)
        # Some steps run in a fifth of the calls only (re-pointing stored copies): their median hides them.
        step_means = " ".join(f"{statistics.fmean(c['phases'].get(ph, 0.0) / size for c in calls):>6.2f}"
                              for ph in PHASE_LABELS)
        print(f"{name:<5} {len(calls):>6} {medians[name]:>7.2f} {means[name]:>7.2f} {pct(per, 0.9):>7.2f} "
              f"{max(per):>7.2f} | {steps}")
        print(f"{'  step means':<44} | {step_means}")
    small, big = list(timings)
    print(f"ratio {big}/{small}: median {medians[big] / medians[small]:.2f}, mean {means[big] / means[small]:.2f}")


def check_outcomes(con, cases: list[Planted], results: list[StoreResult]) -> Counter:
    """Per kind: planted and correctly stored (links, original take-over, new stories queued); chains."""
    stories = {i for r in results for i in r.new_stories}
    ok: Counter = Counter()
    for p in cases:
        aid = url_id(p.article.url)
        dup, kind, pending = con.execute(
            "SELECT duplicate_of, duplicate_kind, id IN (SELECT article_id FROM alert_queue) FROM articles WHERE id = ?",
            [aid]).fetchone()
        if p.kind == "fresh":
            good = dup is None and pending and aid in stories
        else:
            root = con.execute("SELECT coalesce(duplicate_of, id) FROM articles WHERE id = ?", [p.source]).fetchone()[0]
            taken_over = dup is None and root == aid
            good = aid not in stories and (taken_over if p.kind == "earlier" else dup == root and kind == p.kind)
        ok[p.kind] += 1
        ok[f"{p.kind}_ok"] += bool(good)
    ok["chains"] = con.execute("SELECT count(*) FROM articles a JOIN articles o ON a.duplicate_of = o.id "
                               "WHERE o.duplicate_of IS NOT NULL").fetchone()[0]
    return ok


def report_outcomes(stores: list[Store], runs: dict[str, tuple[list[Planted], dict[str, list[dict]]]]) -> bool:
    """Planted cases stored as expected, per run and store; True when all of them were."""
    print("\noutcomes (ok/planted; fresh: unlinked and queued for alerts; earlier: became the original):")
    all_ok = True
    for label, (cases, timings) in runs.items():
        for store in stores:
            o = check_outcomes(store.store.con, cases, [c["result"] for c in timings[store.name]])
            all_ok &= o["chains"] == 0 and all(o[f"{k}_ok"] == o[k] for k in KINDS)
            print(f"  {label:<12} {store.name:<5} " + " ".join(f"{k}={o[f'{k}_ok']}/{o[k]}" for k in dict.fromkeys(KINDS))
                  + f" chains={o['chains']}")
    print("all planted cases stored as expected" if all_ok else "MISMATCH: some planted cases were stored wrongly")
    return all_ok


def scale(quick: bool) -> bool:
    """Print the scale section; True when every planted case came out right."""
    small, big, singles, batches = (2_000, 20_000, 60, 4) if quick else (10_000, 100_000, 200, 12)
    print(f"\n## Scale: the store stage (prepare + store_articles) against stores of {small // 1000}k and "
          f"{big // 1000}k articles")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        linked, texts = make_store_rows(big, small, seed=11, folder=folder)
        print(f"{big} synthetic texts made, signed and written as rows in {time.perf_counter() - t0:.1f}s "
              f"({linked} planted near copies linked)")
        stores = [Store(f"{n // 1000}k", folder / f"store-{n // 1000}k.duckdb") for n in (small, big)]
        for store, n in zip(stores, (small, big)):
            print(f"  {store.name}: open_writer + rows loaded in one lake commit in {bulk_load(store, folder, n):.1f}s; "
                  f"open_store built the dedup index from the lake in {build_index(store):.1f}s")
        for p in folder.glob("*.ndjson"):
            p.unlink()
        for store in stores:
            print(f"  {store.name} on disk: {store.disk()}")
        sources = random.Random(5).sample([j for j in range(small) if j % 20], 10 + singles + batches * PAGE_BATCH)
        fresh = synthetic_texts(len(sources), seed=99)
        warm = planted(texts, sources[:10], fresh, "warm", seed=4)
        one = planted(texts, sources[10 : 10 + singles], fresh[10:], "wire", seed=5)
        many = planted(texts, sources[10 + singles :], fresh[10 + singles :], "agency", seed=6)
        for store in stores:
            store.store = open_store(store.path, DEFAULTS)  # reopened, as a run opens it
        first = time_batches(stores, [[p] for p in warm])
        print("first 10 calls after opening (index and lake metadata load on first use), ms: " + "; ".join(
            f"{name} {t[0]['ms']:.0f} then median {statistics.median(c['ms'] for c in t[1:]):.1f}"
            for name, t in first.items()))
        t1 = time_batches(stores, [[p] for p in one])
        report_timings(f"batches of 1 ({singles} calls)", t1, 1)
        tn = time_batches(stores, [many[i : i + PAGE_BATCH] for i in range(0, len(many), PAGE_BATCH)])
        report_timings(f"batches of {PAGE_BATCH} ({batches} calls; flows/cycle.py PAGE_BATCH)", tn, PAGE_BATCH)
        ok = report_outcomes(stores, {"batch of 1": (one, t1), f"batch of {PAGE_BATCH}": (many, tn)})
        print("\nmaintenance after the inserts (flows.maintenance.maintain, which ends every run): " + "; ".join(
            f"{s.name} {maintenance(s.store.con)}" for s in stores))
        for store in stores:
            store.store.close()
            print(f"  {store.name} on disk after it: {store.disk()}")
    return ok


def maintenance(con) -> str:
    """Time of one maintenance pass, with what it did."""
    t0 = time.perf_counter()
    done = maintain(con, StoragePolicy().snapshot_retention_days)
    return (f"{(time.perf_counter() - t0) * 1000:.0f} ms ({done.files_merged} files merged, "
            f"{done.snapshots_expired} snapshots expired, {done.files_deleted} files deleted)")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def main() -> None:
    """Run both sections and print the report; exit 1 if a planted case was stored wrongly."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller stores, fewer inserts, one shingle size")
    ap.add_argument("--only", choices=("quality", "scale"), help="run one section")
    args = ap.parse_args()
    print(f"# dedup benchmark ({'quick' if args.quick else 'full'}); duckdb {duckdb.__version__}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    ok = True
    if args.only != "scale":
        quality(args.quick)
    if args.only != "quality":
        ok = scale(args.quick)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s; load average at the end {os.getloadavg()[0]:.1f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
