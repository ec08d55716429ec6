"""Fixtures the tests share; plain helpers are in tests/helpers.py."""

import atexit
import os
import shutil
import signal
import tempfile

import numpy as np
import pytest

from charrnn.train.trainer import train
from tests.helpers import AUSTEN, tiny

# the fused kernels (charrnn.nn.fused) are compiled into a cache of the tests' own, not the
# user's ~/.cache/charrnn, and it is removed at the end
if "CHARRNN_CACHE" not in os.environ:
    os.environ["CHARRNN_CACHE"] = tempfile.mkdtemp(prefix="charrnn-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CHARRNN_CACHE"], True)

# a shell that starts pytest in the background (`make test &`, a non-interactive script) makes it
# ignore SIGINT, and its children would inherit that: the Ctrl-C tests' `charrnn` processes
# would never see the signal they are sent. Ctrl-C means what it means at a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def corpus_text():
    """What `corpus` holds; a module that needs another text overrides this fixture."""
    return AUSTEN


@pytest.fixture
def corpus(tmp_path, corpus_text):
    """A small corpus file, tmp_path / "austen.txt" (a Path)."""
    path = tmp_path / "austen.txt"
    path.write_text(corpus_text)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run, shared by a module: ROOT/austen.txt (AUSTEN, 896 characters) and the
    run directory ROOT/run that tiny() trained on it."""
    root = tmp_path_factory.mktemp("trained")
    (root / "austen.txt").write_text(AUSTEN)
    train(tiny(root / "austen.txt", root / "run"))
    return root
