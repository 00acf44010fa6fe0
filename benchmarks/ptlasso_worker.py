"""Fit the ``ptlasso`` package's PretrainedLassoCV on .npz problems (run in ptlasso's venv).

``ptlasso`` (adelie underneath) pins numpy < 2, so ``benchmarks/pretrained_lasso.py``
runs it in its own environment through this script, one process for many problems (the
imports are paid once). Input .npz: ``X``, ``y``, ``groups``, ``X_test``,
``groups_test``, ``foldid`` (n,), ``n_folds``, ``standardize``, ``alphas``.
Output .npz: ``pred`` (test predictions), ``seconds`` (fit time, one thread),
``alpha`` (the chosen alpha).
Usage: <ptlasso python> benchmarks/ptlasso_worker.py IN1.npz OUT1.npz [IN2 OUT2 ...]
"""

import sys
import time
import warnings

import numpy as np
from ptlasso import PretrainedLassoCV


def fit_one(src: str, dst: str) -> None:
    d = np.load(src)
    model = PretrainedLassoCV(
        alphas=[float(a) for a in d["alphas"]],
        n_folds=int(d["n_folds"]),
        foldid=d["foldid"],
        standardize=bool(d["standardize"]),
        verbose=False,
        n_threads=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(d["X"], d["y"], d["groups"])
        seconds = time.perf_counter() - t0
    pred = model.predict(d["X_test"], d["groups_test"])
    np.savez(dst, pred=pred, seconds=seconds, alpha=model.alpha_)


if __name__ == "__main__":
    args = sys.argv[1:]
    for src, dst in zip(args[::2], args[1::2], strict=True):
        fit_one(src, dst)
