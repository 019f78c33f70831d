-- Near-duplicate detection: MinHash signatures on articles, LSH band keys in their own table,
-- and the `stories` view (one row per original with its copies).
ALTER TABLE articles ADD COLUMN signature UINTEGER[];  -- MinHash values; NULL for texts under [dedup] min_words

CREATE TABLE article_bands (
    key        BIGINT NOT NULL,   -- band number hashed with that band's MinHash values
    article_id BIGINT NOT NULL
);
CREATE INDEX article_bands_key ON article_bands (key);
CREATE INDEX articles_duplicate_of ON articles (duplicate_of);

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
