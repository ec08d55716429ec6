"""charrnn installed the ordinary way: the bundled corpora ship as package data, found with
importlib.resources; a wheel built from the tree works from any directory; the licence is
declared in the form setuptools wants."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from charrnn.data import text as D
from charrnn.errors import CorpusError

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT / "corpora"
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "runs", "__pycache__",
                                    ".pytest_cache", ".hypothesis")


def test_bundled_is_the_repositorys_corpora_folder():
    assert D.bundled() == D.BUNDLED == (CORPORA / "tinyshakespeare.txt").resolve()
    assert D.bundled().stat().st_size == 1115394


def test_an_unknown_bundled_name_says_what_is_bundled():
    with pytest.raises(CorpusError, match=r"no bundled corpus 'nope\.txt'; bundled: .*"
                                          r"tinyshakespeare\.txt"):
        D.bundled("nope.txt")


def test_the_licence_is_an_spdx_expression_with_its_file():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the charrnn developers" in text


def _run(args, cwd, env, timeout=180, what="command"):
    try:
        p = subprocess.run([str(a) for a in args], cwd=cwd, env=env, check=False,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} took over {timeout} s: {args}")
    return p


def _need(p, what):
    """Skip when pip could not reach an index; fail on any other error."""
    if p.returncode == 0:
        return
    log = p.stdout + p.stderr
    if re.search(r"No matching distribution|Could not find a version|NewConnectionError|"
                 r"Temporary failure in name resolution", log):
        pytest.skip(f"{what}: pip cannot fetch packages here:\n{log[-1500:]}")
    pytest.fail(f"{what} failed ({p.returncode}):\n{log[-4000:]}")


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_trains_on_its_bundled_corpus(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    src = tmp_path / "src"  # a clean copy: the build writes build/ and *.egg-info into its tree
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_SOURCE)

    p = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", tmp_path / "dist",
              src], tmp_path, env, what="pip wheel")
    _need(p, "pip wheel")
    log = p.stdout + p.stderr
    assert not re.search(r"license.{0,60}deprecated", log, re.IGNORECASE), "licence warnings in the build"
    wheel, = (tmp_path / "dist").glob("charrnn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {"charrnn/data/corpora/" + f.relative_to(CORPORA).as_posix()
               for f in CORPORA.rglob("*") if f.is_file()}
    assert shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)

    venv = tmp_path / "venv"
    p = _run([sys.executable, "-m", "venv", venv], tmp_path, env, what="venv")
    if p.returncode != 0:
        pytest.skip(f"cannot create a venv here: {p.stderr[-500:]}")
    py = venv / "bin" / "python"
    if not py.exists():
        pytest.skip(f"the venv has no {py.relative_to(venv)} (not a POSIX venv)")
    env["VIRTUAL_ENV"] = str(venv)
    _need(_run([py, "-m", "pip", "install", "-q", wheel], tmp_path, env, what="pip install"),
          "pip install of the wheel")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    charrnn = venv / "bin" / "charrnn"
    p = _run([py, "-c", "import charrnn.data.text as D; print(D.bundled())"], elsewhere, env)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()).is_relative_to(venv), p.stdout  # the installed copy's data
    p = _run([charrnn, "train", "--hidden", "16", "--steps", "1", "--out", "run", "-q"],
             elsewhere, env, what="charrnn train")
    assert p.returncode == 0, p.stderr
    assert (elsewhere / "run" / "best.npz").is_file()
    p = _run([charrnn, "gradflow", "--checkpoint", "run", "--length", "6", "--samples", "2",
              "--warmup", "5"], elsewhere, env, what="charrnn gradflow")
    assert p.returncode == 0, p.stderr
