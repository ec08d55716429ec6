"""Checkpoints: arrays plus JSON metadata in one `.npz` file. Data, never code.

Format (version 2; bump FORMAT_VERSION on any change an older reader would misread):

    meta              uint8 array: UTF-8 JSON object with
                        format      "charrnn-checkpoint"
                        version     2
                        family      the model family's name, the task (charrnn.models.FAMILIES:
                                    "lm"); everything a person reads, `--task` first, calls it
                                    the task, and this key keeps its name so that files written
                                    before, and the readers of them, stay as they are
                        model       the family's Config as a dict (for "lm": cell, vocab_size,
                                    hidden, layers, dropout, dtype), without the kernels it
                                    ran (how it computes, not what: "train" records them)
                        vocab       the input vocabulary as an ordered list of characters
                        ...         anything else the writer adds (training config, step,
                                    history, RNG state, data position), kept as given
    param/<name>      every model parameter, names as the family's param_shapes gives them
                      (for "lm": l0.Wx, ..., Wy, by)
    <other>/<name>    extra arrays (optimizer moments "opt/...", carried state "state/...", and
                      with --ema the weights as trained "train/...", the model being their average)

Version 1 (charrnn before model families) is version 2 without "family": every version-1 file
is a language model, and is read as one (its "train" settings, flat, are read by
charrnn.train.config). Both are read; version 2 is written.

Reading uses `numpy.load(..., allow_pickle=False)`, so an object array (a pickle) inside a file is
refused without being unpickled. Writing goes to a temporary file in the same directory, is
flushed to disk, then renamed over the target: a reader sees the old file or the new one, never
half of one, even if the writer is killed mid-write.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .data.vocab import Vocab
from .errors import CharrnnError, CheckpointError
from .models import family
from .nn import cells

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 2
SUFFIX = ".npz"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Checkpoint:
    model: object  # the family's Config
    vocab: Vocab
    params: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)  # JSON-serialisable extras
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # extra arrays, "group/name"
    family: str = "lm"  # charrnn.models.FAMILIES key

    def running(self, kernels: str = cells.DEFAULT_KERNELS) -> Checkpoint:
        """This checkpoint with its model's cells running `kernels` (charrnn.nn.cells.
        KERNEL_CHOICES; "auto": the compiled ones where they serve here, else NumPy's): how the
        model computes, not what it is, so whoever runs a loaded model chooses, as the trainer
        does. ConfigError if "fused" is asked for and cannot be built here."""
        m = self.model
        return replace(self, model=replace(m, kernels=cells.choose_kernels(kernels, m.cell,
                                                                           m.dtype)))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(fileobj) on a temporary file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically. Raises CheckpointError if the file cannot be written."""
    meta = dict(ckpt.meta)
    meta.update(format=FORMAT, version=FORMAT_VERSION, family=ckpt.family,
                model={k: v for k, v in ckpt.model.to_dict().items() if k != "kernels"},
                vocab=list(ckpt.vocab.chars))
    # A path that is not valid UTF-8 holds lone surrogates (Python's surrogateescape): written as
    # \u escapes, the JSON stays UTF-8 (and compact for a large vocabulary) and they round-trip.
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(meta, ensure_ascii=False))
    arrays = {"meta": np.frombuffer(text.encode(), np.uint8)}
    arrays.update({f"param/{k}": np.ascontiguousarray(v) for k, v in ckpt.params.items()})
    for k, v in ckpt.arrays.items():
        if "/" not in k or k.startswith(("param/", "meta")):
            raise ValueError(f"extra array names need a group prefix other than param/: {k!r}")
        arrays[k] = np.ascontiguousarray(v)
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def load(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint. Every failure is a CheckpointError naming the file."""
    path = Path(path)
    try:
        return _load(path)
    except CheckpointError:
        raise
    except CharrnnError as e:  # a bad config or vocabulary inside the file
        raise CheckpointError(f"{path}: {e}") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            UnicodeDecodeError, json.JSONDecodeError, AttributeError, RuntimeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            reason = "it contains pickled objects, which charrnn never loads"
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None


def read_meta(path: str | os.PathLike) -> dict:
    """A checkpoint's metadata alone (its "family" key filled in: "lm" for version 1), without
    reading the parameters; for listing runs. CheckpointError if it is not a checkpoint."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile) or "meta" not in z.files:
                raise CheckpointError(f"{path} is not a charrnn checkpoint")
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError,
            json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a charrnn checkpoint")
    version = meta.get("version")
    meta["family"] = meta.get("family", "lm") if isinstance(version, int) and version >= 2 \
        else "lm"
    return meta


def _load(path: Path) -> Checkpoint:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(2)
    if head and head != b"PK":  # a text file would otherwise be read as a (refused) pickle
        raise CheckpointError(f"{path} is not a charrnn checkpoint (not an .npz archive)")
    with np.load(path, allow_pickle=False) as z:
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} is not a charrnn checkpoint (not an .npz archive)")
        files = set(z.files)
        if "meta" not in files:
            raise CheckpointError(f"{path} is not a charrnn checkpoint (no metadata)")
        data = {k: z[k] for k in files}  # reads every member; raises on truncation or pickles
    meta = json.loads(data.pop("meta").tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a charrnn checkpoint")
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this charrnn "
                              f"reads up to version {FORMAT_VERSION}: upgrade charrnn")
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{path}: model configuration missing")
    name = meta.pop("family", "lm") if version >= 2 else "lm"  # version 1: language models
    F = family(name)
    cfg = F.Config.from_dict(meta.pop("model"))
    vocab = Vocab(meta.pop("vocab", None) or [])
    if len(vocab) != getattr(cfg, "vocab_size", len(vocab)):
        raise CheckpointError(f"{path}: vocabulary has {len(vocab)} characters but the model "
                              f"expects {cfg.vocab_size}")
    params = {k[6:]: v for k, v in data.items() if k.startswith("param/")}
    expected = F.param_shapes(cfg)
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected]
    if missing or extra:
        raise CheckpointError(f"{path}: parameters do not match the model configuration "
                              f"(missing: {', '.join(missing) or 'none'}; "
                              f"unexpected: {', '.join(extra) or 'none'})")
    for k, shape in expected.items():
        if params[k].shape != shape or params[k].dtype != np.dtype(cfg.dtype):
            raise CheckpointError(f"{path}: parameter {k} is {params[k].dtype}{params[k].shape}, "
                                  f"the configuration needs {cfg.dtype}{shape}")
    params = {k: params[k] for k in expected}
    arrays = {k: v for k, v in data.items() if not k.startswith("param/")}
    for k in ("format", "version"):
        meta.pop(k, None)
    return Checkpoint(cfg, vocab, params, meta, arrays, name)


