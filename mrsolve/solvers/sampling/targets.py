"""Sampling targets pi(x) ∝ exp(-sum_i f_i(x)) split over agents.

A target holds the local negative log-densities f_i of a block of agents and evaluates
them batched: ``x`` has shape (n_agents, n_chains, dim), values (n_agents, n_chains).
Every target offers the three things the samplers need:

- ``neg_log_density(x)`` and ``grad(x)`` (Langevin baselines, reference MCMC);
- ``prox(v, p, tau, x_init)`` = argmin_x f_i(x) + <p_i, x> + tau_i / 2 ||x - v_i||^2
  (the ADMM primal step);
- ``local(i)``: the same target restricted to agent i, holding only agent i's data
  (what one process of the distributed runtime gets).

Each f_i carries 1/N of the prior (N = ``prior_split``, the number of agents sharing it),
so sum_i f_i is the full negative log-posterior.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mrsolve.solvers.validation import check_finite, check_int, check_positive, resolve_device


def _as_parts(
    name: str, parts: Sequence, ndim: int, dtype: torch.dtype, device: torch.device
) -> tuple[list[torch.Tensor], bool]:
    """Validate a list of per-agent arrays; return them as tensors and whether numpy was given."""
    if isinstance(parts, (np.ndarray, torch.Tensor)) or not isinstance(parts, Sequence):
        raise TypeError(f"{name} must be a list with one array per agent, got {type(parts)}")
    if len(parts) == 0:
        raise ValueError(f"{name} must hold at least one agent's array, got an empty list")
    out, numpy_given = [], False
    for i, part in enumerate(parts):
        if isinstance(part, np.ndarray):
            numpy_given = True
        elif not isinstance(part, torch.Tensor):
            raise TypeError(f"{name}[{i}] must be a numpy array or torch tensor, got {type(part)}")
        t = torch.as_tensor(part).to(device=device, dtype=dtype)
        if t.ndim != ndim:
            raise ValueError(f"{name}[{i}] must have {ndim} dimensions, got shape {tuple(t.shape)}")
        check_finite(f"{name}[{i}]", t)
        out.append(t)
    return out, numpy_given


def _check_xy(X: list[torch.Tensor], y: list[torch.Tensor]) -> None:
    if len(X) != len(y):
        raise ValueError(
            f"X_parts and y_parts must have the same length, got {len(X)} and {len(y)}"
        )
    dim = X[0].shape[1]
    for i, (Xi, yi) in enumerate(zip(X, y, strict=True)):
        if Xi.shape[1] != dim:
            raise ValueError(
                f"X_parts[{i}] must have {dim} columns like X_parts[0], got {Xi.shape[1]}"
            )
        if Xi.shape[0] != yi.shape[0]:
            raise ValueError(
                f"y_parts[{i}] must have one entry per row of X_parts[{i}] ({Xi.shape[0]}), "
                f"got {yi.shape[0]}"
            )


def _prior_split(prior_split: int | None, n_agents: int) -> int:
    if prior_split is None:
        return n_agents
    check_int("prior_split", prior_split)
    return prior_split


class Target(ABC):
    """Base class. Subclasses set ``n_agents``, ``dim``, ``dtype``, ``device``, ``returns_numpy``
    and implement the four methods below."""

    n_agents: int
    dim: int
    dtype: torch.dtype
    device: torch.device
    returns_numpy: bool = False

    @abstractmethod
    def neg_log_density(self, x: torch.Tensor) -> torch.Tensor:
        """f_i(x) for x of shape (n_agents, n_chains, dim); returns (n_agents, n_chains)."""

    @abstractmethod
    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """grad f_i(x), shape (n_agents, n_chains, dim)."""

    @abstractmethod
    def prox(
        self, v: torch.Tensor, p: torch.Tensor, tau: torch.Tensor, x_init: torch.Tensor
    ) -> torch.Tensor:
        """argmin_x f_i(x) + <p_i, x> + tau_i/2 ||x - v_i||^2; v, p, x_init (N, C, d), tau (N,)."""

    @abstractmethod
    def local(self, agent: int) -> Target:
        """This target restricted to one agent (n_agents = 1), holding only that agent's data."""

    def _check_agent(self, agent: int) -> int:
        if not isinstance(agent, (int, np.integer)) or not 0 <= agent < self.n_agents:
            raise ValueError(f"agent must be an int in [0, {self.n_agents}), got {agent!r}")
        return int(agent)


