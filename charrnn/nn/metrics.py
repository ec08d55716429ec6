"""Classification figures from predictions, knowing no model: accuracy, per-class recall and its
mean (macro accuracy, which every class counts in alike however rare), precision/recall/F1 per
class, and the confusion matrix. Inputs are integer arrays of true and predicted classes."""

from __future__ import annotations

import numpy as np


def confusion(truth, pred, K: int) -> np.ndarray:
    """(K, K) counts: row = the true class, column = the predicted one."""
    m = np.zeros((K, K), dtype=np.int64)
    np.add.at(m, (np.asarray(truth, dtype=np.intp), np.asarray(pred, dtype=np.intp)), 1)
    return m


def figures(truth, pred, K: int) -> dict:
    """accuracy, macro_accuracy (the mean recall over the classes present), and per class
    precision, recall, f1 and support (nan precision for a class never predicted)."""
    m = confusion(truth, pred, K)
    support, predicted, hit = m.sum(axis=1), m.sum(axis=0), np.diag(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = hit / support
        precision = hit / predicted
        f1 = 2 * hit / (support + predicted)
    present = support > 0
    total = int(support.sum())
    return {"accuracy": float(hit.sum() / total) if total else float("nan"),
            "macro_accuracy": float(recall[present].mean()) if present.any() else float("nan"),
            "precision": precision, "recall": recall, "f1": f1, "support": support,
            "confusion": m}
