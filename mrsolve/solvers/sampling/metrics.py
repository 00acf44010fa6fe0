"""How close the chains are to the posterior: W2 between Gaussian fits, predictive accuracy."""

from __future__ import annotations

import numpy as np
import torch

from mrsolve.solvers.validation import check_choice


def _tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x).to(torch.float64)


def gaussian_fit(samples: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (..., d) and maximum-likelihood covariance (..., d, d) over the chain axis -2
    of samples (..., n_chains, d), in float64."""
    s = _tensor(samples)
    if s.ndim < 2 or s.shape[-2] < 2:
        raise ValueError(f"samples must have shape (..., n_chains >= 2, dim), got {tuple(s.shape)}")
    mean = s.mean(-2)
    centred = s - mean.unsqueeze(-2)
    return mean, centred.transpose(-1, -2) @ centred / s.shape[-2]


def _sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(0.5 * (S + S.transpose(-1, -2)))
    return (vecs * vals.clamp(min=0).sqrt().unsqueeze(-2)) @ vecs.transpose(-1, -2)


def gaussian_w2(
    mean1: torch.Tensor | np.ndarray,
    cov1: torch.Tensor | np.ndarray,
    mean2: torch.Tensor | np.ndarray,
    cov2: torch.Tensor | np.ndarray,
) -> torch.Tensor:
    """2-Wasserstein distance between N(mean1, cov1) and N(mean2, cov2), batched (float64):
    W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)."""
    m1, S1, m2, S2 = (_tensor(a) for a in (mean1, cov1, mean2, cov2))
    r2 = _sqrtm_psd(S2)
    cross = _sqrtm_psd(r2 @ S1 @ r2)
    traces = torch.diagonal(S1 + S2 - 2 * cross, dim1=-2, dim2=-1).sum(-1)
    sq = ((m1 - m2) ** 2).sum(-1) + traces
    return sq.clamp(min=0).sqrt()


def chains_w2(
    chains: torch.Tensor | np.ndarray,
    mean: torch.Tensor | np.ndarray,
    cov: torch.Tensor | np.ndarray,
) -> torch.Tensor:
    """W2 between each agent's Gaussian fit and N(mean, cov): chains (T, N, C, d) -> (T, N)."""
    m, S = gaussian_fit(chains)
    return gaussian_w2(m, S, mean, cov)


def predictive_accuracy(
    samples: torch.Tensor | np.ndarray,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    average: str = "predictive",
) -> torch.Tensor:
    """Classification accuracy of logistic-regression samples (..., C, d) on X (m, d), y (m,).

    ``average="predictive"``: the predicted probabilities are averaged over the C samples
    (posterior predictive) and thresholded at 1/2. ``average="samples"``: each sample is
    a classifier and their accuracies are averaged. Returns (...).
    """
    check_choice("average", average, ("predictive", "samples"))
    s, X, y = _tensor(samples), _tensor(X), _tensor(y)
    if X.ndim != 2 or X.shape[1] != s.shape[-1] or y.shape != (X.shape[0],):
        raise ValueError(
            f"X must be (m, {s.shape[-1]}) and y (m,), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    prob = torch.sigmoid(s @ X.T)
    if average == "predictive":
        return ((prob.mean(-2) > 0.5).to(torch.float64) == y).to(torch.float64).mean(-1)
    return ((prob > 0.5).to(torch.float64) == y).to(torch.float64).mean((-2, -1))
