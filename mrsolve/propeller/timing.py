"""Per-sample timing of PROPELLER readouts.

Time t_j of a sample, in seconds, relative to the moment its phase reference is
taken (methods/propeller.md):

- spin echo (FSE/TSE PROPELLER): t = (u - c) * dt
- gradient echo:                 t = TE + (u - c) * dt

with u the readout index, c the echo-centre sample and dt the dwell time.
"""

from __future__ import annotations

import torch

from mrsolve.solvers.validation import check_choice, check_positive

SEQUENCES = ("spin_echo", "gradient_echo")


def readout_times(
    n_readout: int,
    center_sample: int,
    dwell_s: float,
    sequence: str = "spin_echo",
    te_s: float = 0.0,
) -> torch.Tensor:
    """Sample times (M,) in seconds for one readout line."""
    check_positive("dwell_s", dwell_s)
    check_choice("sequence", sequence, SEQUENCES)
    if not 0 <= center_sample < n_readout:
        raise ValueError(f"center_sample must be in [0, {n_readout}), got {center_sample}")
    u = torch.arange(n_readout, dtype=torch.float64)
    t = (u - center_sample) * dwell_s
    if sequence == "gradient_echo":
        t = t + check_positive("te_s", te_s, allow_zero=True)
    return t.float()
