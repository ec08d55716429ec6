"""Damaged and hand-edited checkpoints through every command: each refusal is one line naming
the file, and odd but valid metadata is still shown."""

import io
import math
import zipfile

import numpy as np
import pytest

from charrnn import checkpoint as C
from tests.helpers import edit_npz, invoke, one_line_error, set_meta


def damaged(src, dst, kind):
    """Copy the checkpoint src to dst, damaged as `kind`."""
    raw = src.read_bytes()
    if kind == "truncated":
        dst.write_bytes(raw[: len(raw) // 2])
    elif kind == "random":
        dst.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif kind == "pickle":
        dst.write_bytes(raw)
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        with zipfile.ZipFile(dst, "a") as z:
            z.writestr("opt/evil.npy", buf.getvalue())
    elif kind == "newer":
        edit_npz(src, dst, lambda d: set_meta(d, version=C.FORMAT_VERSION + 1))
    elif kind == "shape":  # no cell has 23 = gates x 8 columns
        edit_npz(src, dst, lambda d: d.__setitem__("param/l0.Wh", np.zeros((8, 23))))


KINDS = {"missing": "not found", "truncated": "cannot read checkpoint",
         "random": "not an .npz archive", "pickle": "pickled objects",
         "newer": f"format version {C.FORMAT_VERSION + 1}", "shape": "parameter l0.Wh"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["sample", "eval", "info", "gradflow", "train --resume"])
def test_bad_checkpoints_through_every_command(trained, tmp_path, kind, command):
    run = tmp_path / "run"
    run.mkdir()
    bad = run / "last.npz"
    if kind != "missing":
        damaged(trained / "run" / "last.npz", bad, kind)
    args = {"sample": ["sample", "-c", bad], "eval": ["eval", trained / "austen.txt", "-c", bad],
            "info": ["info", bad], "gradflow": ["gradflow", "--checkpoint", bad, "-K", "3"],
            "train --resume": ["train", trained / "austen.txt", "--out", run, "--resume"]}
    message = "nothing to resume" if (command, kind) == ("train --resume", "missing") \
        else KINDS[kind]
    one_line_error(invoke(*args[command]), message, "last.npz")


def _edited(src, dst, arrays=None, **meta_updates):
    """A copy of checkpoint src with its metadata changed (and any `arrays` replaced)."""
    def change(data):
        data.update(arrays or {})
        set_meta(data, **meta_updates)
    edit_npz(src, dst, change)


@pytest.mark.parametrize("edit", [
    {"data": [0, 10**9]}, {"data": "x"}, {"history": [1, 2]}, {"history": 5},
    {"best_val_bpc": "x"}, {"step": -1}, {"step": True}, {"elapsed": "soon"},
    {"arrays": {"state/l0.h": np.zeros((3, 3))}},
])
def test_resume_refuses_malformed_training_state_in_one_line(trained, tmp_path, edit):
    run = tmp_path / "run"
    _edited(trained / "run" / "last.npz", run / "last.npz", **edit)
    one_line_error(invoke("train", trained / "austen.txt", "--out", run, "--resume"),
                   "lacks training state to resume")


@pytest.mark.parametrize("history", [5, [{"kind": "eval", "step": math.inf, "val_bpc": 2.0}],
                                     [{"kind": "train", "step": 1, "train_bpc": 1e308},
                                      {"kind": "train", "step": 2, "train_bpc": -1e308}]])
def test_info_shows_a_checkpoint_with_odd_history(trained, tmp_path, history):
    _edited(trained / "run" / "last.npz", tmp_path / "odd.npz", history=history)
    r = invoke("info", tmp_path / "odd.npz")
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r.output


def test_a_vocabulary_with_a_lone_surrogate_is_a_bad_checkpoint(trained, tmp_path):
    ck = C.load(trained / "run" / "last.npz")
    chars = list(ck.vocab.chars)
    chars[-1] = "\ud800"
    _edited(trained / "run" / "last.npz", tmp_path / "sur.npz", vocab=chars)
    one_line_error(invoke("sample", "-c", tmp_path / "sur.npz", "--length", 5),
                   "single characters")

