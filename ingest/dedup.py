"""Duplicate detection: normalised-text hashes (exact layer), MinHash signatures, LSH band keys
and the linking plan that groups copies of one story under its original; pure."""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
# Chinese and Japanese are written without spaces: each ideograph or kana becomes its own token,
# otherwise a whole sentence would be one "word" and shingles would never overlap.
_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")
_CJK_SPLIT = re.compile(f"[{_CJK_RANGES}]|[^{_CJK_RANGES}]+")

EXACT = "exact"
NEAR = "near"


def normalise_text(text: str) -> str:
    """NFKC, case-folded, punctuation and whitespace collapsed to single spaces."""
    if not unicodedata.is_normalized("NFKC", text):  # most text already is: checking is 4x cheaper
        text = unicodedata.normalize("NFKC", text)
    return _words_spaced(text.casefold())


_BMP = 0x10000
_word_chars: list = []  # [numpy bool array: is code point c a word character, for c < _BMP]


def _words_spaced(folded: str) -> str:
    """_NON_WORD.sub(" ", folded).strip(), with one table lookup per character instead of the regex
    engine's (the regex cost 0.45 ms for a 4.4 KB article, this 0.1 ms; the output is identical)."""
    import numpy as np

    try:
        points = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:  # a lone surrogate
        return _NON_WORD.sub(" ", folded).strip()
    if not len(points):
        return ""
    if points.max() >= _BMP:  # emoji and other astral characters: rare, left to the regex
        return _NON_WORD.sub(" ", folded).strip()
    word = _word_table()[points]
    after_word = np.empty_like(word)
    after_word[0] = False
    after_word[1:] = word[:-1]
    # Keep word characters and the first character of each non-word run, written as a space.
    spaced = np.where(word, points, np.uint32(32))[word | after_word]
    return spaced.tobytes().decode("utf-32-le").strip()


def _word_table():
    """Which BMP code points the regex counts as word characters, asked of the regex itself once."""
    import numpy as np

    if not _word_chars:
        every = "".join(" " if 0xD800 <= c < 0xE000 else chr(c) for c in range(_BMP))
        word = np.ones(_BMP, dtype=bool)
        for run in _NON_WORD.finditer(every):
            word[run.start():run.end()] = False
        _word_chars.append(word)
    return _word_chars[0]


def content_hash(text: str) -> str:
    """Hex SHA-256 of the normalised text: equal for copies that differ only in case, spacing or punctuation."""
    return hash_of_normalised(normalise_text(text))


def hash_of_normalised(norm: str) -> str:
    """content_hash() of a text already passed through normalise_text."""
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def hash_key(content_hash_hex: str) -> int:
    """Signed 64-bit key of a content hash (its first 8 bytes), as the dedup index stores it."""
    return int.from_bytes(bytes.fromhex(content_hash_hex[:16]), "big", signed=True)


class InvalidDedupParam(ValueError):
    """A near-duplicate setting out of range; `field` names it (so a config error can name its key)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class DedupParams:
    """Near-duplicate settings; bands x rows must fit in num_perm (see docs/DEDUP.md for the measurements)."""

    near_threshold: float = 0.6
    shingle: int = 5
    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    min_words: int = 50
    seed: int = 1
    near_window_days: int = 30  # near copies published this close are always compared; see time_buckets

    def __post_init__(self) -> None:
        if not 0.0 < self.near_threshold <= 1.0:
            raise InvalidDedupParam("near_threshold", f"must be in (0, 1], got {self.near_threshold}")
        if self.shingle < 1:
            raise InvalidDedupParam("shingle", f"must be >= 1, got {self.shingle}")
        if self.min_words < self.shingle:  # a text shorter than one shingle has no signature
            raise InvalidDedupParam("min_words", f"min_words ({self.min_words}) must be at least shingle ({self.shingle})")
        if self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm:
            raise InvalidDedupParam("bands", f"bands*rows ({self.bands}*{self.rows}) must be between 1 and "
                                             f"num_perm ({self.num_perm})")
        if not 1 <= self.near_window_days <= 3650:
            raise InvalidDedupParam("near_window_days", f"must be between 1 and 3650, got {self.near_window_days}")

    @property
    def key_layout(self) -> int:
        """A number that changes whenever the settings that shape stored band keys or buckets change."""
        import zlib

        shape = (self.shingle, self.num_perm, self.bands, self.rows, self.seed, self.near_window_days)
        return zlib.crc32(repr(shape).encode())


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def time_bucket(at: datetime, params: DedupParams) -> int:
    """The time bucket an article's band keys are filed under: 2 x near_window_days wide."""
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return (at - _EPOCH).days // (2 * params.near_window_days)


