"""Feed and page ingestion: fetch, parse, extract, canonicalise, deduplicate. No Prefect, no database."""
