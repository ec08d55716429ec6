"""Documentation that runs: the shell and Python blocks of README.md and docs/**/*.md.

A page's blocks run in order in one temporary directory (so a page's `train` and then `sample`
work), with the repository's `corpora/` linked in, the installed `charrnn` first on PATH and the
package's Python for `python` blocks. Fences with the languages in SHELL or PYTHON run; every other
fence (```text, a bare ```) is shown, not run. A block is skipped when the last non-blank line
before its fence is an HTML comment `<!-- skip: why -->` (invisible on GitHub and in the site):
for blocks that are illustrative (a file the reader has, another shell) or would take minutes.
In ```console blocks only the lines after a `$ ` prompt run; their output is for the reader.

Run it by hand to see each page's time:  python -m tests.docs.runblocks [PAGE.md ...]
and to list the blocks that would run (file:line, first line) without running them:
python -m tests.docs.runblocks --list [PAGE.md ...]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL = ("sh", "bash", "console", "shell")
PYTHON = ("python", "py")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
SKIP = re.compile(r"^\s*<!--\s*skip\b(?P<why>.*?)-->\s*$")
TIMEOUT = 600  # seconds a page may take before it counts as failed


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason, when marked <!-- skip: ... -->

    @property
    def runs(self) -> bool:
        return self.skip is None and self.lang in SHELL + PYTHON

    def where(self) -> str:
        path = self.path.relative_to(ROOT) if ROOT in self.path.parents else self.path
        return f"{path}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order, with its skip marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        lang = m["info"].strip().split(" ")[0].lstrip(".").lower() if m["info"].strip() else ""
        j, body = i + 1, []
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and lines[j].strip().strip(fence[0]) == ""):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        skip = SKIP.match(lines[k]) if k >= 0 else None
        reason = (skip["why"].strip(" :") or "marked") if skip else None
        found.append(Block(path, i + 1, lang, "\n".join(body) + "\n", reason))
        i = j + 1
    return found


def pages() -> list[Path]:
    """README.md and every page of the site, in a fixed order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def commands(block: Block) -> str:
    """The shell text a block runs: a console block's prompted lines, any other block whole."""
    if block.lang != "console":
        return block.code
    return "\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ ")) + "\n"


def environment(bindir: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env.pop("PYTHONPATH", None)
    env["OPENBLAS_NUM_THREADS"] = env.get("OPENBLAS_NUM_THREADS", "1")
    return env


class BlockFailed(AssertionError):
    pass


def run_page(path: Path, workdir: Path, python: str = sys.executable) -> float:
    """Run a page's runnable blocks in order in `workdir`; the seconds it took. Raises BlockFailed
    naming the block (file:line), its exit status and the end of its output."""
    (workdir / "corpora").symlink_to(ROOT / "corpora", target_is_directory=True)
    env = environment(Path(python).parent)
    start = time.perf_counter()
    for block in blocks(path):
        if not block.runs:
            continue
        if block.lang in PYTHON:
            argv = [python, "-c", block.code]
        else:
            argv = ["bash", "-e", "-o", "pipefail", "-c", commands(block)]
        done = subprocess.run(argv, check=False, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
        if done.returncode != 0:
            tail = (done.stdout[-1500:] + "\n--- stderr ---\n" + done.stderr[-2500:]).strip()
            raise BlockFailed(f"{block.where()} ({block.lang} block) exited with "
                              f"{done.returncode}:\n{block.code}\n{tail}")
    return time.perf_counter() - start


def same_blocks(a: Path, b: Path) -> bool:
    """True when two pages run exactly the same code (a translation that kept every command)."""
    def runnable(p):
        return [(x.lang, x.code) for x in blocks(p) if x.runs]
    return runnable(a) == runnable(b)


def main(argv: list[str]) -> int:
    listing = "--list" in argv
    todo = [Path(a).resolve() for a in argv if a != "--list"] or pages()
    if listing:
        for page in todo:
            for block in blocks(page):
                if block.runs:
                    print(f"{block.where()}  {block.lang}: {block.code.splitlines()[0][:90]}")
        return 0
    failed = 0
    for page in todo:
        if not any(b.runs for b in blocks(page)):
            continue
        with tempfile.TemporaryDirectory(prefix="charrnn-docs-") as tmp:
            try:
                seconds = run_page(page, Path(tmp))
                print(f"{seconds:7.1f} s  {page.relative_to(ROOT)}", flush=True)
            except BlockFailed as e:
                failed += 1
                print(f" FAILED  {page.relative_to(ROOT)}\n{e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
