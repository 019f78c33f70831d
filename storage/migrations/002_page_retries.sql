-- Pages whose download failed in a way that may pass (timeout, network error, HTTP 429/5xx): the feed
-- entry waits here and is tried again by the next runs, up to 3 runs in all; then it is stored from
-- the feed's own summary. One row per entry URL (kept unique by the single writer).
CREATE TABLE page_retries (
    url           VARCHAR NOT NULL,
    feed_url      VARCHAR NOT NULL,
    guid          VARCHAR,
    title         VARCHAR,
    published     TIMESTAMPTZ,
    summary       VARCHAR,
    author        VARCHAR,
    attempts      INTEGER NOT NULL,   -- runs that tried the page so far
    last_outcome  VARCHAR,
    last_error    VARCHAR,
    updated_at    TIMESTAMPTZ NOT NULL
);
