"""Fit the ``ptlasso`` package's PretrainedLassoCV on .npz problems (run in ptlasso's venv).

``ptlasso`` (adelie underneath) pins numpy < 2, so ``benchmarks/pretrained_lasso.py``
runs it in its own environment through this script. Input .npz: ``X``, ``y``,
``groups``, ``X_test``, ``groups_test``, ``foldid`` (n,), ``n_folds``, ``standardize``.
Output .npz: ``pred`` (test predictions), ``seconds`` (fit time, one thread),
``alpha`` (chosen alpha).
Usage: <ptlasso python> benchmarks/ptlasso_worker.py IN.npz OUT.npz
"""

import sys
import time
import warnings

import numpy as np
from ptlasso import PretrainedLassoCV


def main(src: str, dst: str) -> None:
    d = np.load(src)
    model = PretrainedLassoCV(
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
    main(*sys.argv[1:3])
