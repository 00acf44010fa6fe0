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


def echo_time(times_s: torch.Tensor, center_sample: int, echo: torch.Tensor | None = None) -> float:
    """Time (s) of the k-space centre of the first echo: the median time of its
    echo-centre samples (0 for spin echo, TE for gradient echo).

    Low spatial frequencies are measured only near the echo, so this is the time at which
    the image is determined by the data; at any other time it is an extrapolation.

    Args:
        times_s: (B, L, M) sample times in seconds.
        center_sample: echo-centre readout index c.
        echo: (B,) echo index of each blade (None: one echo).
    """
    if times_s.ndim != 3:
        raise ValueError(f"times_s must have shape (B, L, M), got {tuple(times_s.shape)}")
    if not 0 <= center_sample < times_s.shape[-1]:
        raise ValueError(f"center_sample must be in [0, {times_s.shape[-1]}), got {center_sample}")
    first = times_s if echo is None else times_s[echo == echo.min()]
    return float(first[..., center_sample].median())
