"""Steppers: one optimizer iteration per ``step()``, the whole state in ``state_dict()``.

The runner (:func:`~mrsolve.recon.spectral.runner.run`) owns the loop; a stepper only
knows its update. Every ``step()`` returns the data loss (scaled units) it evaluated,
which the runner reports; ``state_dict()`` / ``load_state_dict()`` carry everything a
resumed run needs to continue with the same iterates (FISTA's momentum included).

- :class:`FISTA`: accelerated proximal gradient, fixed step, gradient restart
  (Beck & Teboulle 2009; O'Donoghue & Candes 2015), the iteration of
  :func:`mrsolve.solvers.alg.fista` with ``backtrack=False, restart="gradient"``.
- :class:`LBFGS`: :class:`RestartingLBFGS` over a module's parameters (``history_size``
  curvature pairs).
- :class:`Adam`: torch's Adam with a cosine learning-rate schedule over the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

#: ``loss() -> (total, data)``: the objective to minimize and its data term, 0-d tensors
Objective = Callable[[], tuple[torch.Tensor, torch.Tensor]]


class Prox(Protocol):
    """``prox(v, t) = argmin_x g(x) + ||x - v||^2 / (2 t)``, with its own (warm) state."""

    def __call__(self, v: torch.Tensor, t: float) -> torch.Tensor: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class FISTA:
    """FISTA on ``min_x f(x) + g(x)`` with a fixed ``step`` (at most 1 / L of f).

    Args:
        smooth: f, a differentiable 0-d tensor of x (its gradient by autograd).
        prox: the prox of g (:class:`Prox`).
        x0: starting point (not modified).
        step: step size.
        restart_every: also restart the momentum every this many iterations (0: only by
            the gradient test); a fixed restart keeps an inexact, warm-started prox from
            accumulating momentum (O'Donoghue & Candes 2015, section 4).
    """

    def __init__(
        self,
        smooth: Callable[[torch.Tensor], torch.Tensor],
        prox: Prox,
        x0: torch.Tensor,
        step: float,
        restart_every: int = 0,
    ) -> None:
        if not step > 0:
            raise ValueError(f"step must be positive, got {step!r}")
        if not isinstance(restart_every, int) or restart_every < 0:
            raise ValueError(f"restart_every must be an integer >= 0, got {restart_every!r}")
        self.smooth, self.prox, self.step_size = smooth, prox, float(step)
        self.restart_every = restart_every
        self.x = x0.detach().clone()
        self.y = self.x
        self.t = 1.0
        self.since_restart = 0

    def step(self) -> float:
        """One iteration; returns f at the extrapolated point y."""
        y = self.y
        yr = y.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.smooth(yr)
            (grad,) = torch.autograd.grad(value, yr)
        x_new = self.prox(torch.add(y, grad, alpha=-self.step_size), self.step_size)
        d, dx = x_new - y, x_new - self.x
        self.since_restart += 1
        due = self.restart_every > 0 and self.since_restart >= self.restart_every
        if due or float((d.conj() * dx).real.sum()) < 0:  # <y - x_new, x_new - x> > 0
            self.t, self.y, self.since_restart = 1.0, x_new, 0
        else:
            t_next = (1 + math.sqrt(1 + 4 * self.t * self.t)) / 2
            self.y = torch.add(x_new, dx, alpha=(self.t - 1) / t_next)
            self.t = t_next
        self.x = x_new
        return float(value.detach())

    def state_dict(self) -> dict:
        return {
            "x": self.x.detach().cpu().clone(),
            "y": self.y.detach().cpu().clone(),
            "t": self.t,
            "since_restart": self.since_restart,
            "step": self.step_size,
            "prox": self.prox.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        dev = self.x.device
        self.x, self.y = state["x"].to(dev), state["y"].to(dev)
        self.t, self.step_size = float(state["t"]), float(state["step"])
        self.since_restart = int(state["since_restart"])
        self.prox.load_state_dict(state["prox"])


class RestartingLBFGS(torch.optim.LBFGS):
    """L-BFGS, one strong-Wolfe line-searched iteration per ``step``, that drops its
    curvature history when a step makes no progress.

    torch's L-BFGS would then retry the same direction forever: after a line search that
    found no decrease (step length 0), and also when the float32 two-loop recursion gives
    a direction that is not a descent direction (torch then returns without a step). A
    restart from steepest descent keeps decreasing the objective
    (docs/spectral_design.md).

    ``max_eval`` must be given: torch's default (5/4 of ``max_iter``, i.e. 1) leaves the
    line search no evaluation beyond its first trial, which it then takes if it lowers
    the objective at all and otherwise rejects (step 0, the same trial every restart).
    """

    def __init__(self, params, max_line_search: int = 25, history_size: int = 20) -> None:
        super().__init__(
            params,
            lr=1.0,
            max_iter=1,
            max_eval=1 + max_line_search,
            history_size=history_size,
            line_search_fn="strong_wolfe",
        )
        self._last_loss = math.inf

    def step(self, closure):
        loss = super().step(closure)
        state = self.state[self._params[0]]
        value = float(loss.detach())
        if float(state.get("t", 1.0)) == 0.0 or value >= self._last_loss:
            state.clear()
        self._last_loss = value
        return loss

    def state_dict(self) -> dict:
        return {**super().state_dict(), "last_loss": self._last_loss}

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        self._last_loss = state_dict.pop("last_loss", math.inf)
        super().load_state_dict(state_dict)


class _ModuleStepper:
    """A torch optimizer over ``module``'s parameters; the module is part of the state."""

    def __init__(self, module: torch.nn.Module, loss: Objective) -> None:
        self.module, self.loss = module, loss

    def _parts(self) -> dict:
        return {"module": self.module, "opt": self.opt}

    def state_dict(self) -> dict:
        return {key: part.state_dict() for key, part in self._parts().items()}

    def load_state_dict(self, state: dict) -> None:
        for key, part in self._parts().items():
            part.load_state_dict(state[key])


class LBFGS(_ModuleStepper):
    """:class:`RestartingLBFGS` on ``loss`` over ``module``'s parameters.

    torch's L-BFGS evaluates the objective at the start of every ``step()``, where the
    previous step's line search has just evaluated it: the objective, its data term and
    the gradients of that last evaluation are kept and reused when the parameters still
    hold the same values, which halves the evaluations of one-iteration steps.

    ``converged`` turns True after two steps in a row that leave the parameters exactly
    where they were: the second started afresh from steepest descent, so every later
    step would repeat it.
    """

    def __init__(self, module: torch.nn.Module, loss: Objective, history_size: int = 20) -> None:
        super().__init__(module, loss)
        self.opt = RestartingLBFGS(module.parameters(), history_size=history_size)
        self._params = [p for p in module.parameters() if p.requires_grad]
        self._last: tuple | None = None  # (parameter values, total, data, gradients)
        self.still_steps = 0  # consecutive steps that did not move the parameters

    @property
    def converged(self) -> bool:
        return self.still_steps >= 2

    def state_dict(self) -> dict:
        return {**super().state_dict(), "still_steps": self.still_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.still_steps = state.get("still_steps", 0)

    def _cached(self) -> tuple[torch.Tensor, float] | None:
        if self._last is None:
            return None
        values, total, data, grads = self._last
        if not all(torch.equal(p, v) for p, v in zip(self._params, values, strict=True)):
            return None
        for p, g in zip(self._params, grads, strict=True):
            p.grad = g
        return total, data

    def step(self) -> float:
        """One line-searched iteration; returns the data loss of its last evaluation."""
        last = [math.nan]

        def closure():
            hit = self._cached()
            if hit is not None:
                last[0] = hit[1]
                return hit[0]
            self.opt.zero_grad()
            total, data = self.loss()
            total.backward()
            last[0] = float(data.detach())
            values = [p.detach().clone() for p in self._params]
            self._last = (values, total.detach(), last[0], [p.grad for p in self._params])
            return total

        before = [p.detach().clone() for p in self._params]
        self.opt.step(closure)
        moved = not all(torch.equal(p, b) for p, b in zip(self._params, before, strict=True))
        self.still_steps = 0 if moved else self.still_steps + 1
        return last[0]


class Adam(_ModuleStepper):
    """Adam on ``loss`` over ``module``'s parameters, learning rate ``lr`` annealed on a
    cosine over ``iterations`` steps (``anneal=False``: constant)."""

    def __init__(
        self,
        module: torch.nn.Module,
        loss: Objective,
        lr: float,
        iterations: int,
        anneal: bool = True,
    ) -> None:
        super().__init__(module, loss)
        self.opt = torch.optim.Adam(module.parameters(), lr=lr)
        self.schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, iterations) if anneal else None
        )

    def _parts(self) -> dict:
        extra = {} if self.schedule is None else {"schedule": self.schedule}
        return {**super()._parts(), **extra}

    def step(self) -> float:
        self.opt.zero_grad()
        total, data = self.loss()
        total.backward()
        self.opt.step()
        if self.schedule is not None:
            self.schedule.step()
        return float(data.detach())
