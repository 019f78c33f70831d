-- Stories wait for the alert stage in the database, not in a run's memory: a run killed after
-- storing articles but before matching them leaves them queued, and the next run alerts them.
-- A table of its own, because an UPDATE of an articles row rewrites the whole row (text and all).
CREATE TABLE alert_queue (
    article_id BIGINT PRIMARY KEY
);
