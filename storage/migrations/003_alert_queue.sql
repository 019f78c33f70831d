-- Stories wait for the alert stage in the database, not in a run's memory: a run killed after
-- storing articles but before matching them leaves them pending, and the next run alerts them.
ALTER TABLE articles ADD COLUMN alert_pending BOOLEAN DEFAULT false;
