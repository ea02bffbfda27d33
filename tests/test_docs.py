"""The documentation site builds, strictly, and cannot drift from the pipeline.

`mkdocs build --strict` fails on any warning: a broken link or anchor, a page missing from the
nav, an included result file that does not exist (pymdownx.snippets with check_paths). The stage
table on the pipeline page is generated from dvc.yaml by docs/hooks.py through DVC; here dvc.yaml
is read independently (plain YAML, foreach expanded as the other pipeline tests do) and every
stage it declares must be in the built table. README.md stays the short front door.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pipeline_stages

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def stage_table_names(page: str) -> list[str]:
    """The first column of the stage table (the table whose header starts `stage | command`)."""
    for table in re.findall(r"<table>.*?</table>", page, re.S):
        header = [html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
        if header[:2] == ["stage", "command"]:
            rows = re.findall(r"<tr>\s*<td[^>]*>(.*?)</td>", table, re.S)
            return [html.unescape(re.sub(r"<[^>]+>", "", r)).strip() for r in rows]
    raise AssertionError("no stage table on the pipeline page")


def test_site_builds_strict(site):
    assert (site / "index.html").is_file()
    assert (site / "pipeline" / "index.html").is_file()


def test_stage_table_names_every_declared_stage(site):
    table = stage_table_names((site / "pipeline" / "index.html").read_text(encoding="utf-8"))
    declared = set(pipeline_stages())
    assert "eval@sft" in declared  # foreach stages are expanded
    assert set(table) == declared, (sorted(declared - set(table)), sorted(set(table) - declared))
    assert len(table) == len(declared)


def test_the_studies_page_names_the_commit_that_produced_its_figures(site):
    last = subprocess.run(["git", "log", "-1", "--format=%h", "--", "studies/dvc.lock"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
    page = (site / "studies" / "index.html").read_text(encoding="utf-8")
    if last:  # a clone with history: the commit that last changed the studies' lock
        assert f"committed in <code>{last}</code>" in page
    else:
        assert "no commit records them" in page


def test_included_report_images_resolve(site):
    """The images that included reports name (reports/img/*.png, studies/*/*.png) are in the site
    and the pages point at them."""
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for src in re.findall(r'<img[^>]*\bsrc="([^"]+)"', text):
            if not re.match(r"^[a-z]+:", src):
                assert (page.parent / src).resolve().is_file(), f"{page.relative_to(site)}: {src}"


def test_readme_is_the_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the details belong in docs/"
    text = "\n".join(lines)
    assert "make repro" in text and "make test" in text
