"""`newsmon demo` works from a plain (non-editable) install: the demo site ships as package data."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_the_wheel_carries_the_demo_site_and_the_demo_finds_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("newsmon-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "flows/demo_site/rss.xml" in names and "flows/demo_site/robots.txt" in names
    assert "flows/demo_site/actualites/2019/11/syrie-deminage-daesh-deir-ez-zor.html" in names
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    # Imported from the unpacked wheel, from a folder that is not a checkout.
    probe = ("import flows.fixture_site as f, flows.demo, pathlib; "
             "print(f.__file__); print(sum(1 for p in f.SITE_DIR.rglob('*') if p.is_file()))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(site)}, timeout=120).stdout.split()
    assert out[0].startswith(str(site))
    assert int(out[1]) == sum(1 for p in (REPO / "flows" / "demo_site").rglob("*") if p.is_file())


def test_cli_and_demo_do_not_import_each_other():
    tree = ast.parse((REPO / "flows" / "demo.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "flows.cli" not in imported
