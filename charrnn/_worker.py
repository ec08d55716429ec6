"""A worker process of charrnn.parallel: `python -m charrnn._worker`, spoken to on stdin/stdout.

Requests (see charrnn.parallel.send/recv), each answered by one reply:
    init   model, path, block, size -> {}: map the shared file; parameters are block 0, this
           worker's gradients block `block`
    grad   w, masks; arrays ids, targets, state..., masks... -> {"loss"}; arrays: final state.
           The gradients (weighted by w) are written into this worker's block.
    score  seq; arrays inputs, targets -> arrays: losses (n, L) float64, final state...
A failure is answered with {"error": message}. End of input ends the process.
"""

from __future__ import annotations

import signal
import sys
import traceback

import numpy as np


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when to stop
    from . import model as M
    from . import parallel as P
    from .blas import openblas

    blas = openblas()
    if blas is not None:
        blas.set(1)
    P.keep_freed_memory()
    fin, fout = sys.stdin.buffer, sys.stdout.buffer
    cfg = params = grads = None
    while True:
        try:
            head, arrays = P.recv(fin)
        except EOFError:
            return
        try:
            op = head["op"]
            if op == "init":
                cfg = M.ModelConfig.from_dict(head["model"])
                buf = np.memmap(head["path"], dtype=np.dtype(cfg.dtype), mode="r+",
                                shape=(head["size"],))
                params = P.shared_views(buf, cfg, 0)
                grads = P.shared_views(buf, cfg, head["block"])
                P.send(fout, {})
            elif op == "grad":
                n_masks = cfg.layers if head["masks"] else 0
                ids, targets, *rest = arrays
                state = P.nest_state(rest[: len(rest) - n_masks], cfg)
                masks = rest[len(rest) - n_masks :] or None
                loss, g, final = P.grad_part(params, cfg, ids, targets, state, masks, head["w"])
                for name, value in g.items():
                    grads[name][...] = value
                P.send(fout, {"loss": loss}, P.flat_state(final))
            elif op == "score":
                out, final = P.score_part(params, cfg, arrays[0], arrays[1], head["seq"])
                P.send(fout, {}, [out, *P.flat_state(final)])
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as e:  # noqa: BLE001 -- report, and stay alive for the next request
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            P.send(fout, {"error": last})


if __name__ == "__main__":
    main()