def resolve(path: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file from a file or a run directory (its `best`, else `last`, checkpoint)."""
    path = Path(path)
    if path.is_dir():
        order = (prefer, "last" if prefer == "best" else "best")
        for name in order:
            candidate = path / f"{name}{SUFFIX}"
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no checkpoint in {path} (expected best{SUFFIX} or last{SUFFIX})")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def recorded_corpus(recorded: str, run_dir: str | os.PathLike, out: str | None = None) -> str:
    """The corpus a run in `run_dir` recorded, as a path that works from the current directory.

    Runs save it as an absolute path. Older ones saved it as given to `train`, relative to the
    directory train ran in; such a path is taken from the current directory when it names a file
    there (as it always was), else from the directory train ran in, which is run_dir with the
    recorded --out (`out`; by default runs/<corpus stem>) taken off its end. Failing both, the
    path comes back as recorded, for the reader's "corpus not found".
    """
    path = Path(recorded)
    if path.is_absolute() or path.exists():
        return recorded
    tail = Path(out) if out else Path("runs") / path.stem
    here = Path(os.path.abspath(run_dir))
    n = len(tail.parts)
    if tail.is_absolute() or ".." in tail.parts or here.parts[-n:] != tail.parts:
        return recorded
    there = here.parents[n - 1] / path
    return str(there) if there.exists() else recorded
