-- newsmon schema, version 1. Names are a user-facing contract: people query them with plain SQL.
CREATE TABLE feeds (
    url                  VARCHAR PRIMARY KEY,
    name                 VARCHAR,
    tags                 VARCHAR[],
    etag                 VARCHAR,
    last_modified        VARCHAR,
    last_fetched_at      TIMESTAMPTZ,
    last_ok_at           TIMESTAMPTZ,
    last_status          INTEGER,
    last_outcome         VARCHAR,
    last_error           VARCHAR,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_check_at        TIMESTAMPTZ,
    title                VARCHAR
);

CREATE TABLE articles (
    id             BIGINT PRIMARY KEY,          -- derived from the canonical URL: stable across runs
    seq            BIGINT NOT NULL,             -- storage order (tie-break for originals); numbered by newsmon
    url            VARCHAR NOT NULL UNIQUE,     -- canonical: after redirects, no fragment, no tracking parameters
    source_url     VARCHAR,                     -- the link as the feed gave it
    feed_url       VARCHAR,
    title          VARCHAR,
    author         VARCHAR,
    published_at   TIMESTAMPTZ,
    date_source    VARCHAR,                     -- 'feed' | 'page' | NULL
    fetched_at     TIMESTAMPTZ,
    language       VARCHAR,
    text           VARCHAR,
    word_count     INTEGER,
    description    VARCHAR,
    sitename       VARCHAR,
    extraction     VARCHAR,                     -- 'trafilatura' | 'feed_summary'
    content_hash   VARCHAR,                     -- sha256 of the normalised text
    duplicate_of   BIGINT,                      -- NULL for an original, else the id of its cluster's original
    duplicate_kind VARCHAR,                     -- 'exact' | 'near' | NULL
    similarity     DOUBLE,
    run_id         VARCHAR
);
CREATE INDEX articles_content_hash ON articles (content_hash);

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

CREATE TABLE alert_matches (
    alert         VARCHAR NOT NULL,
    article_id    BIGINT NOT NULL,
    matched_terms VARCHAR[],
    snippet       VARCHAR,
    snippet_html  VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL,
    held          BOOLEAN NOT NULL DEFAULT false,  -- kept back by cooldown / max_per_run: recorded, not delivered
    PRIMARY KEY (alert, article_id)
);

CREATE TABLE deliveries (
    alert       VARCHAR NOT NULL,
    article_id  BIGINT NOT NULL,
    channel     VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,    -- 'pending' | 'sent' | 'failed'
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  VARCHAR,
    created_at  TIMESTAMPTZ NOT NULL,
    sent_at     TIMESTAMPTZ,
    delivery_id VARCHAR,
    PRIMARY KEY (alert, article_id, channel)
);

CREATE TABLE runs (
    run_id      VARCHAR PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status      VARCHAR NOT NULL,    -- 'running' | 'completed' | 'failed'
    summary     JSON
);
