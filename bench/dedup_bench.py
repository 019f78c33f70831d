"""Duplicate detection benchmark: quality on edited copies of real article bodies, and the cost of
checking and storing one article against DuckDB stores of two sizes.

    .venv/bin/python bench/dedup_bench.py            # full run (10k and 100k stores)
    .venv/bin/python bench/dedup_bench.py --quick    # 2k and 20k stores, fewer inserts
"""
from __future__ import annotations

import argparse
import hashlib
import json
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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
from datasketch import MinHashLSH

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ingest.dedup import (  # noqa: E402
    DedupParams, Link, Member, band_keys, content_hash, plan_links, signature, similarity, tokens,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus"
SQL_FILE = REPO / "docs/dedup_schema.sql"
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


# ---------------------------------------------------------------- scale: synthetic store

def load_sql() -> dict[str, str]:
    """The named statement blocks of docs/dedup_schema.sql."""
    blocks = re.split(r"^-- name: ", SQL_FILE.read_text(encoding="utf-8"), flags=re.M)[1:]
    return {b.split("\n", 1)[0].strip(): b.split("\n", 1)[1] for b in blocks}


def vocabulary() -> tuple[list[str], np.ndarray]:
    """Words of the corpus bodies with their frequencies (a realistic, Zipf-like vocabulary)."""
    counts = Counter(w for body in load_bodies() for w in tokens(body))
    words, freq = zip(*counts.most_common())
    p = np.array(freq, dtype=np.float64)
    return list(words), p / p.sum()


def synthetic_texts(n: int, seed: int, low: int = 250, high: int = 700) -> list[str]:
    """n random texts of low..high words drawn from the corpus vocabulary."""
    words, p = vocabulary()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high, size=n)
    picks = rng.choice(len(words), size=int(lengths.sum()), p=p)
    out, at = [], 0
    for length in lengths:
        out.append(" ".join(words[j] for j in picks[at : at + length]))
        at += length
    return out


def _sig_chunk(texts: list[str]) -> list:
    """Signatures of a chunk of texts (runs in a worker process)."""
    return [signature(t, DEFAULTS) for t in texts]


def signatures_parallel(texts: list[str]) -> list:
    """Signatures of many texts on every core (same values as one process: the seed is fixed)."""
    chunks = [texts[i : i + 2000] for i in range(0, len(texts), 2000)]
    with ProcessPoolExecutor() as pool:
        return [s for part in pool.map(_sig_chunk, chunks) for s in part]


def near_copy(text: str, rng: random.Random) -> str:
    """A syndicated copy of a synthetic text: other first words, an added closing line."""
    words = text.split()
    lede = " ".join(rng.sample(words, 12))
    return f"{lede} {' '.join(words[12:])} Reporting by {rng.choice(NAMES)}; Editing by {rng.choice(NAMES)}"


def url_id(url: str) -> int:
    """A signed 64-bit id from a URL, like the articles' ids (never dense, unlike a counter)."""
    return int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "little", signed=True)


@dataclass
class Store:
    """Rows of a synthetic store, in insertion order."""

    rows: list[dict]
    bands: list[dict]