def newton_prox(
    target: Target,
    hessian: Callable[[torch.Tensor], torch.Tensor],
    v: torch.Tensor,
    p: torch.Tensor,
    tau: torch.Tensor,
    x: torch.Tensor,
    n_steps: int,
) -> torch.Tensor:
    """Damped Newton (Armijo backtracking) on f_i(x) + <p, x> + tau/2 ||x - v||^2.

    Every (agent, chain) entry takes the same fixed number of steps and chooses its own
    step length, so the result of one entry does not depend on the batch it is in (the
    distributed runtime relies on this).
    """
    t3 = tau[:, None, None]
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)

    def objective(z: torch.Tensor) -> torch.Tensor:
        return (
            target.neg_log_density(z)
            + (p * z).sum(-1)
            + 0.5 * tau[:, None] * ((z - v) ** 2).sum(-1)
        )

    all_done = False
    for _ in range(n_steps):
        g = target.grad(x) + p + t3 * (x - v)
        H = hessian(x) + tau[:, None, None, None] * eye
        d = torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)
        f0, slope = objective(x), (g * d).sum(-1)
        # slope = squared Newton decrement; at rounding level the objective cannot rank
        # step lengths any more, and the entry takes the full (quadratically converging) step.
        done = slope <= 10 * torch.finfo(x.dtype).eps * (1.0 + f0.abs())
        if bool(done.all()) and all_done:
            break  # the previous full step already reached rounding level everywhere
        all_done = bool(done.all())
        step = torch.ones_like(f0)
        for _ in range(10):
            ok = done | (objective(x - step[..., None] * d) <= f0 - 1e-4 * step * slope)
            if bool(ok.all()):
                break
            step = torch.where(ok, step, 0.5 * step)
        x = x - step[..., None] * d
    return x


class BayesianLinearRegression(Target):
    """f_i(x) = ||y_i - X_i x||^2 / (2 noise_sd^2) + ||x||^2 / (2 prior_var N).

    Args:
        X_parts: per-agent design matrices, each (m_i, dim).
        y_parts: per-agent responses, each (m_i,).
        noise_sd: standard deviation of the observation noise (> 0).
        prior_var: variance of the isotropic Gaussian prior on x (> 0).
        prior_split: number of agents sharing the prior (default len(X_parts)).
        dtype, device: of the tensors held (float32, "cpu" by default; "auto" picks CUDA).
    """

    def __init__(
        self,
        X_parts: Sequence,
        y_parts: Sequence,
        noise_sd: float,
        prior_var: float,
        *,
        prior_split: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device, self.dtype = resolve_device(device), dtype
        X, numpy_x = _as_parts("X_parts", X_parts, 2, dtype, self.device)
        y, numpy_y = _as_parts("y_parts", y_parts, 1, dtype, self.device)
        _check_xy(X, y)
        self.noise_sd = check_positive("noise_sd", noise_sd)
        self.prior_var = check_positive("prior_var", prior_var)
        self.n_agents, self.dim = len(X), X[0].shape[1]
        self.prior_split = _prior_split(prior_split, self.n_agents)
        self.returns_numpy = numpy_x or numpy_y
        self._X, self._y = X, y
        # f_i(x) = x^T A_i x / 2 - b_i^T x + c_i: the data enter only through these statistics.
        s2 = self.noise_sd**2
        eye = torch.eye(self.dim, dtype=dtype, device=self.device)
        prior_prec = 1.0 / (self.prior_var * self.prior_split)
        self.A = torch.stack([Xi.T @ Xi / s2 + prior_prec * eye for Xi in X])
        self.b = torch.stack([Xi.T @ yi / s2 for Xi, yi in zip(X, y, strict=True)])
        self.c = torch.stack([0.5 * (yi @ yi) / s2 for yi in y])

    def neg_log_density(self, x: torch.Tensor) -> torch.Tensor:
        Ax = x @ self.A.transpose(1, 2)
        return 0.5 * (x * Ax).sum(-1) - (x * self.b[:, None]).sum(-1) + self.c[:, None]

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.A.transpose(1, 2) - self.b[:, None]

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        """Hessian of f_i, (N, C, d, d) (constant in x)."""
        return self.A[:, None].expand(-1, x.shape[1], -1, -1)

    def prox(
        self, v: torch.Tensor, p: torch.Tensor, tau: torch.Tensor, x_init: torch.Tensor
    ) -> torch.Tensor:
        # Closed form: (A_i + tau_i I) x = b_i - p + tau_i v.
        eye = torch.eye(self.dim, dtype=v.dtype, device=v.device)
        M = self.A + tau[:, None, None] * eye
        rhs = self.b[:, None] - p + tau[:, None, None] * v
        L = torch.linalg.cholesky(M)
        return torch.cholesky_solve(rhs.transpose(1, 2), L).transpose(1, 2)

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor] | tuple[np.ndarray, np.ndarray]:
        """Exact Gaussian posterior of sum_i f_i: (mean (dim,), covariance (dim, dim))."""
        prec = self.A.double().sum(0)
        cov = torch.linalg.inv(prec)
        cov = 0.5 * (cov + cov.T)
        mean = cov @ self.b.double().sum(0)
        mean, cov = mean.to(self.dtype), cov.to(self.dtype)
        if self.returns_numpy:
            return mean.cpu().numpy(), cov.cpu().numpy()
        return mean, cov

    def local(self, agent: int) -> BayesianLinearRegression:
        i = self._check_agent(agent)
        out = BayesianLinearRegression(
            [self._X[i]],
            [self._y[i]],
            self.noise_sd,
            self.prior_var,
            prior_split=self.prior_split,
            dtype=self.dtype,
            device=self.device,
        )
        out.returns_numpy = self.returns_numpy
        return out


