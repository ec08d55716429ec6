"""A worker process of charrnn.parallel, started by Workers.start (see parallel._BOOT) with the
shared memory's file descriptor, and spoken to on stdin/stdout.

Requests (see charrnn.parallel.send/recv), each answered by one reply:
    init   family, model, block, size -> {}: map the shared memory (size values of the model's
           dtype); parameters are block 0, this worker's gradients block `block`; the model's
           Config names the kernels its cells run (an error if they cannot be had here)
    grad   w, batch, masks (counts); arrays: the batch's arrays, the state's, the masks ->
           {"loss"}; arrays: final state. The gradients of F.loss_and_grads (weighted by w) are
           written into this worker's block.
    rows   opts; arrays -> the arrays F.score_rows(params, cfg, *arrays, **opts) returns
A failure is answered with {"error": message}. End of input, or a caller that stopped reading,
ends the process quietly.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import traceback

from ..errors import CharrnnError


def main(fd: int) -> None:
    # The caller decides when to stop: a Ctrl-C at the terminal, a SIGTERM sent to every process
    # of the job (a scheduler's, `pkill`) or a SIGHUP must not kill a worker before the trainer
    # has saved. A worker ends when its stdin closes (or by SIGKILL, see parallel._stop).
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    # The replies get their own copy of stdout; anything else printed (by Python or C code)
    # goes to stderr and cannot corrupt them.
    fout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    fin = sys.stdin.buffer
    try:
        serve(fd, fin, fout)
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        pass  # the caller has gone
    os._exit(0)


def serve(fd: int, fin, fout) -> None:
    import numpy as np

    from ..models import family
    from ..nn import cells
    from ..nn.state import flat_state, nest_state
    from . import workers as P
    from .blas import openblas

    blas = openblas()
    if blas is not None:
        blas.set(1)
    P.keep_freed_memory()
    np.seterr(all="ignore")  # the trainer checks the loss and gradients for overflow itself
    F = cfg = params = grads = like = None
    while True:
        head, arrays = P.recv(fin)
        try:
            op = head["op"]
            if op == "init":
                F = family(head["family"])
                cfg = F.Config.from_dict(head["model"])
                cells.choose_kernels(cfg.kernels, cfg.cell, cfg.dtype)  # can they be had here?
                dtype = np.dtype(cfg.dtype)
                buf = np.frombuffer(mmap.mmap(fd, head["size"] * dtype.itemsize), dtype=dtype)
                os.close(fd)
                params = P.shared_views(buf, F, cfg, 0)
                grads = P.shared_views(buf, F, cfg, head["block"])
                like = F.init_state(cfg, 0)
                reply = ({}, [])
            elif op == "grad":
                nb, nm = head["batch"], head["masks"]
                batch, rest = tuple(arrays[:nb]), arrays[nb:]
                state = nest_state(rest[: len(rest) - nm], like)
                masks = rest[len(rest) - nm :] if nm else None
                loss, g, final = F.loss_and_grads(params, cfg, batch, state, masks=masks,
                                                  scale=head["w"])
                for name, value in g.items():
                    grads[name][...] = value
                reply = ({"loss": loss}, flat_state(final))
            elif op == "rows":
                reply = ({}, F.score_rows(params, cfg, *arrays, **head["opts"]))
            else:
                raise ValueError(f"unknown request {op!r}")
        except (OSError, ValueError, KeyError, TypeError, MemoryError, ArithmeticError,
                CharrnnError) as e:
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            reply = ({"error": last}, [])  # reported; the worker stays up for the next request
        P.send(fout, *reply)
