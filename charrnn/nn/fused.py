"""Compiled kernels, the default where they build: the recurrent cells' time loops in C.

NumPy makes a dozen calls per LSTM or GRU time step besides the recurrent multiply (gates, cell
state, tanh, output), each a pass over memory; at the sizes charrnn trains, that is a quarter to
a third of a training chunk (bench/multiply_floor.py measures it; docs/en/explanation/kernels.md).
`fused.c`, beside this file, runs a whole chunk's time loop in one call: at each step the
recurrent multiply h_{t-1} Wh (d_t Wh^T backward), then the step's elementwise work in one pass.
The multiply is its own: OpenBLAS's sgemm repacks Wh at every call, which was a fifth of an LSTM
512x2 training run, so Wh is packed once per chunk (`panels`) and a register-blocked kernel runs
off the packed copy, 1.3-1.45x OpenBLAS's per-step multiply at 16 rows (bench/
recurrent_multiply.py; fused.c, "The recurrent multiply"). The once-per-chunk multiplies (input
projections, weight gradients, the output layer) stay NumPy's. The kernel is single-threaded,
as the time loops are in charrnn.parallel's processes (one BLAS thread each); in one process with
two BLAS threads (`--processes 1`) OpenBLAS would spread a step's multiply over both cores.

What it covers: the time loops of all three cells (`*_forward_loop`, `*_backward_loop`: training,
eval, and every family's encoders), the LSTM's and GRU's single steps (`lstm_step`,
`gru_step`: predict, beam search, one call per layer and character), and a language model's
whole step (charrnn.nn.fused_step.stack_stepper: sampling; one C call per character, all its
products included, on weights packed when the step is made). A single step is
bound by per-call overhead rather than by memory, and the slowest part of a ctypes call is
NumPy's `a.ctypes.data` (about a microsecond per array), so the single steps hand C the arrays
themselves and C reads each one's data pointer from NumPy's array struct (fused.c, array_data;
checked at load against `a.ctypes.data`, and the library refused where they differ). The RNN's
single step stays NumPy's: its add and tanh cost no more than one ctypes call (bench/kernels.py).

It is the default where it can be had and never required: `charrnn train` (kernels "auto",
charrnn.nn.cells.choose_kernels) uses it for float32 models of every cell when it builds here,
and NumPy's loops otherwise, saying why on its first line but never failing; `--kernels fused`
(or a model Config with kernels="fused", see charrnn.nn.cells) insists on it, and gets a
one-line error where it cannot be built. It is built at first use with the system's C compiler
(`$CC`, else `cc`): `cc -O3 -march=native -fno-math-errno -fno-trapping-math -shared` (the
compiler may contract multiply-adds into FMAs, so the last bits depend on the CPU), into
`$CHARRNN_CACHE` (default `~/.cache/charrnn`), named by a hash of the source, the compiler's
version, the flags and the CPU (so a new CPU or compiler builds anew), written to a temporary
name and renamed into place, so processes building at once never load half a file. A cached
file that will not load is rebuilt once, and a failure is remembered for the rest of the
process (`reset()` forgets it). Nothing is downloaded and nothing but this source is compiled;
loading runs no Python code (ctypes, plain C functions).

Why compiled at first use, and not at install time or by numba (issue 27 weighed the three):
- At install time (an optional setuptools extension, skipped without a compiler) would drop the
  cache below, but the wheel it makes is built once for one CPU: `-march=native` there is wrong
  on the next machine, and portable flags lose the AVX-512/FMA code the speed comes from (or
  bring back a dispatcher of our own). It also needs the compiler at install time, which is
  when a user is least able to say "without, please", and an editable install goes stale when
  fused.c changes. charrnn stays a pure-Python wheel.
- numba needs no compiler and reads as Python, but llvmlite is ~170 MB installed, so it could
  only be an optional extra, and then a plain `pip install charrnn` would not be fast by
  default, which is the point; its first call also compiles (seconds), with its own cache.
- At first use keeps -march=native for the machine that runs it, needs only a C compiler, which
  most machines that train have, and costs one build (about a second) per source, compiler and
  CPU. The machinery (the hashed cache name, the atomic rename, one rebuild of a damaged file,
  one try per process) is what any of the three would need for the same safety; the tests in
  tests/nn/test_fused.py cover each part, and a missing compiler only means NumPy's loops.

Results agree with the NumPy path to float32 rounding, not bit for bit (its own exp, and its
own multiply's order of sums: each output sums over k in order, with fused multiply-adds where
the CPU has them; tests/nn/test_fused.py compares the two), so a run keeps the kernels it started
with (saved in the checkpoint's training settings, used again by --resume). The kernel's results
do not depend on the number of rows or on which rows share a block. float64 (gradcheck) always uses NumPy.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("fused.c")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared")
_P = ctypes.c_void_p
_L = ctypes.c_long
_A = ctypes.py_object  # a NumPy array itself: the single steps read its data pointer (fused.c)
SIGNATURES = {
    "lstm_forward_loop": (_L, _L, _L, _P, _P, _P, _P, _P, _P, _P, _P),
    "lstm_backward_loop": (_L, _L, _L, _P, _P, _P, _P, _P, _P, _P, _P, _P),
    "gru_forward_loop": (_L, _L, _L, _P, _P, _P, _P, _P, _P, _P),
    "gru_backward_loop": (_L, _L, _L, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P),
    "rnn_forward_loop": (_L, _L, _L, _P, _P, _P, _P),
    "rnn_backward_loop": (_L, _L, _L, _P, _P, _P, _P, _P),
    "pack_panels": (_L, _L, _P, _L, _L, _P, _P),
    "panel_width": (),
    "panel_matmul": (_L, _L, _L, _P, _P, _P),
    "lstm_step": (_L, _L, _A, _A, _A, _A, _A),
    "gru_step": (_L, _L, _A, _A, _A, _A, _A),
    "step_panel_width": (),
    "pack_step_panels": (_L, _L, _P, _P),
    "step_multiply": (_L, _L, _L, _P, _P, _P),
    "stack_step": (_L, _L, _L, _L, _L, _L, _P, _A, _A, _A, _A, _A),
    "softmax_shift": (_L, _A, ctypes.c_double, _A),
    "cumulative_search": (_L, _A, _A, ctypes.c_double),
    "set_data_offset": (_L,),
    "array_data": (_A,),
    "exp_array": (_L, _P, _P),
    "tanh_array": (_L, _P, _P),
}


# Where NumPy's array struct keeps the data pointer, for the single steps (fused.c, array_data):
# right after the object header. Checked against `a.ctypes.data` at load.
DATA_OFFSET = object.__basicsize__


class Unavailable(Exception):
    """The kernels cannot be built or loaded here; the message says why, in one line."""


class _Damaged(Unavailable):
    """A library file that the loader refuses (truncated, or not a library at all)."""


def cache_dir() -> Path:
    return Path(os.environ.get("CHARRNN_CACHE") or Path.home() / ".cache" / "charrnn")


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model name and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or "cc")


def build(rebuild: bool = False) -> Path:
    """The compiled library's path, compiling it first if this source, compiler and CPU have
    none in the cache yet (or `rebuild`: the cached one would not load). Raises Unavailable if
    there is no working compiler."""
    cc = _compiler()
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True,
                                 check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise Unavailable(f"no working C compiler ({shlex.join(cc)}: "
                          f"{type(e).__name__})") from None
    try:
        source = SOURCE.read_text()
    except OSError as e:
        raise Unavailable(f"cannot read {SOURCE} ({e.strerror or e})") from None
    key = hashlib.sha256("\0".join([source, shlex.join(cc), version, " ".join(FLAGS),
                                    _cpu_id()]).encode()).hexdigest()[:16]
    out_dir = cache_dir()
    target = out_dir / f"fused-{key}.so"
    if target.exists() and not rebuild:
        return target
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fused-", suffix=".so", dir=out_dir)
        os.close(fd)
        _remove_stale(out_dir, Path(tmp))
    except OSError as e:
        raise Unavailable(f"cannot write to {out_dir} ({e.strerror or e}); set CHARRNN_CACHE "
                          f"to a writable folder") from None
    try:
        try:
            run = subprocess.run([*cc, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True,
                                 text=True, check=False, timeout=300)
            if run.returncode != 0:
                first = (run.stderr.strip().splitlines() or ["failed"])[0]
                raise Unavailable(f"{shlex.join(cc)} could not compile {SOURCE.name}: {first}")
            os.replace(tmp, target)  # atomic: another process sees all of it or nothing
        except (OSError, subprocess.SubprocessError) as e:
            raise Unavailable(f"building {target} failed ({type(e).__name__}: {e})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


STALE_SECONDS = 3600  # a temporary file this old is left by a build that was killed


def _remove_stale(out_dir: Path, mine: Path) -> None:
    """Remove the temporary files far older than `mine`, just made: the file system's clock, not
    this machine's, says how old they are (a shared cache may live on another machine)."""
    now = mine.stat().st_mtime
    for p in out_dir.glob(".fused-*.so"):
        try:
            if p != mine and now - p.stat().st_mtime > STALE_SECONDS:
                p.unlink()
        except OSError:
            pass  # another process's, or gone already


