"""Plain functions and constants the tests share (fixtures live in conftest.py).

Import them as `from tests.helpers import ...`.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.models import lm as M
from charrnn.train.trainer import TrainConfig

AUSTEN = "It is a truth universally acknowledged,\nthat a single man in possession of a good " \
         "fortune,\nmust be in want of a wife.\n" * 8  # 896 characters

# `charrnn train` options for a run of a second or so: the CLI twin of tiny()
TINY = ["--hidden", "8", "--layers", "1", "--batch", "4", "--seq", "8", "--dtype", "float64",
        "--schedule", "constant", "--warmup", "2", "--eval-every", "5"]
TINY_QUIET = [*TINY, "--quiet"]


# --- comparisons -------------------------------------------------------------------------------

def assert_close(actual, expected, rtol=1e-10, atol=1e-12, what="array"):
    """One comparison helper: names what differs, where, and by how much."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    bad = diff > atol + rtol * np.abs(expected)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ; worst at "
                             f"{idx}: {actual[idx]!r} vs {expected[idx]!r} (diff {diff[idx]:.3g})")


def assert_same_params(a, b, what="params"):
    """Two dicts of named arrays are bit-identical: the same names, and equal arrays."""
    assert sorted(a) == sorted(b), f"{what}: names differ: {sorted(a)} vs {sorted(b)}"
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}[{k!r}]")


# --- the command line --------------------------------------------------------------------------

def invoke(*args):
    """`charrnn ARGS...` through CliRunner (stdout and stderr kept apart); args may be paths."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *needles, code=None, alone=False):
    """Assert that a CLI call failed the way every charrnn error should, and return its line.

    The command exited non-zero (exactly `code` if given) through Click, so no exception escaped
    (CliRunner would hide a traceback in `result.exception`); stderr holds no traceback and
    exactly one `Error:` line, which contains every needle; stdout is empty. With `alone=True`
    that line is all of stderr.
    """
    seen = (f"\n--- exit code: {result.exit_code}\n--- exception: {result.exception!r}"
            f"\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}")
    if code is None:
        assert result.exit_code not in (0, None), f"expected a failure{seen}"
    else:
        assert result.exit_code == code, f"expected exit code {code}{seen}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"an exception escaped{seen}"
    assert "Traceback" not in result.stderr, f"a traceback{seen}"
    assert result.stdout == "", f"an error must leave stdout empty{seen}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected exactly one 'Error:' line, got {len(errors)}{seen}"
    if alone:
        assert result.stderr.strip() == errors[0], f"expected nothing but the error{seen}"
    missing = [n for n in needles if n not in errors[0]]
    assert not missing, f"the error line lacks {missing}: {errors[0]!r}"
    return errors[0]


# --- training runs -----------------------------------------------------------------------------

def tiny(corpus, out, **overrides):
    """A TrainConfig for a run of a second or so: an LSTM of 8 units, 4 streams of 8, float64,
    10 steps evaluated every 5; keyword arguments override any field."""
    base = {"corpus": str(corpus), "out": str(out), "cell": "lstm", "hidden": 8, "layers": 1,
            "batch": 4, "seq": 8, "steps": 10, "eval_every": 5, "dtype": "float64", "warmup": 2,
            "schedule": "constant", "lr": 1e-2}
    return TrainConfig.from_dict({**base, **overrides})


def train_argv(corpus, out, *extra):
    """argv of a `charrnn train` subprocess with the TINY options and any `extra` ones."""
    return [sys.executable, "-c", "from charrnn.cli import main; main()", "train", str(corpus),
            "--out", str(out), *TINY, *map(str, extra)]


def wait_for(path, proc, timeout=60):
    """Wait until `path` exists, failing (with the process's output) if `proc` ends first."""
    end = time.time() + timeout
    while not Path(path).exists():
        assert proc.poll() is None, f"the process ended first: {proc.communicate()}"
        assert time.time() < end, f"timed out waiting for {path}"
        time.sleep(0.05)


_STALLING_TRAINER = """
import signal, sys, time
from charrnn import checkpoint as C
real, saves = C.atomic_write, [0]
def stalling(path, write):
    def w(f):
        if path.name == "last.npz":
            saves[0] += 1
            if {when}:  # stall half-way through this save, for the test to kill us
                f.write(b"PK\\x03\\x04 half a zip")
                f.flush()
                print("WRITING", flush=True)
                time.sleep(120)
        write(f)
    real(path, w)
C.atomic_write = stalling
from charrnn.cli import main
sys.argv[0] = "charrnn"
main()
"""


def stalling_trainer(when: str) -> str:
    """`python -c` source of `charrnn` whose save of last.npz prints WRITING and stalls half-way
    when the expression `when` is true (`saves[0]` counts the saves of last.npz)."""
    return _STALLING_TRAINER.format(when=when)


# --- models and checkpoints --------------------------------------------------------------------

def cycle_model(vocab):
    """Handcrafted: each character is followed by the next one in the vocabulary, almost surely.
    A vanilla RNN with Wh = 0 whose hidden state is (nearly) the one-hot input."""
    V = len(vocab)
    cfg = M.ModelConfig(vocab_size=V, cell="rnn", hidden=V, layers=1, dtype="float64")
    p = {"l0.Wx": 5.0 * np.eye(V), "l0.Wh": np.zeros((V, V)), "l0.b": np.zeros(V),
         "Wy": 40.0 * np.roll(np.eye(V), 1, axis=1), "by": np.zeros(V)}
    return p, cfg


def edit_npz(src, dst, change):
    """Copy the .npz src to dst (which may be src) with its raw members edited by `change`."""
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    change(data)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as f:
        np.savez(f, **data)


def set_meta(members, /, **updates):
    """Within `edit_npz`: update the checkpoint's JSON metadata (any key, even `data`)."""
    meta = json.loads(members["meta"].tobytes())
    meta.update(updates)
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
