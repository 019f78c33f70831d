"""Preloaded by the extraction pool's forkserver: what every worker needs, loaded once and shared.

py3langid reads its model (about 75 MB of arrays) on first use. Read here, in the server, the workers
forked from it share those pages copy-on-write instead of each reading a copy of its own; gc.freeze()
keeps the collector from touching (and so copying) the objects loaded here.
"""
import gc

import py3langid

import ingest.extract  # noqa: F401 - trafilatura, lxml, htmldate and newsmon's extraction

py3langid.classify("newsmon loads the language model once, before the workers fork")
gc.freeze()
