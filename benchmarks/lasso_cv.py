"""Cross-validated lasso path time, warm start across folds against cold folds.

``cv_path`` with 10 folds on the default path (100 penalties, early stop as glmnet) at
the default tolerance, ``warm_start=True`` (gaussian: each fold's Gram is the full one
minus the held-out rows') against ``warm_start=False`` (every fold from its own rows),
alternated in one process, one BLAS thread, best of ``--repeats`` each, in CPU seconds
(``time.process_time``: one thread, so the wall time of a quiet machine, and less
disturbed by other processes on a shared one). The table gives
both times, their ratio and how far the two CV curves are apart (largest relative
difference of the mean held-out deviance) and whether lambda_min and lambda_1se agree.
Problems: the dense problems of ``lasso_speed.py`` (20 true features).

Writes docs/lasso_cv.md (``--quick``: the 400 x 160 problems, printed only).
Usage: python benchmarks/lasso_cv.py [--quick] [--repeats R]
Duration: about 2 min under load on 2 cores; --quick a few seconds.
"""

from __future__ import annotations

import time

import _harness as h
import numpy as np
from lasso_speed import problem
from threadpoolctl import threadpool_limits

from mrsolve.solvers.lasso import cv_path

CASES = [
    ("gaussian", 400, 160),
    ("gaussian", 2000, 1000),
    ("gaussian", 10000, 500),
    ("binomial", 400, 160),
    ("binomial", 2000, 500),
]
N_FOLDS = 10


def compare(family: str, n: int, p: int, repeats: int, seed: int) -> dict:
    X, y = problem(n, p, family, seed)
    fits, times = {}, {True: [], False: []}
    for _ in range(repeats):
        for warm in (False, True):
            fits[warm], t = h.timed(
                lambda warm=warm: cv_path(X, y, family=family, n_folds=N_FOLDS, warm_start=warm),
                clock=time.process_time,
            )
            times[warm].append(t)
    cold, warm = fits[False], fits[True]
    same = (cold.index_min, cold.index_1se) == (warm.index_min, warm.index_1se)
    return {
        "problem": f"{family} {n} x {p}",
        "cold": min(times[False]),
        "warm": min(times[True]),
        "ratio": min(times[True]) / min(times[False]),
        "curve": float(np.max(np.abs(warm.cv_mean - cold.cv_mean) / cold.cv_mean)),
        "same": "yes" if same else "no",
    }


def main() -> None:
    parser = h.parser(__doc__, quick="the 400 x 160 problems only", device=None)
    parser.add_argument("--repeats", type=int, default=3, help="timed fits of each mode")
    args = parser.parse_args()
    h.setup(args)
    cases = [c for c in CASES if c[1] == 400] if args.quick else CASES
    with threadpool_limits(1):
        for family, _, _ in cases:  # compile the kernels before timing
            cv_path(*problem(60, 20, family, 0), family=family, n_folds=3)
        rows = [compare(*c, args.repeats, args.seed) for c in cases]
    text = h.table(
        rows,
        {
            "problem": "problem",
            "cold": "cold folds (CPU s)",
            "warm": "warm start (CPU s)",
            "ratio": "warm / cold",
            "curve": "CV curve rel. diff",
            "same": "same lambda_min, 1se",
        },
        formats={"cold": ".3f", "warm": ".3f", "ratio": ".2f", "curve": ".1e"},
    )
    h.write_doc(
        "lasso_cv",
        "Cross-validated lasso: warm start across folds",
        f"{N_FOLDS} folds, default path and tolerance, one thread, best of {args.repeats} "
        "(CPU seconds). Binomial has no warm start across folds (the same code runs in "
        "both columns): its ratio shows the noise of the measurement.",
        text,
        out=h.out_dir(args),
    )


if __name__ == "__main__":
    main()
