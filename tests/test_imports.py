"""What start-up loads: `newsmon --help` and a run's main process import nothing they do not use."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("duckdb", "numpy", "httpx", "trafilatura", "apprise", "feedparser", "prefect")


def loaded_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running `code`."""
    probe = f"import sys\n{code}\nprint()\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[-1].split() if out.strip() else []


def test_help_loads_no_engine_client_or_extractor():
    code = "from flows import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass"
    assert loaded_after(code) == []


def test_the_run_path_leaves_extraction_and_delivery_libraries_to_whoever_uses_them():
    # Extraction workers import trafilatura; Apprise loads only when an alert goes to an Apprise channel;
    # numpy only when a batch of new articles is stored (a run with nothing new never needs it).
    assert loaded_after("import flows.cli, flows.cycle") == ["duckdb", "httpx", "feedparser"]
