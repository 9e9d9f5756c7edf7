"""Vision evaluation: scikit-learn baselines fitted on the same digit split as the ViT, in the same run."""
from __future__ import annotations

import time

import torch


def digit_baselines(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor,
                    levels: int) -> list[tuple[str, float, float, str]]:
    """(name, test accuracy, seconds, note) for logistic regression and an RBF SVM on the raw pixels
    (uint8 images (N, S, S) in 0..levels-1, scaled to [0, 1])."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    ftr, fte = xtr.flatten(1).numpy() / (levels - 1), xte.flatten(1).numpy() / (levels - 1)
    rows = []
    for name, clf in (("logistic regression", LogisticRegression(max_iter=5000, C=1.0)),
                      ("SVM (RBF, C=10)", SVC(C=10.0, gamma="scale"))):
        t0 = time.perf_counter()
        clf.fit(ftr, ytr.numpy())
        acc = float((clf.predict(fte) == yte.numpy()).mean())
        rows.append((name, acc, time.perf_counter() - t0, "fit + predict"))
    return rows
