"""The README's Python section runs as written (from a folder with ../shared beside it), so it cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_python_section_has_blocks():
    assert len(python_blocks()) >= 3


@pytest.mark.skipif(not (SHARED / "data" / "beir" / "nfcorpus").exists(), reason="needs ../shared")
@pytest.mark.parametrize("number", range(3))
def test_a_readme_python_block_runs(number, tmp_path):
    blocks = python_blocks()
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED.resolve())
    env = {k: v for k, v in os.environ.items() if k != "LSR_DEFAULT_ENCODER"}
    done = subprocess.run([sys.executable, "-c", blocks[number]], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    expected = {0: ("hybrid ('sparse', 'bm25') True", "d2 1.0 Vitamin D"), 1: ("[Hit(id='b', score=2.0",),
                2: ("hybrid ",)}[number]
    for line, start in zip(lines, expected):  # what the block's comments say it prints
        assert line.startswith(start), (line, start)


def test_the_collections_python_block_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Collections"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    env = {k: v for k, v in os.environ.items() if k != "LSR_DEFAULT_ENCODER"}
    done = subprocess.run([sys.executable, "-c", blocks[0] + "\nprint(snapshot['generation'], snapshot['documents'], "
                           "data.names())"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "1 1 ['docs-then']"