def probe_buckets(at: datetime, params: DedupParams) -> tuple[int, int]:
    """The two buckets to look in for copies of an article of this time: its own and the nearer neighbour.

    Buckets are twice the window wide, so every article within near_window_days on either side is in
    one of these two (it may find older or newer ones too: the guarantee is a floor, not a cut-off)."""
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    bucket = time_bucket(at, params)
    first_half = (at - _EPOCH).days % (2 * params.near_window_days) < params.near_window_days
    return (bucket, bucket - 1) if first_half else (bucket, bucket + 1)


def tokens(text: str) -> list[str]:
    """Words of the normalised text; CJK ideographs and kana count as one word each."""
    return tokens_of_normalised(normalise_text(text))


def tokens_of_normalised(norm: str) -> list[str]:
    """tokens() of a text already passed through normalise_text (normalising is the costly part)."""
    if not _has_cjk(norm):
        return norm.split()
    return [piece for word in norm.split() for piece in _CJK_SPLIT.findall(word)]


def signature(text: str, params: DedupParams) -> tuple[int, ...] | None:
    """MinHash over word shingles of the normalised text; None when it has fewer than min_words words."""
    return signatures_of_normalised([normalise_text(text)], params)[0]


def signatures_of_normalised(norms: Sequence[str], params: DedupParams) -> list[tuple[int, ...] | None]:
    """signature() of many texts already passed through normalise_text, in one MinHash call."""
    from rensa import RMinHash  # compiled (Rust) MinHash over the 64-bit shingle hashes below

    cjk = [_has_cjk(n) for n in norms]  # once per text: the check costs as much as the hashing
    spaced = [_spaced_tokens(n, c) for n, c in zip(norms, cjk)]
    eligible = [i for i, text in enumerate(spaced)
                if text and _word_count(norms[i], cjk[i]) >= params.min_words]
    out: list[tuple[int, ...] | None] = [None] * len(norms)
    if not eligible:
        return out
    flat, offsets = shingle_hashes_many([spaced[i] for i in eligible], params.shingle)
    rows = RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, params.num_perm, params.seed).to_rows()
    for i, row in zip(eligible, rows):
        out[i] = tuple(row)
    return out


def _spaced_tokens(norm: str, cjk: bool) -> str:
    # Normalised text is already single-space separated words, except for CJK characters (one word each).
    return " ".join(tokens_of_normalised(norm)) if cjk else norm


def _word_count(norm: str, cjk: bool) -> int:
    return len(tokens_of_normalised(norm)) if cjk else (norm.count(" ") + 1 if norm else 0)


def _has_cjk(norm: str) -> bool:
    """Whether the text holds a CJK ideograph or kana.

    A vector look at the UTF-8 lead bytes rules out nearly every text first: U+3040-U+9FFF start
    with 0xE3-0xE9 and U+F900-U+FAFF with 0xEF (max() or the regex alone took 0.15-0.6 ms per article)."""
    if not norm or norm.isascii():
        return False
    import numpy as np

    lead = np.frombuffer(norm.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if not (((lead >= 0xE3) & (lead <= 0xE9)) | (lead == 0xEF)).any():
        return False
    return _CJK_CHAR.search(norm) is not None


# Stable 64-bit hashes computed with numpy over the whole text at once: one Python-level call per text
# instead of one per shingle (datasketch hashed each shingle in a Python loop: 2.25 ms per article).
_M64 = 2**64
_PRIME = 0x100000001B3  # odd, so invertible modulo 2**64
_PRIME_INV = pow(_PRIME, -1, _M64)
_WINDOW = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD,
           0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9)