def build_store(texts: list[str], sigs: list, seed: int) -> Store:
    """Store rows for the texts; every 20th text is a near copy of an earlier one, linked to it."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1)
    rows, bands = [], []
    for i, (text, sig) in enumerate(zip(texts, sigs)):
        row = {"id": url_id(f"https://site{i % 97}.example/news/{i}"), "seq": i + 1, "published_at": (start + timedelta(minutes=i)).isoformat(),
               "content_hash": content_hash(text), "signature": list(sig), "duplicate_of": None,
               "duplicate_kind": None, "similarity": None}
        rows.append(row)
        bands.extend({"key": k, "article_id": row["id"]} for k in band_keys(sig, DEFAULTS))
    return Store(rows, bands)


def link_store_copies(store: Store, copies_of: dict[int, int], sims: dict[int, float]) -> None:
    """Set the links of the near copies planted in the store."""
    for i, src in copies_of.items():
        store.rows[i].update(duplicate_of=store.rows[src]["id"], duplicate_kind="near", similarity=sims[i])


def write_store(path: Path, sql: dict[str, str], store: Store, n: int, indexed: bool) -> dict[str, float]:
    """Create a DuckDB file holding the first n store rows; returns load/index timings."""
    con = duckdb.connect(str(path))
    con.execute(sql["create_tables"])
    t0 = time.perf_counter()
    for i in range(0, n, 10_000):
        con.execute(sql["insert_articles"], {"rows": json.dumps(store.rows[i : min(n, i + 10_000)])})
    nb = n * DEFAULTS.bands
    for i in range(0, nb, 200_000):
        con.execute(sql["insert_bands"], {"rows": json.dumps(store.bands[i : min(nb, i + 200_000)])})
    con.execute(f"DROP SEQUENCE article_seq; CREATE SEQUENCE article_seq START {n + 1}")
    t1 = time.perf_counter()
    if indexed:
        con.execute(sql["create_indexes"])
    con.execute("CHECKPOINT")
    t2 = time.perf_counter()
    con.close()
    return {"load_s": t1 - t0, "index_s": t2 - t1}


# ---------------------------------------------------------------- scale: the per-batch cycle

def to_member(row: tuple) -> Member:
    """A lookup_candidates row as a plan member."""
    id_, seq, published_at, chash, sig, duplicate_of = row
    return Member(id_, seq, published_at, chash, tuple(sig) if sig is not None else None, duplicate_of)


def link_rows(links: list[Link]) -> list[dict]:
    """Links as update_links JSON objects."""
    return [{"id": l.article_id, "duplicate_of": l.duplicate_of, "duplicate_kind": l.kind, "similarity": l.similarity}
            for l in links]


@dataclass(frozen=True)
class Incoming:
    """A new article as the pipeline hands it over."""

    id: int
    published_at: datetime | None
    text: str


def store_batch(con, sql: dict[str, str], batch: list[tuple[Incoming, str, tuple | None]]) -> dict:
    """Check and insert a batch of (article, content_hash, signature) in one transaction; phase times in s."""
    clock = [time.perf_counter()]
    con.execute("BEGIN")
    seqs = [r[0] for r in con.execute(sql["new_seqs"], {"n": len(batch)}).fetchall()]
    keys = [k for _, _, sig in batch if sig is not None for k in band_keys(sig, DEFAULTS)]
    clock.append(time.perf_counter())
    found = con.execute(sql["lookup_candidates"],
                        {"keys": json.dumps(keys), "hashes": json.dumps([h for _, h, _ in batch])}).fetchall()
    clock.append(time.perf_counter())
    new = [Member(a.id, s, a.published_at, h, sig) for (a, h, sig), s in zip(batch, seqs)]
    links = plan_links(new, [to_member(r) for r in found], DEFAULTS)
    clock.append(time.perf_counter())
    write_batch(con, sql, new, links)
    clock.append(time.perf_counter())
    con.execute("COMMIT")
    clock.append(time.perf_counter())
    phases = dict(zip(PHASES, (b - a for a, b in zip(clock, clock[1:]))))
    return {"phases": phases, "stored": len(found), "links": links}


PHASES = ("begin+seq", "lookup", "plan", "write", "commit")


def write_batch(con, sql: dict[str, str], new: list[Member], links: list[Link]) -> None:
    """Insert the new rows and bands and re-point stored rows, inside the caller's transaction."""
    by_id = {l.article_id: l for l in links}
    rows = [{"id": m.id, "seq": m.seq, "published_at": m.published_at.isoformat() if m.published_at else None,
             "content_hash": m.content_hash, "signature": list(m.signature) if m.signature else None,
             "duplicate_of": by_id[m.id].duplicate_of, "duplicate_kind": by_id[m.id].kind,
             "similarity": by_id[m.id].similarity} for m in new]
    con.execute(sql["insert_articles"], {"rows": json.dumps(rows)})
    bands = [{"key": k, "article_id": m.id} for m in new if m.signature for k in band_keys(m.signature, DEFAULTS)]
    if bands:
        con.execute(sql["insert_bands"], {"rows": json.dumps(bands)})
    new_ids = {m.id for m in new}
    repoint = [l for l in links if l.article_id not in new_ids]
    if repoint:
        con.execute(sql["update_links"], {"rows": json.dumps(link_rows(repoint))})


# ---------------------------------------------------------------- scale: the run

def store_texts(n: int, seed: int) -> tuple[list[str], dict[int, int]]:
    """n synthetic texts; every 20th is a near copy of a random earlier one (index -> source index)."""
    # Shorter than real articles so that signing 100k of them stays within the time budget; the
    # stored row is the same size whatever the text length (the signature has num_perm values).
    texts = synthetic_texts(n, seed, 120, 250)
    rng = random.Random(seed)
    # Sources are never copies themselves: the store must hold clusters, not chains.
    copies = {i: rng.choice([j for j in range(max(0, i - 40), i) if j % 20]) for i in range(20, n, 20)}
    for i, src in copies.items():
        texts[i] = near_copy(texts[src], rng)
    return texts, copies


