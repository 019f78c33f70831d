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


def test_demo_into_a_new_folder_prints_lines_that_work_as_written_from_where_it_ran(tmp_path):
    newsmon = os.path.join(os.path.dirname(sys.executable), "newsmon")
    env = {k: v for k, v in os.environ.items() if k != "NEWSMON_CONFIG"}
    done = subprocess.run([newsmon, "demo", "--database", "sub/dir/x.duckdb"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sub" / "dir" / "x.toml").is_file() and (tmp_path / "sub" / "dir" / "x.lake").is_dir()
    tries = done.stdout.split("Try these", 1)[1].splitlines()[1:]
    assert len(tries) == 3 and all(line.startswith(f"  {newsmon} sql --config sub/dir/x.toml ") for line in tries)
    for line in tries:  # pasted into a shell in the same folder
        ran = subprocess.run(line.strip(), shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env=env)
        assert ran.returncode == 0 and "(0 rows)" not in ran.stdout, line + ran.stderr