_powers_cache: dict[str, object] = {}


def _powers(n: int):
    """P**i and P**-i modulo 2**64 for i < n (uint64 arithmetic wraps, which is the modulo)."""
    import numpy as np

    have = _powers_cache.get("pw")
    if have is None or len(have) < n:
        size = max(n, 2 * len(have) if have is not None else 65536)
        with np.errstate(over="ignore"):
            pw = np.cumprod(np.full(size, _PRIME, dtype=np.uint64))
            inv = np.cumprod(np.full(size, _PRIME_INV, dtype=np.uint64))
        _powers_cache["pw"] = np.concatenate(([np.uint64(1)], pw[:-1]))
        _powers_cache["inv"] = np.concatenate(([np.uint64(1)], inv[:-1]))
    return _powers_cache["pw"], _powers_cache["inv"]


def _mix64(x):
    """splitmix64's finaliser: spreads every input bit over the whole word."""
    import numpy as np

    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def shingle_hashes(spaced: str, size: int):
    """uint64 hashes of every `size`-word window of a single-space separated text (None when empty).

    A text shorter than a window is one shingle. Each word is hashed as a polynomial over its UTF-8
    bytes (prefix sums, so the whole text is a few vector operations), each window combines its
    words' hashes with per-position multipliers."""
    import numpy as np

    data = np.frombuffer(spaced.encode("utf-8"), dtype=np.uint8)
    if not len(data):
        return None
    pw, inv = _powers(len(data))
    spaces = np.flatnonzero(data == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(data)]))
    with np.errstate(over="ignore"):
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(data.astype(np.uint64) * pw[: len(data)])))
        words = (prefix[ends] - prefix[starts]) * inv[starts]
        words = _mix64(words ^ ((ends - starts).astype(np.uint64) * np.uint64(_WINDOW[0])))
        width = min(size, len(words))
        count = len(words) - width + 1
        combined = np.zeros(count, dtype=np.uint64)
        for k in range(width):
            combined += words[k : k + count] * np.uint64(_WINDOW[k % len(_WINDOW)] | 1)
    return _mix64(combined)


def shingle_hashes_many(texts: Sequence[str], size: int, group_bytes: int = 256 << 10):
    """shingle_hashes() of many texts, each with at least `size` words, as one flat uint64 array and the
    offsets of each text's run in it (texts[i] -> flat[offsets[i]:offsets[i + 1]]).

    The same values as text by text, computed over groups of texts joined by a space: the word hash is
    position independent and a window is kept only when it lies inside one text, so joining changes
    nothing, while a few dozen numpy calls serve ~50 texts instead of one (0.22 -> 0.09 ms per article
    of 4.5 KB). Groups of ~256 KB keep the uint64 working arrays in the CPU cache."""
    import numpy as np

    counts = np.asarray([t.count(" ") + 1 - size + 1 for t in texts], dtype=np.int64)  # windows per text
    if len(counts) and counts.min() < 1:
        raise ValueError(f"every text needs at least {size} words")
    parts, start = [], 0
    while start < len(texts):
        end, length = start, 0
        while end < len(texts) and (end == start or length + len(texts[end]) < group_bytes):
            length += len(texts[end]) + 1
            end += 1
        parts.append(_joined_shingles(texts[start:end], counts[start:end], size))
        start = end
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.uint64)
    return flat, offsets