def incoming(texts: list[str], fresh: list[str], pool: int, m: int, seed: int, site: str = "wire") -> list[tuple[Incoming, str]]:
    """m new articles with their expected outcome: fresh, near or exact copies, earlier-published copies."""
    rng = random.Random(seed)
    late = datetime(2024, 1, 1) + timedelta(minutes=len(texts) + 1000)
    # Distinct original (non-copy) sources from the part every store holds, so all stores do the same work.
    sources = rng.sample([j for j in range(pool) if j % 20], m)
    out = []
    for i, src in enumerate(sources):
        kind = ("fresh", "near", "near", "exact", "earlier")[i % 5]
        text = {"fresh": fresh[i % len(fresh)], "near": near_copy(texts[src], rng),
                "exact": exact_variant(texts[src]), "earlier": near_copy(texts[src], rng)}[kind]
        published = datetime(2024, 1, 1) + timedelta(minutes=src - 30) if kind == "earlier" else late + timedelta(minutes=i)
        art = Incoming(url_id(f"https://{site}{i % 13}.example/story/{i}"), published, text)
        out.append((art, f"{kind}:{url_id(f'https://site{src % 97}.example/news/{src}')}"))
    return out


def check_outcomes(con, expected: list[tuple[Incoming, str]]) -> dict[str, int]:
    """Count new articles whose stored link matches what was planted; and chains (must be 0)."""
    ok: Counter = Counter()
    for art, label in expected:
        kind, src = label.split(":")
        dup, dkind = con.execute("SELECT duplicate_of, duplicate_kind FROM articles WHERE id = ?", [art.id]).fetchone()
        root = con.execute("SELECT coalesce(duplicate_of, id) FROM articles WHERE id = ?", [int(src)]).fetchone()[0]
        good = {"fresh": dup is None, "near": dkind == "near" and dup == root, "exact": dkind == "exact" and dup == root,
                "earlier": dup is None and root == art.id}[kind]
        ok[f"{kind}_ok"] += good
        ok[kind] += 1
    ok["chains"] = con.execute("SELECT count(*) FROM articles a JOIN articles o ON a.duplicate_of = o.id "
                               "WHERE o.duplicate_of IS NOT NULL").fetchone()[0]
    return dict(ok)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def time_inserts(cons: dict, sql: dict[str, str], arts: list[tuple[Incoming, str]]) -> dict[str, dict]:
    """Check and insert each article in every store in turn (interleaved); per-store timings in ms."""
    out = {name: {"total": [], "stored": [], **{ph: [] for ph in PHASES}} for name in cons}
    sig_ms = []
    for art, _ in arts:
        t0 = time.perf_counter()
        chash, sig = content_hash(art.text), signature(art.text, DEFAULTS)
        sig_ms.append((time.perf_counter() - t0) * 1000)
        for name, con in cons.items():
            t1 = time.perf_counter()
            r = store_batch(con, sql, [(art, chash, sig)])
            out[name]["total"].append((time.perf_counter() - t1) * 1000 + sig_ms[-1])
            out[name]["stored"].append(r["stored"])
            for ph, secs in r["phases"].items():
                out[name][ph].append(secs * 1000)
    out["_sig"] = {"total": sig_ms}
    return out


def warm_up(con, sql: dict[str, str], store: Store, n: int, count: int) -> list[float]:
    """Look up `count` stored articles right after opening the file; each lookup's time in ms.

    ART pages are read from disk on first use, so early lookups on a big index are slow: a writer
    that opens the file per batch pays part of that in every batch, a long-running one once."""
    out = []
    for row in random.Random(3).sample(store.rows[:n], count):
        keys = band_keys(row["signature"], DEFAULTS)
        t0 = time.perf_counter()
        con.execute(sql["lookup_candidates"], {"keys": json.dumps(keys), "hashes": json.dumps([row["content_hash"]])}).fetchall()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def time_batch(cons: dict, sql: dict[str, str], arts: list[tuple[Incoming, str]]) -> dict[str, float]:
    """Check and insert all `arts` as one batch (one lookup, one transaction) per store; ms."""
    prepared = [(a, content_hash(a.text), signature(a.text, DEFAULTS)) for a, _ in arts]
    out = {}
    for name, con in cons.items():
        t0 = time.perf_counter()
        store_batch(con, sql, prepared)
        out[name] = (time.perf_counter() - t0) * 1000
    return out


