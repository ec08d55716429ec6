"""Checkpoints of format version 1 (written before model families, by commit c4e9df7; see
tests/fixtures/v1/README.md) still load, sample and resume as the old code did."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.cli import cli

V1 = Path(__file__).parent / "fixtures" / "v1"


@pytest.fixture
def v1(tmp_path, monkeypatch):
    """A copy of the old run and its corpus, in the current directory (the run names its corpus
    by the relative path it was trained with)."""
    shutil.copytree(V1 / "v1run", tmp_path / "v1run")
    shutil.copy(V1 / "v1corpus.txt", tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "v1run"


def test_a_version_1_file_loads_as_a_language_model(v1):
    with np.load(v1 / "best.npz") as z:  # really the old format: no family recorded
        assert b'"version": 1' in z["meta"].tobytes() and b'"family"' not in z["meta"].tobytes()
    ck = C.load(v1 / "best.npz")
    assert ck.family == "lm"
    assert (ck.model.cell, ck.model.hidden, ck.model.layers) == ("lstm", 8, 1)
    assert len(ck.vocab) == ck.model.vocab_size


def test_a_version_1_run_samples_what_the_old_code_sampled(v1):
    r = CliRunner().invoke(cli, ["sample", "-c", str(v1), "--prime", "RO", "--length", "40",
                                 "--seed", "5"])
    assert r.exit_code == 0, r.output
    assert r.stdout.encode() == (V1 / "v1sample.txt").read_bytes()


def test_a_version_1_run_resumes_as_the_old_code_did_and_is_saved_as_version_2(v1):
    """The reference was written on another machine. Float64 matrix multiplies agree across CPUs
    only to the last bit or two (OpenBLAS's Haswell and SkylakeX kernels add in different orders),
    so the comparison allows 1e-12 relative: far below what a wrong step, a lost optimizer moment
    or a reset carried state would change (1e-4 and up). Bit-for-bit resumption on one machine is
    tested in tests/train/test_trainer.py."""
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", str(v1), "--steps", "10", "-q"])
    assert r.exit_code == 0, r.output
    with np.load(v1 / "last.npz") as got, np.load(V1 / "v1-resumed-step10.npz") as want:
        names = [k for k in want.files if k != "meta"]
        assert sorted(names) == sorted(k for k in got.files if k != "meta")
        for k in names:  # parameters, optimizer moments and carried state
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15, err_msg=k)
        assert b'"family": "lm"' in got["meta"].tobytes()
    ck = C.load(v1 / "last.npz")
    assert ck.meta["step"] == 10 and ck.meta["train"]["model"]["cell"] == "lstm"


def test_an_unknown_family_is_a_one_line_checkpoint_error(v1, tmp_path):
    ck = C.load(v1 / "best.npz")
    ck.family = "telepathy"
    C.save(tmp_path / "odd.npz", ck)
    with pytest.raises(C.CheckpointError, match="unknown task \\(model family\\) 'telepathy'"):
        C.load(tmp_path / "odd.npz")
