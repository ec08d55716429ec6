"""Data parallelism on the CPU: the rows of a batch (streams, sequences) split across worker
processes, for any model family (charrnn.models).

Why: the time loop is one small matrix multiply per step ((N, H) by (H, G)) plus a dozen short
elementwise passes. Multi-threaded BLAS splits each small multiply across the cores and pays a
hand-off on every one, and NumPy's elementwise passes run on one core. Splitting the N rows into
one slice per core instead runs every part of a batch (multiplies, gates, softmax, weight
gradients) on all cores at once, with one hand-off per batch. Threads cannot do it: every NumPy
call takes Python's GIL, and two threads making ~20 short calls per time step spent much of their
time waiting for it. So the calling process computes the first slice itself and each other slice
goes to a worker process (charrnn.parallel._worker), every one of them running single-threaded
BLAS. The speed-ups measured are in docs/en/explanation/findings.md.

How (hard to change later, keep it): the parameters and the workers' gradients live in one block
of shared memory, a temporary file unlinked at once (so nothing is left behind, however the
process ends) whose descriptor the workers inherit; space is reserved up front, so a full
/dev/shm is an error (and one process) rather than a crash on first touch. Before each chunk the
caller copies the parameters in, and after it adds the workers' gradients to its own.
Everything else (the batch's arrays, state slices, masks, losses, final states) goes through the
workers' stdin and stdout as a JSON header followed by raw array bytes (`send`/`recv`): no
pickle anywhere. Workers run in their own session (Ctrl-C reaches only the caller, which decides
when to stop), with the package's directory, not the current one, at the head of sys.path, and
anything they print goes to stderr; they exit when their stdin closes or the caller stops
reading, so they never outlive it. Only as many workers start as a chunk has slices.

Exactness: the streams are independent, so a split chunk computes the same loss, gradients and
final state as the whole chunk, up to the order of floating-point sums (each slice's gradients
are those of its mean weighted by n_s / N). Dropout masks are drawn once for the whole batch by
the caller, before the split, so the random stream does not depend on the number of workers;
the last bits of the results do, which is why the trainer saves the count for --resume.
"""

from __future__ import annotations

import functools
import json
import math
import mmap
import os
import subprocess
import sys
import tempfile
import weakref
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..errors import CharrnnError, ConfigError
from ..nn.state import flat_state, nest_state, state_concat, state_slice
from .blas import default_threads, openblas

# A slice needs at least this many hidden values per step (rows x F.width) to be worth a
# process: a split costs a fixed time per batch (copying the parameters in, two pipe messages,
# adding the gradients), and even LSTM 16x1 (16 x 16 = 256 values a slice) gains from it
# (docs/en/explanation/findings.md).
MIN_SLICE = 256
MAX_HEADER = 1 << 20  # bytes of a message's JSON header: more means the stream is not ours


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the system.

    Every chunk allocates and frees the same large arrays (activations, gate derivatives); by
    default glibc returns such blocks to the system and the next chunk faults every page in again
    (a tenth of the time; docs/en/explanation/findings.md has the figures), and after this it
    does not. The price is that the process keeps its peak working set, which training reaches
    on every chunk anyway. Returns False where the C library is not glibc. Called once per
    process by Workers and the workers."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30)
                    and libc.mallopt(m_mmap_threshold, 32 << 20))  # 32 MB: glibc's maximum
    except (OSError, AttributeError):
        return False


# --------------------------------------------------------------------------------------------
# the wire format between the caller and its workers