def scale(quick: bool) -> None:
    """Print the scale section."""
    small, big, m, warm = (2_000, 20_000, 40, 100) if quick else (10_000, 100_000, 200, 300)
    sql = load_sql()
    t0 = time.perf_counter()
    texts, copies = store_texts(big, seed=11)
    print(f"\n## Scale: {big} synthetic texts made in {time.perf_counter() - t0:.1f}s", end="")
    sigs = signatures_parallel(texts)
    store = build_store(texts, sigs, seed=11)
    link_store_copies(store, copies, {i: similarity(sigs[i], sigs[s]) for i, s in copies.items()})
    print(f", signed and laid out as rows in {time.perf_counter() - t0:.1f}s "
          f"({len(copies)} planted near copies); {m} new articles per store")
    with tempfile.TemporaryDirectory() as tmp:
        cons, cold = {}, {}
        for indexed in (True, False):
            for n in (small, big):
                name = f"{'ART' if indexed else 'hash'}-{n // 1000}k"
                t = write_store(Path(tmp) / f"{name}.duckdb", sql, store, n, indexed)
                print(f"  {name}: bulk load {t['load_s']:.1f}s, indexes+checkpoint {t['index_s']:.1f}s")
                cons[name] = duckdb.connect(str(Path(tmp) / f"{name}.duckdb"))
                cold[name] = warm_up(cons[name], sql, store, n, warm)
        report_cold(cold)
        fresh = synthetic_texts(2 * m, seed=99)
        arts = incoming(texts, fresh[:m], small, m, seed=5)
        report_scale(time_inserts(cons, sql, arts), small, big)
        report_batch(time_batch(cons, sql, incoming(texts, fresh[m:], small, m // 2, seed=6, site="agency")), m // 2)
        report_outcomes(cons, arts)
        report_checkpoints(cons)


def report_batch(totals: dict[str, float], size: int) -> None:
    """Per-article cost when a whole batch shares one lookup and one transaction."""
    print(f"\none batch of {size} articles (one lookup query, one transaction), ms:")
    for name, total in totals.items():
        print(f"  {name:<11} total {total:.0f}, per article {total / size:.2f}")


def report_scale(timings: dict, small: int, big: int) -> None:
    """Per-article cost table, phase medians and the big/small ratios."""
    sig = timings.pop("_sig")["total"]
    print(f"\nsignature + content_hash in Python: median {statistics.median(sig):.2f} ms")
    print("per article (signature + lookup + plan + insert row and bands + commit), ms; then phase medians:")
    print("store        median    p90    mean " + " ".join(f"{ph:>9}" for ph in PHASES) + "  rows_fetched")
    for name, t in timings.items():
        phases = " ".join(f"{statistics.median(t[ph]):>9.2f}" for ph in PHASES)
        print(f"{name:<11} {statistics.median(t['total']):>7.2f} {pct(t['total'], 0.9):>6.2f} "
              f"{statistics.fmean(t['total']):>7.2f} {phases} {statistics.fmean(t['stored']):>13.2f}")
    for kind in ("ART", "hash"):
        a, b = timings[f"{kind}-{small // 1000}k"], timings[f"{kind}-{big // 1000}k"]
        print(f"ratio {kind} {big // 1000}k/{small // 1000}k: median {statistics.median(b['total']) / statistics.median(a['total']):.2f}, "
              f"mean {statistics.fmean(b['total']) / statistics.fmean(a['total']):.2f}, "
              f"lookup median {statistics.median(b['lookup']) / statistics.median(a['lookup']):.2f}")


def report_cold(cold: dict[str, list[float]]) -> None:
    """Lookup times from opening the file until the index is warm (before the timed inserts)."""
    n = len(next(iter(cold.values())))
    step = n // 5
    print(f"\n{n} lookups right after opening the file (ART pages load on first use): median ms per {step}:")
    for name, t in cold.items():
        print(f"  {name:<11} first {t[0]:>6.1f} | " + " ".join(f"{statistics.median(t[i:i + step]):>6.1f}" for i in range(0, n, step)))


def report_outcomes(cons: dict, arts: list) -> None:
    """Links the stores ended up with, per planted kind."""
    print("\noutcomes (ok/planted):")
    for name, con in cons.items():
        o = check_outcomes(con, arts)
        parts = " ".join(f"{k}={o.get(k + '_ok', 0)}/{o[k]}" for k in ("fresh", "near", "exact", "earlier"))
        print(f"  {name:<11} {parts} chains={o['chains']}")


def report_checkpoints(cons: dict) -> None:
    """Time of the CHECKPOINT that closes a batch window (once per run, not per article)."""
    print("\nCHECKPOINT after the inserts (once per batch/run), ms:")
    for name, con in cons.items():
        t0 = time.perf_counter()
        con.execute("CHECKPOINT")
        print(f"  {name:<11} {(time.perf_counter() - t0) * 1000:.0f}")
        con.close()


def main() -> None:
    """Run both sections and print the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller stores, fewer inserts, one shingle size")
    ap.add_argument("--only", choices=("quality", "scale"), help="run one section")
    args = ap.parse_args()
    print(f"# dedup benchmark ({'quick' if args.quick else 'full'}); duckdb {duckdb.__version__}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    if args.only != "scale":
        quality(args.quick)
    if args.only != "quality":
        scale(args.quick)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s; load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
