"""Duplicate detection on the seed article: exact hashes, MinHash signatures, band keys, link plans."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.dedup import (
    DedupParams, Link, Member, band_keys, content_hash, normalise_text, plan_links, shingle_hashes,
    shingle_hashes_many, signature, similarity, tokens,
)

REPO = Path(__file__).resolve().parents[1]
_LOCAL_SEED = REPO / "tests/fixtures/seed_article.txt"
SEED_PATH = _LOCAL_SEED if _LOCAL_SEED.exists() else REPO.parent / "shared/fixtures/seed_article.txt"
SEED = SEED_PATH.read_text(encoding="utf-8")
PARAMS = DedupParams()
T0 = datetime(2024, 5, 1, 8, 0)

INTRO = "PARIS, 20 novembre — Voici la dépêche reprise par notre rédaction ce matin.\n\n"
APPENDIX = "\n\nCet article a été mis à jour avec les dernières informations disponibles."
UNRELATED = (
    "The city council approved a new budget for public libraries on Tuesday evening, after a long debate "
    "about opening hours, the cost of digital lending licences and the repair of several old buildings. "
    "Librarians said the extra funding would allow branches in the northern districts to open on Sundays "
    "again, while a pilot programme will lend laptops and internet hotspots to students who lack them at "
    "home. The mayor promised a review of the plan next spring."
)


def paragraphs(text: str) -> list[str]:
    """Non-empty paragraphs of a text."""
    return [p for p in text.split("\n") if p.strip()]


def member(i: int, text: str, published: datetime | None, seq: int | None = None,
           duplicate_of: int | None = None) -> Member:
    """A Member for `text` with id i (seq defaults to the id)."""
    return Member(i, i if seq is None else seq, published, content_hash(text), signature(text, PARAMS), duplicate_of)


def links_by_id(links: list[Link]) -> dict[int, Link]:
    """Links keyed by article id (and no article twice)."""
    out = {link.article_id: link for link in links}
    assert len(out) == len(links)
    return out


def test_seed_is_long_enough_for_near_matching():
    assert len(tokens(SEED)) >= PARAMS.min_words


def test_exact_copy_with_other_whitespace_and_punctuation_has_the_same_hash():
    copy = "  " + SEED.replace("\n\n", "\n").replace("’", "'").replace(", ", " , ").replace("« ", '"').upper()
    assert copy != SEED
    assert content_hash(copy) == content_hash(SEED)
    assert content_hash(SEED.replace("500 soldats", "600 soldats")) != content_hash(SEED)


def test_exact_copy_is_linked_as_exact_with_similarity_one():
    copy = SEED.replace("\n\n", "\n")
    links = links_by_id(plan_links([member(2, copy, T0 + timedelta(hours=1))], [member(1, SEED, T0)], PARAMS))
    assert links[2] == Link(2, 1, "exact", 1.0)


def test_copy_with_new_intro_and_appended_sentence_is_a_near_duplicate():
    copy = INTRO + SEED + APPENDIX
    sim = similarity(signature(SEED, PARAMS), signature(copy, PARAMS))
    assert PARAMS.near_threshold <= sim < 1.0
    links = links_by_id(plan_links([member(2, copy, T0 + timedelta(hours=2))], [member(1, SEED, T0)], PARAMS))
    assert links[2] == Link(2, 1, "near", sim)


def test_copy_without_its_last_paragraph_and_with_a_byline_is_a_near_duplicate():
    copy = "\n\n".join(paragraphs(SEED)[:-1]) + "\n\nReporting by Anna Keller; Editing by David Moreau"
    links = links_by_id(plan_links([member(2, copy, T0 + timedelta(hours=2))], [member(1, SEED, T0)], PARAMS))
    assert links[2].duplicate_of == 1 and links[2].kind == "near"


@pytest.mark.parametrize("other", [UNRELATED, "\n\n".join(paragraphs(SEED)[4:])], ids=["unrelated", "same-topic-other-half"])
def test_different_text_is_not_linked(other):
    first_half = "\n\n".join(paragraphs(SEED)[:4])
    stored = [member(1, first_half, T0)]
    assert similarity(stored[0].signature, signature(other, PARAMS)) < PARAMS.near_threshold
    links = plan_links([member(2, other, T0 + timedelta(hours=1))], stored, PARAMS)
    assert links == [Link(2, None, None, None)]


def test_copies_in_the_same_batch_as_their_original_are_linked_to_it():
    batch = [
        member(12, INTRO + SEED, T0 + timedelta(minutes=30)),
        member(10, SEED, T0),
        member(11, SEED + APPENDIX, T0 + timedelta(minutes=10)),
        member(13, UNRELATED, T0 + timedelta(minutes=5)),
    ]
    links = links_by_id(plan_links(batch, [], PARAMS))
    assert links[10] == Link(10, None, None, None)
    assert links[13] == Link(13, None, None, None)
    assert (links[11].duplicate_of, links[11].kind) == (10, "near")
    assert (links[12].duplicate_of, links[12].kind) == (10, "near")


def test_earlier_published_late_arrival_becomes_the_original_and_the_cluster_is_repointed():
    stored = [
        member(1, SEED, T0, seq=1),
        member(2, SEED + APPENDIX, T0 + timedelta(hours=1), seq=2, duplicate_of=1),
        member(3, SEED.replace("\n\n", "\n"), T0 + timedelta(hours=2), seq=3, duplicate_of=1),
    ]
    late_but_earlier = member(4, INTRO + SEED, T0 - timedelta(hours=3), seq=4)
    links = plan_links([late_but_earlier], stored, PARAMS)
    by_id = links_by_id(links)
    assert links[0] == Link(4, None, None, None)  # new members come first
    assert {i: by_id[i].duplicate_of for i in (1, 2, 3)} == {1: 4, 2: 4, 3: 4}
    assert by_id[1].kind == "near" and by_id[1].similarity >= PARAMS.near_threshold
    # No chains: every target is an original once the links are applied.
    final = {m.id: m.duplicate_of for m in stored} | {i: link.duplicate_of for i, link in by_id.items()}
    assert all(final[target] is None for target in final.values() if target is not None)


def test_stored_members_whose_link_does_not_change_are_not_returned():
    stored = [member(1, SEED, T0), member(2, SEED + APPENDIX, T0 + timedelta(hours=1), duplicate_of=1)]
    links = plan_links([member(3, INTRO + SEED, T0 + timedelta(hours=5))], stored, PARAMS)
    assert [link.article_id for link in links] == [3]
    assert links[0].duplicate_of == 1


def test_publication_tie_goes_to_the_article_stored_first():
    batch = [member(7, SEED, T0, seq=20), member(8, SEED + APPENDIX, T0, seq=19)]
    links = links_by_id(plan_links(batch, [], PARAMS))
    assert links[8].duplicate_of is None and links[7].duplicate_of == 8


def test_undated_article_never_displaces_a_dated_original():
    stored = [member(1, SEED, T0)]
    links = plan_links([member(2, SEED + APPENDIX, None)], stored, PARAMS)
    assert links == [Link(2, 1, "near", links[0].similarity)]


def test_aware_and_naive_times_are_ordered_as_utc():
    paris = timezone(timedelta(hours=1))
    stored = [member(1, SEED, datetime(2024, 5, 1, 9, 30))]  # naive: UTC
    earlier = member(2, SEED + APPENDIX, datetime(2024, 5, 1, 10, 0, tzinfo=paris))  # 09:00 UTC
    by_id = links_by_id(plan_links([earlier], stored, PARAMS))
    assert by_id[2].duplicate_of is None and by_id[1].duplicate_of == 2


def test_new_article_bridging_two_clusters_merges_them_under_the_earliest_original():
    paras = paragraphs(SEED)
    head, tail = "\n\n".join(paras[:6]), "\n\n".join(paras[2:])
    sig_head, sig_tail, sig_all = (signature(t, PARAMS) for t in (head, tail, SEED))
    assert similarity(sig_head, sig_tail) < PARAMS.near_threshold
    assert min(similarity(sig_all, sig_head), similarity(sig_all, sig_tail)) >= PARAMS.near_threshold
    stored = [member(1, head, T0), member(2, tail, T0 + timedelta(hours=1)),
              member(3, tail + APPENDIX, T0 + timedelta(hours=2), duplicate_of=2)]
    by_id = links_by_id(plan_links([member(4, SEED, T0 + timedelta(hours=3))], stored, PARAMS))
    assert {i: by_id[i].duplicate_of for i in (2, 3, 4)} == {2: 1, 3: 1, 4: 1}
    assert 1 not in by_id  # the surviving original keeps its (empty) link


def test_short_texts_get_no_signature_but_still_match_exactly():
    summary = " ".join(SEED.split()[:30])
    assert len(tokens(summary)) < PARAMS.min_words
    assert signature(summary, PARAMS) is None
    links = links_by_id(plan_links([member(1, summary, T0), member(2, summary.upper() + " !", T0 + timedelta(1))],
                                   [], PARAMS))
    assert links[2] == Link(2, 1, "exact", 1.0)


def test_short_text_is_never_near_linked_to_its_long_source():
    summary = " ".join(SEED.split()[:40])
    links = plan_links([member(2, summary, T0 + timedelta(hours=1))], [member(1, SEED, T0)], PARAMS)
    assert links == [Link(2, None, None, None)]


def test_signature_is_the_same_in_a_fresh_process():
    code = (
        "import sys; from ingest.dedup import DedupParams, signature; "
        "print(','.join(map(str, signature(sys.stdin.read(), DedupParams()))))"
    )
    out = subprocess.run([sys.executable, "-c", code], input=SEED, capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert tuple(int(v) for v in out.strip().split(",")) == signature(SEED, PARAMS)


_WORDS = st.text(st.characters(codec="utf-8", exclude_characters=" "), min_size=0, max_size=6)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.lists(_WORDS, min_size=5, max_size=40).map(" ".join), min_size=1, max_size=12),
       group_bytes=st.sampled_from([1, 40, 300, 256 << 10]))
def test_shingle_hashes_of_many_texts_at_once_equal_text_by_text(texts, group_bytes):
    # Stored signatures were made text by text: the batched hashing must give the very same values.
    flat, offsets = shingle_hashes_many(texts, 5, group_bytes)
    assert len(offsets) == len(texts) + 1 and int(offsets[-1]) == len(flat)
    for i, text in enumerate(texts):
        assert np.array_equal(flat[int(offsets[i]):int(offsets[i + 1])], shingle_hashes(text, 5))


def test_signature_shape_and_seed_dependence():
    sig = signature(SEED, PARAMS)
    assert len(sig) == PARAMS.num_perm and all(0 <= v < 2**32 for v in sig)
    assert signature(SEED, replace(PARAMS, seed=2)) != sig


def test_cjk_text_is_split_into_characters():
    text = "先日、不正に改造したiPhoneを販売したとして逮捕された。"
    words = tokens(text)
    assert "先" in words and "iphone" in words and len(words) > 20


def test_band_keys_are_signed_64_bit_and_differ_per_band():
    keys = band_keys(signature(SEED, PARAMS), PARAMS)
    assert len(keys) == PARAMS.bands
    assert all(-(2**63) <= k < 2**63 for k in keys) and any(k < 0 for k in keys)
    flat = band_keys((7,) * PARAMS.num_perm, PARAMS)  # same values in every band: the band number separates them
    assert len(set(flat)) == PARAMS.bands


def test_similarity_of_a_copy_shares_band_keys_with_its_original():
    a, b = signature(SEED, PARAMS), signature(INTRO + SEED + APPENDIX, PARAMS)
    assert set(band_keys(a, PARAMS)) & set(band_keys(b, PARAMS))
    assert similarity(a, a) == 1.0


def test_invalid_params_and_inputs_are_refused():
    with pytest.raises(ValueError):
        DedupParams(bands=40, rows=4)  # 160 > num_perm
    with pytest.raises(ValueError):
        DedupParams(near_threshold=0)
    with pytest.raises(ValueError):
        similarity((1, 2), (1, 2, 3))
    orphan = member(2, SEED + APPENDIX, T0, duplicate_of=99)
    with pytest.raises(ValueError, match="99"):
        plan_links([member(3, UNRELATED, T0)], [orphan], PARAMS)
    with pytest.raises(ValueError, match="twice"):
        plan_links([member(1, SEED, T0)], [member(1, SEED, T0)], PARAMS)
    with pytest.raises(ValueError, match="twice"):
        plan_links([member(3, UNRELATED, T0)], [member(1, SEED, T0), member(1, SEED, T0, seq=5)], PARAMS)


def test_a_stored_row_returned_by_two_chunked_lookups_counts_once():
    stored = [member(1, SEED, T0), member(1, SEED, T0)]
    assert plan_links([member(2, SEED + APPENDIX, T0 + timedelta(hours=1))], stored, PARAMS)[0].duplicate_of == 1


def _reference_normalise(text: str) -> str:
    """The normaliser's definition, in its slow direct form (stored content hashes depend on it)."""
    import re
    import unicodedata

    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def test_normalise_text_is_the_regex_definition_on_every_kind_of_text():
    import random

    pages = sorted((REPO.parent / "shared/corpus/articles").glob("*.html"))  # real pages, many languages
    texts = [SEED] + [p.read_text(encoding="utf-8", errors="replace")[:20000] for p in pages]
    rng = random.Random(7)
    # Latin, Greek, punctuation, spaces of every width, CJK, ligatures, ß/İ case-folding, astral emoji.
    alphabet = ([chr(c) for c in range(0x250)] + [chr(c) for c in range(0x370, 0x400)]
                + [chr(c) for c in range(0x2000, 0x2070)] + [chr(c) for c in range(0x3000, 0x3100)]
                + ["\ufb01", "\u1e9e", "\u0130", "\U0001F600", "\U00010000", "_", "\u00a0"])
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(2000)]
    texts += ["", " ", "_", "a_b", "__x__", "\ud800 lone surrogate", "Grève à l'usine : 3 000 salariés"]
    assert len(texts) > 2100 and len(pages) > 100
    for text in texts:
        assert normalise_text(text) == _reference_normalise(text), repr(text[:80])


def test_probe_buckets_cover_every_article_within_the_window():
    from ingest.dedup import probe_buckets, time_bucket

    import random

    rng = random.Random(3)
    for window in (1, 7, 30):
        params = DedupParams(near_window_days=window)
        for _ in range(3000):
            a = T0.replace(tzinfo=timezone.utc) + timedelta(seconds=rng.uniform(-4e8, 4e8))
            b = a + timedelta(days=rng.uniform(-window, window))
            assert time_bucket(b, params) in probe_buckets(a, params), (window, a, b)
        far = T0 + timedelta(days=5 * window)
        assert time_bucket(far, params) not in probe_buckets(T0, params)