def _open(path: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise _Damaged(f"cannot load {path}: {e}") from None
    for name, args in SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            # not rebuilt here: the loader would hand this process the same open library again
            raise Unavailable(f"{path} has no {name}; delete it to rebuild") from None
        fn.argtypes, fn.restype = args, None
    lib.array_data.restype = ctypes.c_void_p
    lib.stack_step.restype = _L  # 0, or a bad id's row + 1
    lib.cumulative_search.restype = _L
    lib.panel_width.restype = lib.step_panel_width.restype = ctypes.c_long
    lib.set_data_offset(DATA_OFFSET)
    probe = np.empty(4, dtype=np.float32)[1:]  # a view: its data is not where its buffer starts
    if lib.array_data(probe) != probe.ctypes.data:
        raise Unavailable("cannot find NumPy arrays' data in memory on this Python "
                          f"({platform.python_implementation()} {platform.python_version()})")
    return lib


@functools.cache
def _load() -> ctypes.CDLL | Unavailable:
    """The library, or why not. A cached file that does not load (truncated, or damaged) is
    rebuilt once. Failures are remembered too, so a missing compiler costs one try per process
    (`reset()` forgets)."""
    try:
        try:
            return _open(build())
        except _Damaged:
            return _open(build(rebuild=True))
    except Unavailable as e:
        return e


def library() -> ctypes.CDLL:
    """The loaded kernels (built at first use). Raises Unavailable."""
    got = _load()
    if isinstance(got, Unavailable):
        raise Unavailable(str(got))
    return got


def reset() -> None:
    """Forget the loaded library or the failure (after installing a compiler, in tests)."""
    _load.cache_clear()


def build_id() -> str | None:
    """What names the loaded library in the cache (a hash of this source, the compiler, its
    flags and the CPU): two runs with one id ran the same machine code. None when unavailable."""
    got = _load()
    return None if isinstance(got, Unavailable) else Path(got._name).stem.removeprefix("fused-")


def available() -> str | None:
    """None when the kernels can be used here, else why not (one line)."""
    got = _load()
    return str(got) if isinstance(got, Unavailable) else None


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _check(*arrays: np.ndarray) -> None:
    for a in arrays:
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError("the fused kernels take C-contiguous float32 arrays")


def _elementwise(kernel: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    getattr(library(), kernel)(x.size, _ptr(x), _ptr(y))
    return y


def exp(x: np.ndarray) -> np.ndarray:
    """The kernels' exp, elementwise (for checking its accuracy)."""
    return _elementwise("exp_array", x)


def tanh(x: np.ndarray) -> np.ndarray:
    """The kernels' tanh, elementwise (for checking its accuracy)."""
    return _elementwise("tanh_array", x)


def panels(W: np.ndarray, scale: np.ndarray | None = None, transpose: bool = False) -> np.ndarray:
    """W (K, M), or W.T if `transpose` (W then (M, K)), times `scale` (M,) per column if given,
    packed for the time loops' multiply (fused.c, "The recurrent multiply"): a flat float32 array
    of ceil(M / NR) panels of NR columns, packed once per chunk."""
    W = np.ascontiguousarray(W, np.float32)
    K, M = W.shape[::-1] if transpose else W.shape
    lib = library()
    nr = lib.panel_width()
    P = np.empty(-(-M // nr) * nr * K, np.float32)
    rs, cs = (1, W.shape[1]) if transpose else (W.shape[1], 1)
    if scale is not None:
        scale = np.ascontiguousarray(scale, np.float32)
        if scale.shape != (M,):
            raise ValueError(f"panels: scale {scale.shape} does not fit {M} columns")
    lib.pack_panels(K, M, _ptr(W), rs, cs, None if scale is None else _ptr(scale), _ptr(P))
    return P


def panel_matmul(a: np.ndarray, P: np.ndarray, M: int) -> np.ndarray:
    """a (n, K) times the (K, M) matrix packed in P (panels()), by the time loops' kernel."""
    a = np.ascontiguousarray(a, np.float32)
    n, K = a.shape
    lib = library()
    nr = lib.panel_width()
    if P.dtype != np.float32 or P.size != -(-M // nr) * nr * K:
        raise ValueError(f"panel_matmul: {P.size} packed values do not fit ({K}, {M})")
    out = np.empty((n, M), np.float32)
    lib.panel_matmul(n, K, M, _ptr(a), _ptr(P), _ptr(out))
    return out


# The time loops: one C call per chunk, running T steps of the packed multiply h_{t-1} Wh (or
# d_t Wh^T) and the step's elementwise work (fused.c). Wh arrives as NumPy's (H, G) weights and
# is packed here, once per call.


def lstm_forward_loop(acts, Wh, scale, h, c, cs, tcs, hs) -> None:
    """cells.lstm_forward's time loop: acts (T, N, 4H) holds the input projection xp (not
    scaled) and becomes the activations; Wh (H, 4H) is packed times scale (cells._gate_scale);
    h, c (N, H) the initial state; cs, tcs, hs (T, N, H) are written."""
    T, N, G = acts.shape
    H = G // 4
    _check(acts, cs, tcs, hs)
    h, c = np.ascontiguousarray(h, np.float32), np.ascontiguousarray(c, np.float32)
    P = panels(Wh, scale)
    buf = np.empty((N, G), dtype=np.float32)
    library().lstm_forward_loop(T, N, H, _ptr(acts), _ptr(P), _ptr(h), _ptr(c), _ptr(cs),
                                _ptr(tcs), _ptr(hs), _ptr(buf))


def lstm_backward_loop(acts, c0, cs, tcs, dhs, Wh, dh, dc) -> np.ndarray:
    """cells.lstm_backward's time loop, the gate derivatives included. acts (T, N, 4H) the
    activations, c0 (N, H) and cs, tcs (T, N, H) the cell states and their tanh, dhs (T, N, H)
    dL/dh_t from above, Wh (H, 4H) (packed transposed); dh, dc (N, H) the gradients at the
    final state in, at the initial state out (dc already times f_0). Returns dxp (T, N, 4H) =
    da_t."""
    T, N, G = acts.shape
    H = G // 4
    c0 = np.ascontiguousarray(c0, np.float32)
    _check(acts, cs, tcs, dhs, dh, dc)
    dxp = np.empty_like(acts)
    P = panels(Wh, transpose=True)
    library().lstm_backward_loop(T, N, H, _ptr(dxp), _ptr(acts), _ptr(c0), _ptr(cs), _ptr(tcs),
                                 _ptr(dhs), _ptr(P), _ptr(dh), _ptr(dc))
    return dxp


def gru_forward_loop(acts, Wh, bhn, h, hns, hs) -> None:
    """cells.gru_forward's time loop: acts (T, N, 3H) holds the input projection xp and becomes
    the activations r, z, n; Wh (H, 3H) (not scaled); bhn (H,); h (N, H) the initial state;
    hns, hs (T, N, H) are written."""
    T, N, G = acts.shape
    H = G // 3
    _check(acts, hns, hs)
    h = np.ascontiguousarray(h, np.float32)
    bhn = np.ascontiguousarray(bhn, np.float32)
    P = panels(Wh)
    gh = np.empty((N, G), dtype=np.float32)
    library().gru_forward_loop(T, N, H, _ptr(acts), _ptr(P), _ptr(bhn), _ptr(h), _ptr(hns),
                               _ptr(hs), _ptr(gh))


def gru_backward_loop(acts, h0, hns, hs, dhs, Wh, dh) -> tuple[np.ndarray, np.ndarray]:
    """cells.gru_backward's time loop, the gate derivatives included. acts (T, N, 3H) the
    activations r, z, n; h0 (N, H), hns, hs (T, N, H) from the forward pass; dhs (T, N, H)
    dL/dh_t from above; Wh (H, 3H) (packed transposed); dh (N, H) the gradient at the final
    state in, at the initial state out. Returns dgh (T, N, 3H), the gradient at [h Wh_r, h Wh_z,
    h Wh_n + bhn], and dxp_n (T, N, H)."""
    T, N, G = acts.shape
    H = G // 3
    h0 = np.ascontiguousarray(h0, np.float32)
    _check(acts, hns, hs, dhs, dh)
    dgh = np.empty_like(acts)
    dxn = np.empty_like(hs)
    back = np.zeros_like(dh)
    P = panels(Wh, transpose=True)
    library().gru_backward_loop(T, N, H, _ptr(dgh), _ptr(dxn), _ptr(acts), _ptr(h0), _ptr(hns),
                                _ptr(hs), _ptr(dhs), _ptr(P), _ptr(dh), _ptr(back))
    dh += back  # dh_0 = dh_1 z_1 + dgh_1 Wh^T (the first step's two paths)
    return dgh, dxn


def rnn_forward_loop(hs, Wh, h) -> None:
    """cells.rnn_forward's time loop, h_t = tanh(xp_t + h_{t-1} Wh): hs (T, N, H) holds xp and
    becomes h_1 .. h_T; Wh (H, H); h (N, H) h_0."""
    T, N, H = hs.shape
    _check(hs)
    h = np.ascontiguousarray(h, np.float32)
    P = panels(Wh)
    buf = np.empty((N, H), dtype=np.float32)
    library().rnn_forward_loop(T, N, H, _ptr(hs), _ptr(P), _ptr(h), _ptr(buf))


def rnn_backward_loop(hs, dhs, Wh, dh) -> np.ndarray:
    """cells.rnn_backward's time loop, da_t = (dhs_t + da_{t+1} Wh^T)(1 - h_t^2) (tanh's
    derivative taken from h_t in the loop). hs, dhs (T, N, H): h_t and dL/dh_t from above;
    Wh (H, H) (packed transposed); dh (N, H) the gradient at the final state in, at the initial
    state out. Returns dxp (T, N, H) = da_t."""
    T, N, H = hs.shape
    _check(hs, dhs, dh)
    dxp = np.empty_like(hs)
    P = panels(Wh, transpose=True)
    library().rnn_backward_loop(T, N, H, _ptr(dxp), _ptr(hs), _ptr(dhs), _ptr(P), _ptr(dh))
    return dxp


# The single steps (cells.*_step: sampling, predict, beam search): one matrix multiply in NumPy,
# then one C call for the rest, which takes the arrays themselves (see fused.c). The caller
# (cells._fused) has checked that the arrays are C-contiguous float32; the shapes are checked
# here, since C would read past an array that is too small where NumPy raises.


def lstm_step(xp, h, c, Wh) -> tuple[np.ndarray, np.ndarray]:
    """cells.lstm_step: xp (N, 4H), h, c (N, H), Wh (H, 4H). Returns (h_t, c_t)."""
    a = np.matmul(h, Wh)  # h_{t-1} Wh
    if xp.shape != a.shape or a.shape[1] != 4 * h.shape[1] or c.shape != h.shape:
        raise ValueError(f"lstm step: xp {xp.shape}, h {h.shape}, c {c.shape} and Wh "
                         f"{Wh.shape} do not fit")
    h_t, c_t = np.empty_like(h), np.empty_like(c)
    library().lstm_step(*h.shape, a, xp, c, h_t, c_t)
    return h_t, c_t


def gru_step(xp, h, Wh, bhn) -> np.ndarray:
    """cells.gru_step: xp (N, 3H), h (N, H), Wh (H, 3H), bhn (H,). Returns h_t."""
    gh = np.matmul(h, Wh)  # h_{t-1} Wh
    if xp.shape != gh.shape or gh.shape[1] != 3 * h.shape[1] or bhn.shape != h.shape[1:]:
        raise ValueError(f"gru step: xp {xp.shape}, h {h.shape}, Wh {Wh.shape} and bhn "
                         f"{bhn.shape} do not fit")
    h_t = np.empty_like(h)
    library().gru_step(*h.shape, gh, xp, bhn, h, h_t)
    return h_t
