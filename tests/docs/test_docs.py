"""The documentation runs and builds: every shell and Python block of README.md and docs/ (see
tests/docs/runblocks.py for the skip marker), and `mkdocs build --strict` of the site."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.runblocks import ROOT, blocks, pages, run_page, same_blocks

ZH, EN = ROOT / "docs" / "zh", ROOT / "docs" / "en"


def translated(page: Path) -> Path | None:
    """The English page a Chinese page translates, when it runs exactly the same blocks."""
    if ZH not in page.parents:
        return None
    english = EN / page.relative_to(ZH)
    return english if english.exists() and same_blocks(page, english) else None


# a Chinese page that runs exactly its English page's blocks is checked to (below), not run twice
RUNNABLE = [p for p in pages() if any(b.runs for b in blocks(p)) and not translated(p)]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_page_runs(page, tmp_path):
    run_page(page, tmp_path)


def test_every_learn_page_has_a_chinese_translation_with_the_same_commands():
    english = sorted(p.relative_to(EN) for p in (EN / "learn").glob("*.md"))
    assert english, "no Learn pages"
    for rel in english:
        assert (ZH / rel).exists(), f"docs/zh/{rel} is missing"
        assert same_blocks(ZH / rel, EN / rel), f"docs/zh/{rel} runs other blocks than docs/en/{rel}"


def test_the_collector_finds_blocks_and_skip_markers(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n\n```sh\necho one\n```\n\n<!-- skip: takes minutes -->\n```bash\n"
                    "sleep 600\n```\n\n```text\nnot run\n```\n\n- item\n\n    ```python\n"
                    "    print(2)\n    ```\n\n```console\n$ echo three\nthree\n```\n")
    found = blocks(page)
    assert [(b.lang, b.runs) for b in found] == [("sh", True), ("bash", False), ("text", False),
                                                 ("python", True), ("console", True)]
    assert found[1].skip == "takes minutes"
    assert found[3].code == "print(2)\n"
    (tmp_path / "w").mkdir()
    assert run_page(page, tmp_path / "w") < 60  # the skipped sleep did not run


def test_a_failing_block_names_its_line(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# t\n\n```sh\ncharrnn train --no-such-option\n```\n")
    (tmp_path / "w").mkdir()
    with pytest.raises(AssertionError, match=r"p\.md:3 \(sh block\) exited with 2"):
        run_page(page, tmp_path / "w")


def test_the_site_builds_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], check=False, cwd=ROOT, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "zh" / "learn" / "rnn" / "index.html").exists()
