-- Duplicate detection: tables, indexes and statements (DuckDB 1.5).
--
-- Each block starts with a "-- name: <name>" line; bench/dedup_bench.py runs these exact blocks.
-- Parameters are DuckDB named parameters ($name). Every list is passed as ONE JSON text
-- (json.dumps(...)) and decoded with from_json: binding a Python list costs ~50 us per element,
-- which is more than the whole index lookup. The same statements serve a batch of one or of
-- thousands of articles.
--
-- Batch cycle, in ONE transaction (single writer):
--   1. new_seqs          reserve insertion-order numbers for the batch
--   2. lookup_candidates stored rows sharing a content hash or a band key with the batch,
--                        plus every member of their clusters
--   3. ingest.dedup.plan_links(new, stored, params) in Python
--   4. insert_articles   the new rows with their links (the real articles insert carries the
--                        other article columns too)
--   5. insert_bands      one row per (band key, new article with a signature)
--   6. update_links      stored rows re-pointed to a new, earlier original
--   COMMIT

-- name: create_tables
CREATE SEQUENCE IF NOT EXISTS article_seq START 1;

-- Only the columns duplicate detection reads or writes; the real articles table has more.
CREATE TABLE IF NOT EXISTS articles (
    id             BIGINT PRIMARY KEY,           -- derived from the canonical URL
    seq            BIGINT NOT NULL,              -- insertion order: breaks publication-time ties
    published_at   TIMESTAMP,                    -- UTC; NULL sorts after every dated article
    content_hash   VARCHAR NOT NULL,             -- ingest.dedup.content_hash: hex SHA-256
    signature      UINTEGER[],                   -- MinHash, num_perm values; NULL below min_words
    duplicate_of   BIGINT,                       -- id of the cluster's original; NULL for an original
    duplicate_kind VARCHAR CHECK (duplicate_kind IN ('exact', 'near')),
    similarity     DOUBLE,                       -- estimated Jaccard to the original; 1.0 for exact
    CHECK ((duplicate_of IS NULL) = (duplicate_kind IS NULL))
);

-- LSH buckets: `bands` rows per article with a signature. key = band number hashed together
-- with that band's MinHash values (ingest.dedup.band_keys), so one column holds every band.
CREATE TABLE IF NOT EXISTS article_bands (
    key        BIGINT NOT NULL,
    article_id BIGINT NOT NULL
);

-- name: create_indexes
-- ART indexes: the lookup below turns each join into an index scan (DuckDB pushes the small
-- probe side into the scan as an IN filter), so its cost does not grow with the table.
CREATE INDEX IF NOT EXISTS article_bands_key ON article_bands (key);
CREATE INDEX IF NOT EXISTS articles_content_hash ON articles (content_hash);
CREATE INDEX IF NOT EXISTS articles_duplicate_of ON articles (duplicate_of);

-- name: new_seqs
-- $n: the batch size. Returns n increasing numbers; give them to the batch in its order.
SELECT nextval('article_seq') AS seq FROM range($n);

-- name: lookup_candidates
-- $keys: JSON array of every band key of the batch; $hashes: JSON array of every content hash.
-- Returns the rows to pass to plan_links as `stored`: the direct hits, their originals and every
-- other member of those clusters. Each join runs as an ART index scan as long as its probe side
-- has at most `dynamic_or_filter_threshold` values (default 50; one article has `bands` = 32
-- keys). For a batch, run it once per article (chunks of <= 50 keys), then call plan_links once on
-- the union of the rows (a row returned twice is accepted).
WITH probe_keys AS (
    SELECT DISTINCT unnest(from_json($keys, '["BIGINT"]')) AS key
), probe_hashes AS (
    SELECT DISTINCT unnest(from_json($hashes, '["VARCHAR"]')) AS content_hash
), hits AS (
    SELECT b.article_id AS id FROM article_bands b JOIN probe_keys p ON b.key = p.key
    UNION
    SELECT a.id FROM articles a JOIN probe_hashes h ON a.content_hash = h.content_hash
), roots AS (
    SELECT DISTINCT coalesce(a.duplicate_of, a.id) AS root FROM articles a JOIN hits ON a.id = hits.id
)
SELECT a.id, a.seq, a.published_at, a.content_hash, a.signature, a.duplicate_of
FROM articles a JOIN roots r ON a.id = r.root
UNION
SELECT a.id, a.seq, a.published_at, a.content_hash, a.signature, a.duplicate_of
FROM articles a JOIN roots r ON a.duplicate_of = r.root;

-- name: insert_articles
-- $rows: JSON array of objects with these keys (published_at as ISO-8601 UTC, signature as a
-- list of ints or null). The real articles insert carries the other article columns too.
INSERT INTO articles BY NAME
SELECT unnest(from_json($rows, '[{"id": "BIGINT", "seq": "BIGINT", "published_at": "TIMESTAMP",
    "content_hash": "VARCHAR", "signature": ["UINTEGER"], "duplicate_of": "BIGINT",
    "duplicate_kind": "VARCHAR", "similarity": "DOUBLE"}]'), recursive := true);

-- name: insert_bands
-- $rows: JSON array of {"key", "article_id"}: `bands` objects per new article with a signature.
INSERT INTO article_bands BY NAME
SELECT unnest(from_json($rows, '[{"key": "BIGINT", "article_id": "BIGINT"}]'), recursive := true);

-- name: update_links
-- $rows: JSON array of {"id", "duplicate_of", "duplicate_kind", "similarity"}: the stored-member
-- links returned by plan_links (usually none, so skip the statement when the list is empty).
UPDATE articles
SET duplicate_of = l.duplicate_of, duplicate_kind = l.duplicate_kind, similarity = l.similarity
FROM (
    SELECT unnest(from_json($rows, '[{"id": "BIGINT", "duplicate_of": "BIGINT",
        "duplicate_kind": "VARCHAR", "similarity": "DOUBLE"}]'), recursive := true)
) l
WHERE articles.id = l.id;

-- name: cluster_of
-- An analyst's view: a story and all its copies, original first. $id: any member's id.
SELECT a.id, a.published_at, a.duplicate_of, a.duplicate_kind, a.similarity
FROM articles a
WHERE coalesce(a.duplicate_of, a.id) = (SELECT coalesce(duplicate_of, id) FROM articles WHERE id = $id)
ORDER BY a.duplicate_of IS NOT NULL, a.published_at, a.seq;
