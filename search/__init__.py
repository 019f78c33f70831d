"""Full-text search of the store: the tantivy index (index.py) and the rule language on it (query.py)."""
