"""Preloaded by the extraction pool's forkserver: the server process dies with the run that started it."""
from flows.deathsig import die_with_parent

die_with_parent()