def _joined_shingles(texts: Sequence[str], counts, size: int):
    """The shingle hashes of consecutive texts (counts: windows per text), via one joined byte string."""
    import numpy as np

    data = np.frombuffer(" ".join(texts).encode("utf-8"), dtype=np.uint8)
    pw, inv = _powers(len(data))
    spaces = np.flatnonzero(data == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(data)]))
    with np.errstate(over="ignore"):
        prefix = np.empty(len(data) + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(data.astype(np.uint64) * pw[: len(data)], out=prefix[1:])
        words = (prefix[ends] - prefix[starts]) * inv[starts]
        words = _mix64(words ^ ((ends - starts).astype(np.uint64) * np.uint64(_WINDOW[0])))
        count = len(words) - size + 1
        combined = np.zeros(count, dtype=np.uint64)
        for k in range(size):
            combined += words[k : k + count] * np.uint64(_WINDOW[k % len(_WINDOW)] | 1)
    # Text i's words start at first_word[i]; its windows are the counts[i] that start there.
    first_word = np.concatenate(([0], np.cumsum(counts + size - 1)[:-1]))
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return _mix64(combined[np.repeat(first_word, counts) + within])


def band_keys(sig: Sequence[int], params: DedupParams) -> list[int]:
    """One signed 64-bit key per LSH band; the band number is hashed in so all bands share one column."""
    return band_keys_many([sig], params)[0]


def band_keys_many(sigs: Sequence[Sequence[int]], params: DedupParams) -> list[list[int]]:
    """band_keys() of many signatures in a few vector operations."""
    import numpy as np

    if not sigs:
        return []
    width = params.bands * params.rows
    if min(len(s) for s in sigs) < width:
        raise ValueError(f"a signature is shorter than bands*rows ({width})")
    values = np.asarray([s[:width] for s in sigs], dtype=np.uint64).reshape(len(sigs), params.bands, params.rows)
    with np.errstate(over="ignore"):
        key = np.broadcast_to(np.arange(params.bands, dtype=np.uint64) * np.uint64(_WINDOW[-1]),
                              (len(sigs), params.bands))
        for r in range(params.rows):
            key = _mix64(key ^ values[:, :, r]) * np.uint64(_WINDOW[r % len(_WINDOW)] | 1)
    return _mix64(key).view(np.int64).tolist()


def similarity(sig_a: Sequence[int], sig_b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of the two shingle sets: the share of equal MinHash values."""
    if len(sig_a) != len(sig_b) or not sig_a:
        raise ValueError(f"signatures differ in length or are empty ({len(sig_a)} vs {len(sig_b)})")
    return sum(a == b for a, b in zip(sig_a, sig_b)) / len(sig_a)


@dataclass(frozen=True)
class Member:
    """An article as the dedup plan sees it: identity, order, hash, signature and current link."""

    id: int
    seq: int
    published_at: datetime | None
    content_hash: str
    signature: tuple[int, ...] | None
    duplicate_of: int | None = None
    bands: tuple[int, ...] | None = None  # band_keys(signature), when already computed
    bucket: int | None = None  # time_bucket(): the bucket its band keys are filed under
    probes: tuple[int, ...] | None = None  # probe_buckets() of a new member (None for stored ones)


@dataclass(frozen=True)
class Link:
    """The duplicate columns an article must have; all None for an original or a unique article."""

    article_id: int
    duplicate_of: int | None
    kind: str | None
    similarity: float | None


class _Clusters:
    """Union-find over article ids."""

    def __init__(self, ids: Iterable[int]) -> None:
        self._parent = {i: i for i in ids}

    def find(self, i: int) -> int:
        """The representative of i's cluster (with path halving)."""
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        """Put a and b in the same cluster."""
        self._parent[self.find(a)] = self.find(b)

    def groups(self) -> dict[int, list[int]]:
        """Representative -> ids of its cluster."""
        out: dict[int, list[int]] = {}
        for i in self._parent:
            out.setdefault(self.find(i), []).append(i)
        return out


def _check_members(new: Sequence[Member], stored: Sequence[Member]) -> dict[int, Member]:
    """All members by id; raises on a conflicting repeated id or a stored link to an article not supplied."""
    by_id: dict[int, Member] = {}
    for m in stored:
        # The same row may come back from several chunked lookups; only a conflicting copy is an error.
        if by_id.setdefault(m.id, m) != m:
            raise ValueError(f"stored article {m.id} appears twice with different values")
    for m in new:
        if m.id in by_id:
            raise ValueError(f"article {m.id} appears twice in the dedup input")
        by_id[m.id] = m
    missing = {m.duplicate_of for m in stored if m.duplicate_of is not None} - by_id.keys()
    if missing:
        raise ValueError(f"stored members point at originals that were not supplied: {sorted(missing)}")
    return by_id


def _link_exact(clusters: _Clusters, new: Sequence[Member], members: Iterable[Member]) -> None:
    """Join every new member with all members of equal content hash."""
    new_hashes = {m.content_hash for m in new}
    first: dict[str, int] = {}
    for m in members:
        if m.content_hash in new_hashes:
            clusters.union(m.id, first.setdefault(m.content_hash, m.id))


def _link_near(clusters: _Clusters, new: Sequence[Member], members: Iterable[Member], params: DedupParams) -> None:
    """Join every new member with the members sharing a band key whose similarity reaches the threshold."""
    import numpy as np

    signed = [m for m in members if m.signature is not None]
    if len(signed) < 2:
        return
    keys = np.asarray([m.bands or band_keys(m.signature, params) for m in signed], dtype=np.int64)
    owners = np.repeat(np.arange(len(signed)), keys.shape[1])
    flat = keys.ravel()
    order = np.argsort(flat, kind="stable")
    flat, owners = flat[order], owners[order]
    # Only keys held by two or more members can join anything: nearly all keys are held by one.
    shared = np.flatnonzero(flat[1:] == flat[:-1])
    starts = np.unique(np.concatenate((shared, shared + 1)))
    new_ids = {m.id for m in new}
    groups: dict[int, list[int]] = {}
    for position in starts.tolist():
        groups.setdefault(int(flat[position]), []).append(int(owners[position]))
    checked: set[tuple[int, int]] = set()
    for group in groups.values():
        for i in group:
            m = signed[i]
            if m.id not in new_ids:
                continue
            for j in group:
                other = signed[j]
                pair = (min(m.id, other.id), max(m.id, other.id))
                if other.id == m.id or pair in checked or not _in_reach(m, other):
                    continue
                checked.add(pair)
                if similarity(m.signature, other.signature) >= params.near_threshold:
                    clusters.union(m.id, other.id)


def _in_reach(a: Member, b: Member) -> bool:
    """Whether a and b are near enough in time to be compared: what the index's buckets allow, so
    that two new articles in one batch are linked exactly when they would be across batches."""
    if a.bucket is None or b.bucket is None:  # a member from before buckets were kept
        return True
    return (a.probes is not None and b.bucket in a.probes) or (b.probes is not None and a.bucket in b.probes)


def _utc(at: datetime) -> datetime:
    # Naive timestamps are taken as UTC so that aware and naive values can be ordered together.
    return at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo else at


def _age_key(m: Member) -> tuple:
    """Sort key for 'published earliest, then stored first'; undated articles sort after dated ones."""
    if m.published_at is None:
        return (1, datetime.max, m.seq)
    return (0, _utc(m.published_at), m.seq)


def _link_to(m: Member, original: Member) -> Link:
    """The link of m inside a cluster whose original is `original`."""
    if m.id == original.id:
        return Link(m.id, None, None, None)
    if m.content_hash == original.content_hash:
        return Link(m.id, original.id, EXACT, 1.0)
    if m.signature is None or original.signature is None:
        return Link(m.id, original.id, NEAR, None)
    return Link(m.id, original.id, NEAR, similarity(m.signature, original.signature))


def plan_links(new: Sequence[Member], stored: Sequence[Member], params: DedupParams) -> list[Link]:
    """Links for every new member, plus the stored members whose duplicate_of must change."""
    by_id = _check_members(new, stored)
    clusters = _Clusters(by_id)
    for m in stored:
        if m.duplicate_of is not None:
            clusters.union(m.id, m.duplicate_of)
    _link_exact(clusters, new, by_id.values())
    _link_near(clusters, new, by_id.values(), params)
    new_ids = {m.id for m in new}
    planned: dict[int, Link] = {}
    for ids in clusters.groups().values():
        original = min((by_id[i] for i in ids), key=_age_key)
        for i in ids:
            link = _link_to(by_id[i], original)
            if i in new_ids or link.duplicate_of != by_id[i].duplicate_of:
                planned[i] = link
    stored_changes = sorted(i for i in planned if i not in new_ids)
    return [planned[m.id] for m in new] + [planned[i] for i in stored_changes]
