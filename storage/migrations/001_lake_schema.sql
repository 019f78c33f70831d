-- newsmon schema on DuckLake. Names are a user-facing contract: people query them with plain SQL.
-- DuckLake has no PRIMARY KEY/UNIQUE constraints: uniqueness is kept by newsmon's single writer
-- (storage/lock.py) with anti-joins, and the dedup keys live in index.sqlite (docs/STORAGE.md).
-- Article text compresses to about half with zstd compared with DuckLake's default (snappy).
CALL newsmon.set_option('parquet_compression', 'zstd');

CREATE TABLE feeds (
    url                  VARCHAR NOT NULL,   -- unique
    name                 VARCHAR,
    tags                 VARCHAR[],
    etag                 VARCHAR,
    last_modified        VARCHAR,
    last_fetched_at      TIMESTAMPTZ,
    last_ok_at           TIMESTAMPTZ,
    last_status          INTEGER,
    last_outcome         VARCHAR,
    last_error           VARCHAR,
    consecutive_failures INTEGER,
    next_check_at        TIMESTAMPTZ,
    title                VARCHAR
);

CREATE TABLE articles (
    id             BIGINT NOT NULL,   -- derived from the canonical URL: stable across runs; unique
    seq            BIGINT NOT NULL,   -- storage order (tie-break for originals)
    url            VARCHAR NOT NULL,  -- canonical: after redirects, no fragment, no tracking parameters; unique
    source_url     VARCHAR,           -- the link as the feed (or the imported file) gave it
    feed_url       VARCHAR,
    title          VARCHAR,
    author         VARCHAR,
    published_at   TIMESTAMPTZ,
    date_source    VARCHAR,           -- 'feed' | 'page' | 'import' | NULL
    fetched_at     TIMESTAMPTZ,
    language       VARCHAR,
    text           VARCHAR,
    word_count     INTEGER,
    description    VARCHAR,
    sitename       VARCHAR,
    extraction     VARCHAR,           -- 'trafilatura' | 'feed_summary' | 'import'
    content_hash   VARCHAR,           -- sha256 of the normalised text
    duplicate_of   BIGINT,            -- NULL for an original, else the id of its cluster's original
    duplicate_kind VARCHAR,           -- 'exact' | 'near' | NULL
    similarity     DOUBLE,
    signature      UINTEGER[],        -- MinHash values; NULL for texts under [dedup] min_words
    run_id         VARCHAR
);

CREATE TABLE fetch_log (
    "at"       TIMESTAMPTZ NOT NULL,
    run_id     VARCHAR,
    url        VARCHAR NOT NULL,
    kind       VARCHAR NOT NULL,     -- 'feed' | 'article' | 'robots'
    status     INTEGER,
    outcome    VARCHAR NOT NULL,     -- ok, not_modified, http_error, timeout, network_error, too_large, not_html, parse_error, blocked
    error      VARCHAR,
    elapsed_ms INTEGER,
    bytes      BIGINT
);

CREATE TABLE alert_queue (
    article_id BIGINT NOT NULL       -- new stories stored but not yet matched against the rules
);

CREATE TABLE alert_matches (
    alert         VARCHAR NOT NULL,
    article_id    BIGINT NOT NULL,   -- (alert, article_id) unique
    matched_terms VARCHAR[],
    snippet       VARCHAR,
    snippet_html  VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL,
    held          BOOLEAN NOT NULL   -- kept back by cooldown / max_per_run: recorded, not delivered
);

CREATE TABLE deliveries (
    alert       VARCHAR NOT NULL,
    article_id  BIGINT NOT NULL,
    channel     VARCHAR NOT NULL,    -- (alert, article_id, channel) unique
    status      VARCHAR NOT NULL,    -- 'pending' | 'sent' | 'failed'
    attempts    INTEGER NOT NULL,
    last_error  VARCHAR,
    created_at  TIMESTAMPTZ NOT NULL,
    sent_at     TIMESTAMPTZ,
    delivery_id VARCHAR
);

CREATE TABLE runs (
    run_id      VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,    -- 'ingest' | 'import' | 'upgrade'
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status      VARCHAR NOT NULL,    -- 'running' | 'completed' | 'failed'
    snapshot_id BIGINT,              -- lake snapshot with this run's last data: AT (VERSION => snapshot_id)
    summary     JSON
);

CREATE VIEW stories AS
SELECT o.id,
       o.title,
       o.url,
       o.published_at,
       o.language,
       count(c.id) AS copies,
       list_distinct(list_prepend(regexp_extract(o.url, '^[a-z]+://([^/:]+)', 1),
                                  list(regexp_extract(c.url, '^[a-z]+://([^/:]+)', 1)) FILTER (WHERE c.id IS NOT NULL)))
           AS sources,
       list(c.url ORDER BY c.published_at) FILTER (WHERE c.id IS NOT NULL) AS copy_urls
FROM articles o
LEFT JOIN articles c ON c.duplicate_of = o.id
WHERE o.duplicate_of IS NULL
GROUP BY o.id, o.title, o.url, o.published_at, o.language;