def send(f, head: dict, arrays=()) -> None:
    """One message: an 8-byte length, a JSON header naming the arrays' dtypes and shapes, then
    the arrays' bytes in C order."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    h = json.dumps({**head, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}).encode()
    f.write(len(h).to_bytes(8, "little"))
    f.write(h)
    for a in arrays:
        if a.size:
            f.write(memoryview(a).cast("B"))
    f.flush()


def _read_into(f, buf: memoryview) -> None:
    while len(buf):
        n = f.readinto(buf)
        if not n:
            raise EOFError("the other side closed the pipe")
        buf = buf[n:]


def recv(f) -> tuple[dict, list]:
    size = bytearray(8)
    _read_into(f, memoryview(size))
    n = int.from_bytes(size, "little")
    if n > MAX_HEADER:
        raise ValueError(f"not a charrnn message (header of {n} bytes)")
    head = bytearray(n)
    _read_into(f, memoryview(head))
    head = json.loads(head)
    arrays = []
    for dtype, shape in head.pop("arrays"):
        a = np.empty(shape, dtype=np.dtype(dtype))
        if a.size:
            _read_into(f, memoryview(a).cast("B"))
        arrays.append(a)
    return head, arrays


def shared_views(buf: np.ndarray, F, cfg, block: int) -> dict:
    """The parameter-shaped views of block `block` (0: parameters, 1...: workers' gradients) of
    family F's model `cfg`."""
    views, at = {}, block * F.count_params(cfg)
    for name, shape in F.param_shapes(cfg).items():
        n = math.prod(shape)
        views[name] = buf[at : at + n].reshape(shape)
        at += n
    return views


# --------------------------------------------------------------------------------------------


def _stop(procs: list) -> None:
    """End the workers: closing their pipes ends them (EOF on stdin, or a broken pipe if one is
    still writing a reply), so this never waits on a worker blocked on a full pipe."""
    for p in procs:
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    procs.clear()


# The worker's first line, run with `python -c`: the package's own directory replaces the current
# directory at the head of sys.path (so a user's charrnn.py or inspect.py there cannot be
# imported instead), then the worker main loop.
_BOOT = "import sys; sys.path[0] = {root!r}; from charrnn.parallel._worker import main; main({fd})"


def _shared_file(nbytes: int) -> int:
    """A file descriptor of nbytes of reserved shared memory with no name anywhere: in /dev/shm
    when it has room, else in the temporary directory. posix_fallocate reserves the space now, so
    a full /dev/shm is an error here, not a crash (SIGBUS) on first touch."""
    dirs = ["/dev/shm"] if os.path.isdir("/dev/shm") else []
    err: OSError | None = None
    for d in [*dirs, None]:
        try:
            fd, path = tempfile.mkstemp(prefix="charrnn-", dir=d)
        except OSError as e:
            err = e
            continue
        os.unlink(path)  # nothing is left behind, whatever ends this process
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, nbytes)
            else:
                os.ftruncate(fd, nbytes)
            return fd
        except OSError as e:
            os.close(fd)
            err = e
    raise err or OSError("no place for shared memory")


