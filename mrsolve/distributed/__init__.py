"""Distributed linear algebra that tolerates slow and dead workers.

- executors: one interface (submit, wait for the first k of n, cancel) with a simulated
  (virtual clock), a thread-pool and a Ray backend (``ray_executor``, the only module that
  imports Ray; import it explicitly or pass ``executor="ray"``).
- polar / codes: real-valued polar codes with O(N log N) erasure decoding; MDS,
  replication and uncoded baselines.
- coded_matmul: ``coded_matmul(A, B, workers=..., code="polar")`` with an anytime estimate.
- secure_lstsq: ``secure_lstsq(A, b, workers=..., sketch="block-srht")``.
- zeroth_order: black-box optimization with coded directional derivatives.
"""

from mrsolve.distributed.coded_matmul import CodedReport, coded_matmul
from mrsolve.distributed.executors import SimulatedExecutor, ThreadExecutor, WorkerFailure
from mrsolve.distributed.secure_lstsq import SecureReport, secure_lstsq
from mrsolve.distributed.stragglers import ShiftedExponential
from mrsolve.distributed.zeroth_order import coded_zeroth_order

__all__ = [
    "CodedReport",
    "SecureReport",
    "ShiftedExponential",
    "SimulatedExecutor",
    "ThreadExecutor",
    "WorkerFailure",
    "coded_matmul",
    "coded_zeroth_order",
    "secure_lstsq",
]