class BayesianLogisticRegression(Target):
    """f_i(x) = sum_k [log(1 + exp(a_k^T x)) - y_k a_k^T x] + ||x||^2 / (2 prior_var N).

    Args:
        X_parts: per-agent features, each (m_i, dim); agents may hold different numbers of rows.
        y_parts: per-agent labels in {0, 1}, each (m_i,).
        prior_var: variance of the isotropic Gaussian prior (> 0).
        prior_split: number of agents sharing the prior (default len(X_parts)).
        newton_steps: damped Newton steps per proximal step (warm-started at the last iterate).
        dtype, device: as for BayesianLinearRegression.
    """

    def __init__(
        self,
        X_parts: Sequence,
        y_parts: Sequence,
        prior_var: float,
        *,
        prior_split: int | None = None,
        newton_steps: int = 8,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device, self.dtype = resolve_device(device), dtype
        X, numpy_x = _as_parts("X_parts", X_parts, 2, dtype, self.device)
        y, numpy_y = _as_parts("y_parts", y_parts, 1, dtype, self.device)
        _check_xy(X, y)
        for i, yi in enumerate(y):
            if not bool(((yi == 0) | (yi == 1)).all()):
                raise ValueError(f"y_parts[{i}] must hold labels in {{0, 1}}, got other values")
        check_int("newton_steps", newton_steps)
        self.prior_var = check_positive("prior_var", prior_var)
        self.newton_steps = newton_steps
        self.n_agents, self.dim = len(X), X[0].shape[1]
        self.prior_split = _prior_split(prior_split, self.n_agents)
        self.returns_numpy = numpy_x or numpy_y
        self._X, self._y = X, y
        # Agents may hold different numbers of rows: pad with zero-weight rows to stack.
        m = max(Xi.shape[0] for Xi in X)
        self.features = torch.zeros(self.n_agents, m, self.dim, dtype=dtype, device=self.device)
        self.labels = torch.zeros(self.n_agents, m, dtype=dtype, device=self.device)
        self.weights = torch.zeros(self.n_agents, m, dtype=dtype, device=self.device)
        for i, (Xi, yi) in enumerate(zip(X, y, strict=True)):
            self.features[i, : len(yi)], self.labels[i, : len(yi)] = Xi, yi
            self.weights[i, : len(yi)] = 1.0
        self.prior_prec = 1.0 / (self.prior_var * self.prior_split)

    def _margins(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.features.transpose(1, 2)

    def neg_log_density(self, x: torch.Tensor) -> torch.Tensor:
        z = self._margins(x)
        w, yl = self.weights[:, None], self.labels[:, None]
        nll = (w * (torch.nn.functional.softplus(z) - yl * z)).sum(-1)
        return nll + 0.5 * self.prior_prec * (x**2).sum(-1)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        r = self.weights[:, None] * (torch.sigmoid(self._margins(x)) - self.labels[:, None])
        return r @ self.features + self.prior_prec * x

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        """Hessian of f_i, (N, C, d, d)."""
        s = torch.sigmoid(self._margins(x))
        w = self.weights[:, None] * s * (1 - s)
        H = (self.features[:, None] * w[..., None]).transpose(-1, -2) @ self.features[:, None]
        return H + self.prior_prec * torch.eye(self.dim, dtype=x.dtype, device=x.device)

    def prox(
        self, v: torch.Tensor, p: torch.Tensor, tau: torch.Tensor, x_init: torch.Tensor
    ) -> torch.Tensor:
        return newton_prox(self, self.hessian, v, p, tau, x_init, self.newton_steps)

    def local(self, agent: int) -> BayesianLogisticRegression:
        i = self._check_agent(agent)
        out = BayesianLogisticRegression(
            [self._X[i]],
            [self._y[i]],
            self.prior_var,
            prior_split=self.prior_split,
            newton_steps=self.newton_steps,
            dtype=self.dtype,
            device=self.device,
        )
        out.returns_numpy = self.returns_numpy
        return out


class LocalDensities(Target):
    """A target from user-given local negative log-densities, one callable per agent.

    Each callable maps x of shape (n_chains, dim) to f_i(x) of shape (n_chains,) with torch
    operations; gradients and Hessians (for the Newton proximal step) come from autograd.

    Args:
        fns: one callable per agent.
        dim: dimension of x.
        newton_steps: damped Newton steps per proximal step.
        dtype, device: of the iterates.
    """

    def __init__(
        self,
        fns: Sequence[Callable[[torch.Tensor], torch.Tensor]],
        dim: int,
        *,
        newton_steps: int = 8,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(fns, (str, bytes)) or not isinstance(fns, Sequence) or len(fns) == 0:
            raise TypeError(f"fns must be a non-empty list of callables, got {fns!r}")
        for i, fn in enumerate(fns):
            if not callable(fn):
                raise TypeError(f"fns[{i}] must be callable, got {type(fn)}")
        check_int("dim", dim)
        check_int("newton_steps", newton_steps)
        self.fns, self.dim, self.n_agents = list(fns), dim, len(fns)
        self.newton_steps, self.dtype, self.device = newton_steps, dtype, resolve_device(device)

    def _value(self, i: int, x: torch.Tensor) -> torch.Tensor:
        out = self.fns[i](x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0],):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
            raise ValueError(f"fns[{i}] must return a tensor of shape ({x.shape[0]},), got {got}")
        return out

    def neg_log_density(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._value(i, x[i]) for i in range(self.n_agents)])

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(self.n_agents):
            xi = x[i].detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._value(i, xi).sum(), xi)
            out.append(g)
        return torch.stack(out)

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        # Double backward per coordinate: chains are independent, so summing over chains
        # before differentiating gives every chain's own Hessian row (torch.func's
        # first call costs seconds of set-up).
        out = []
        for i in range(self.n_agents):
            xi = x[i].detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._value(i, xi).sum(), xi, create_graph=True)
                rows = [
                    torch.autograd.grad(g[:, k].sum(), xi, retain_graph=True)[0]
                    for k in range(self.dim)
                ]
            out.append(torch.stack(rows, dim=-2))
        return torch.stack(out)

    def prox(
        self, v: torch.Tensor, p: torch.Tensor, tau: torch.Tensor, x_init: torch.Tensor
    ) -> torch.Tensor:
        return newton_prox(self, self.hessian, v, p, tau, x_init, self.newton_steps)

    def local(self, agent: int) -> LocalDensities:
        i = self._check_agent(agent)
        return LocalDensities(
            [self.fns[i]],
            self.dim,
            newton_steps=self.newton_steps,
            dtype=self.dtype,
            device=self.device,
        )