class Workers:
    """n workers for the slices of a batch: this process and n - 1 worker processes, started
    at the first split and restarted when the model changes.

    With n = 1 (or when BLAS threads cannot be set) everything runs here and BLAS keeps its own
    threads. Use as a context manager, or call close(), to stop the processes; they also stop
    when this object is collected or the interpreter exits.
    """

    def __init__(self, threads: int | None = None):
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive whole number, not {threads!r}")
        keep_freed_memory()
        self.blas = openblas()
        n = default_threads() if threads is None else threads
        self.n = n if self.blas is not None else 1
        self._procs: list = []
        self._cfg = None
        self._params = self._grads = self._mmap = None
        # why the worker processes could not be started, if they could not
        self.failed = None if self.n == n else "BLAS is not OpenBLAS, so its threads cannot be set"
        self._finalizer = weakref.finalize(self, _stop, self._procs)

    def slices(self, N: int, width: int = MIN_SLICE) -> list[slice]:
        """N streams of `width` hidden units cut into contiguous slices whose sizes differ by at
        most one: n of them, or fewer, so that each slice keeps at least MIN_SLICE values."""
        k = max(1, min(self.n, N, N * width // MIN_SLICE))
        bounds = [N * j // k for j in range(k + 1)]
        return [slice(a, b) for a, b in pairwise(bounds)]

    def split(self, F, cfg, N: int) -> list[slice]:
        """The slices N rows of family F's model `cfg` are cut into, with the worker processes
        for them started: one slice per process, or all N in this one when they cannot be
        started."""
        slices = self.slices(N, F.width(cfg))
        if len(slices) > 1 and not self.start(F, cfg, len(slices)):
            return [slice(0, N)]
        return slices

    def start(self, F, cfg, k: int) -> bool:
        """Have k - 1 worker processes ready for family F's model `cfg`; False (and from then on
        one process) if they cannot be started, e.g. where new processes are not allowed;
        `failed` says why."""
        key = (F.NAME, cfg)  # cfg names the kernels too (cfg.kernels): the workers run those
        if key == self._cfg and len(self._procs) >= k - 1:
            return True
        _stop(self._procs)
        self._cfg = None
        dtype = np.dtype(cfg.dtype)
        size = F.count_params(cfg) * k  # parameters, then one gradient block per worker
        fd = None
        try:
            fd = _shared_file(size * dtype.itemsize)
            self._mmap = mmap.mmap(fd, size * dtype.itemsize)
            buf = np.frombuffer(self._mmap, dtype=dtype)
            env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}
            boot = _BOOT.format(root=str(Path(__file__).resolve().parents[2]), fd=fd)
            for j in range(1, k):
                # its own session: Ctrl-C at the terminal reaches the trainer only, which
                # stops at a step boundary; a worker ends when its stdin closes
                p = subprocess.Popen([sys.executable, "-c", boot], env=env, pass_fds=(fd,),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True)
                self._procs.append(p)
                send(p.stdin, {"op": "init", "family": F.NAME, "model": cfg.to_dict(),
                                "block": j, "size": size})
            self._collect(self._procs)  # each has mapped the memory and found its kernels
        except (OSError, EOFError, ValueError, CharrnnError) as e:
            _stop(self._procs)
            self.n, self.failed = 1, str(e) or type(e).__name__
            return False
        finally:
            if fd is not None:
                os.close(fd)  # the mappings stay
        self._cfg = key
        self._params = shared_views(buf, F, cfg, 0)
        self._grads = [shared_views(buf, F, cfg, j) for j in range(1, k)]
        return True

    def _died(self):
        _stop(self._procs)
        self._cfg = None
        raise CharrnnError("a worker process died; try --processes 1")

    def _reply(self, p) -> tuple[dict, list]:
        try:
            return recv(p.stdout)
        except (OSError, EOFError, ValueError, MemoryError, OverflowError):
            self._died()

    def _collect(self, procs: list) -> list:
        """Every outstanding reply, read before any error is raised, so that each worker's next
        reply answers its next request."""
        replies = [self._reply(p) for p in procs]
        for head, _ in replies:
            if "error" in head:
                raise CharrnnError(f"a worker process failed: {head['error']}")
        return replies

    def map(self, F, params, cfg, requests: list, local) -> list:
        """Send the requests (each a (header, arrays) pair) to one worker each, run local()
        here with single-threaded BLAS, and return [local()] + the workers' replies."""
        if not self.start(F, cfg, len(requests) + 1):
            raise CharrnnError(f"cannot start worker processes: {self.failed}")
        for name, value in params.items():
            self._params[name][...] = value
        sent = []
        prev = self.blas.get()
        try:
            for p, (head, arrays) in zip(self._procs, requests):
                try:
                    send(p.stdin, head, arrays)
                except OSError:
                    self._died()
                sent.append(p)
            self.blas.set(1)
            first = local()
        except BaseException:
            if self._procs:  # read what was asked for, so the next request gets its own reply
                try:
                    self._collect(sent)
                except CharrnnError:
                    pass
            raise
        finally:
            self.blas.set(prev)
        return [first, *self._collect(sent)]

    def map_rows(self, F, params, cfg, arrays: list, opts: dict) -> list:
        """F.score_rows(params, cfg, *rows_of_arrays, **opts) on slices of the rows (axis 0) of
        `arrays`, one slice per process: [(slice, its list of result arrays)], in row order."""
        return map_rows(F, params, cfg, arrays, opts, self)

    def close(self) -> None:
        _stop(self._procs)
        self._cfg = None

    def __enter__(self) -> Workers:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _split(workers: Workers | None, F, cfg, N: int) -> list[slice]:
    """The slices N rows are cut into: one per process ready to take one (all of them in this
    process when there are no workers, or they cannot be started)."""
    return [slice(0, N)] if workers is None else workers.split(F, cfg, N)


def _map(workers, F, params, cfg, requests: list, local) -> list:
    """[local()] + the workers' replies to `requests`; just [local()] when there are none."""
    return workers.map(F, params, cfg, requests, local) if requests else [local()]


def loss_and_grads(F, params, cfg, batch, state, rng=None, workers: Workers | None = None):
    """F.loss_and_grads with the batch's rows split across `workers` (None: one process).
    The masks (dropout) are drawn from `rng` for the whole batch whatever the split."""
    batch = tuple(np.asarray(a) for a in batch)
    N = len(batch[0])
    slices = _split(workers, F, cfg, N)
    masks = F.draw_masks(cfg, rng, batch)

    def part(s: slice):  # a slice's inputs, and its share of the batch
        mk = F.slice_masks(masks, s)
        return tuple(a[s] for a in batch), state_slice(state, s), mk, (s.stop - s.start) / N

    requests = []
    for s in slices[1:]:
        b, st, mk, w = part(s)
        head = {"op": "grad", "w": w, "batch": len(b), "masks": 0 if mk is None else len(mk)}
        requests.append((head, [*b, *flat_state(st), *(mk or [])]))

    def local():
        b, st, mk, w = part(slices[0])
        return F.loss_and_grads(params, cfg, b, st, masks=mk, scale=w)

    (loss, grads, final), *rest = _map(workers, F, params, cfg, requests, local)
    states = [final]
    for (head, arrays), g in zip(rest, workers._grads if rest else []):
        loss += head["loss"]
        for name, value in g.items():
            grads[name] += value
        states.append(nest_state(arrays, state))
    return loss, grads, state_concat(states)


def map_rows(F, params, cfg, arrays: list, opts: dict, workers: Workers | None = None) -> list:
    """F.score_rows on slices of the rows of `arrays`, the first slice here and the others on
    the workers (None: all here): [(slice, its list of result arrays)], in row order."""
    slices = _split(workers, F, cfg, len(arrays[0]))
    requests = [({"op": "rows", "opts": opts}, [a[s] for a in arrays]) for s in slices[1:]]

    def local():
        return F.score_rows(params, cfg, *[a[slices[0]] for a in arrays], **opts)

    first, *rest = _map(workers, F, params, cfg, requests, local)
    return list(zip(slices, [first, *(r[1] for r in rest)]))
