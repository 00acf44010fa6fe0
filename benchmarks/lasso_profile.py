"""Where a lasso path's time goes: cProfile of one ``fit_path``, own time per function.

The default path (100 penalties, early stop as glmnet) at the default tolerance on the
dense problems of ``lasso_speed.py``, one BLAS thread, after a warm-up fit (no JIT in
the profile). Prints the wall time of an unprofiled fit and the functions with the
largest own time (a compiled kernel's time is its own: the Python profiler does not see
inside it). Quoted in docs/lasso_design.md; prints only.
Usage: python benchmarks/lasso_profile.py [--family F] [--n N] [--p P] [--top K]
"""

from __future__ import annotations

import cProfile
import os
import pstats

import _harness as h
from lasso_speed import problem
from threadpoolctl import threadpool_limits

from mrsolve.solvers.lasso import fit_path


def main() -> None:
    parser = h.parser(__doc__, quick="400 x 160", device=None)
    parser.add_argument("--family", default="gaussian", help="gaussian, binomial or poisson")
    parser.add_argument("--n", type=int, default=2000, help="rows")
    parser.add_argument("--p", type=int, default=1000, help="columns")
    parser.add_argument("--top", type=int, default=8, help="functions shown")
    args = parser.parse_args()
    h.setup(args)
    n, p = (400, 160) if args.quick else (args.n, args.p)
    X, y = problem(n, p, args.family, args.seed)
    with threadpool_limits(1):
        path, wall = h.best_of(lambda: fit_path(X, y, family=args.family))
        prof = cProfile.Profile()
        prof.runcall(fit_path, X, y, family=args.family)
    stats = pstats.Stats(prof).stats
    total = sum(s[2] for s in stats.values())
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[: args.top]
    print(
        f"{args.family} {n} x {p}: {len(path.penalties)} penalties, {path.n_iter} passes, "
        f"wall {wall:.3f} s, profiled {total:.3f} s"
    )
    h.table(
        [
            {
                "function": f"{os.path.basename(f)}:{name}",
                "calls": s[1],
                "own ms": 1e3 * s[2],
                "share": f"{100 * s[2] / total:.0f} %",
            }
            for (f, _, name), s in rows
        ],
        formats={"own ms": ".1f"},
    )


if __name__ == "__main__":
    main()
