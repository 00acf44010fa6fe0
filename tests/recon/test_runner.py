"""The one loop (runner.run) and the steppers: against solvers.alg.fista, torch's own
optimizers and hand-counted stopping decisions; resume equals an uninterrupted run."""

import pytest
import torch

from mrsolve.recon.spectral.runner import Checkpointer, StoppingConfig, run
from mrsolve.recon.spectral.steppers import FISTA, LBFGS, Adam, RestartingLBFGS
from mrsolve.solvers.alg import fista
from mrsolve.solvers.prox import soft_threshold


class _L1:
    """prox of lam ||x||_1, stateless."""

    def __init__(self, lam):
        self.lam = lam

    def __call__(self, v, t):
        return soft_threshold(v, t * self.lam)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _lasso(seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(30, 12, dtype=torch.float64, generator=gen)
    b = torch.randn(30, dtype=torch.float64, generator=gen)
    step = 1.0 / float(torch.linalg.matrix_norm(a, 2) ** 2)
    return (lambda x: 0.5 * (a @ x - b).square().sum()), a, b, step


def test_fista_stepper_follows_solvers_fista():
    f, a, b, step = _lasso()
    x0 = torch.zeros(12, dtype=torch.float64)
    ref, _ = fista(
        f,
        lambda x: a.T @ (a @ x - b),
        _L1(0.5),
        x0,
        step=step,
        max_iter=40,
        tol=0.0,
        backtrack=False,
        restart="gradient",
    )
    stepper = FISTA(f, _L1(0.5), x0, step)
    for _ in range(40):
        stepper.step()
    assert torch.allclose(stepper.x, ref, rtol=0, atol=1e-12)


def test_fista_restarted_every_step_is_proximal_gradient():
    f, a, b, step = _lasso(2)
    x = torch.zeros(12, dtype=torch.float64)
    stepper = FISTA(f, _L1(0.4), x, step, restart_every=1)
    for _ in range(25):  # ISTA: x <- prox(x - step grad f(x)), no momentum
        x = soft_threshold(x - step * (a.T @ (a @ x - b)), step * 0.4)
        stepper.step()
    assert torch.allclose(stepper.x, x, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="restart_every"):
        FISTA(f, _L1(0.4), x, step, restart_every=-1)


def test_fista_fixed_restart_resumes_mid_cycle():
    f, _, _, step = _lasso(3)
    x0 = torch.zeros(12, dtype=torch.float64)
    straight = FISTA(f, _L1(0.2), x0, step, restart_every=4)
    for _ in range(15):
        straight.step()
    first = FISTA(f, _L1(0.2), x0, step, restart_every=4)
    for _ in range(6):  # stops halfway through a restart cycle
        first.step()
    second = FISTA(f, _L1(0.2), x0, step, restart_every=4)
    second.load_state_dict(first.state_dict())
    for _ in range(9):
        second.step()
    assert torch.equal(second.x, straight.x)


def test_fista_state_round_trip_continues_the_same_iterates():
    f, _, _, step = _lasso(1)
    x0 = torch.zeros(12, dtype=torch.float64)
    straight = FISTA(f, _L1(0.3), x0, step)
    for _ in range(20):
        straight.step()
    first = FISTA(f, _L1(0.3), x0, step)
    for _ in range(7):
        first.step()
    second = FISTA(f, _L1(0.3), x0, step)
    second.load_state_dict(first.state_dict())
    for _ in range(13):
        second.step()
    assert torch.equal(second.x, straight.x)


@pytest.mark.parametrize("kind", ["adam", "lbfgs"])
def test_module_steppers_match_torch_and_resume(kind):
    def make():
        module = torch.nn.Linear(3, 1).double()
        with torch.no_grad():
            module.weight.fill_(0.1)
            module.bias.fill_(0.0)
        gen = torch.Generator().manual_seed(2)
        x, y = (
            torch.randn(20, 3, generator=gen).double(),
            torch.randn(20, 1, generator=gen).double(),
        )

        def loss():
            value = (module(x) - y).square().mean()
            return value, value

        stepper = Adam(module, loss, 0.05, 10) if kind == "adam" else LBFGS(module, loss)
        return module, loss, stepper

    module, _, stepper = make()
    for _ in range(10):
        stepper.step()
    ref_module, ref_loss, _ = make()
    if kind == "adam":
        opt = torch.optim.Adam(ref_module.parameters(), lr=0.05)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
        for _ in range(10):
            opt.zero_grad()
            ref_loss()[0].backward()
            opt.step()
            sched.step()
        assert torch.equal(module.weight, ref_module.weight)
    # resumed after 4 steps: the same parameters as 10 straight steps
    _, _, part = make()
    for _ in range(4):
        part.step()
    later_module, _, later = make()
    later.load_state_dict(part.state_dict())
    for _ in range(6):
        later.step()
    assert torch.equal(later_module.weight, module.weight)


def _least_squares(n_features=4, seed=3):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(30, n_features, generator=gen).double()
    b = torch.randn(30, generator=gen).double()
    x = torch.nn.Parameter(torch.zeros(n_features, dtype=torch.float64))
    module = torch.nn.Module()
    module.x = x
    count = [0]

    def loss():
        count[0] += 1
        value = (a @ module.x - b).square().sum()
        return value, value

    return module, loss, count, torch.linalg.lstsq(a, b[:, None]).solution[:, 0]


def test_lbfgs_reuses_the_line_search_evaluation_without_changing_the_iterates():
    module, loss, count, _ = _least_squares()
    stepper = LBFGS(module, loss)
    ref_module, ref_loss, ref_count, _ = _least_squares()
    ref = RestartingLBFGS(ref_module.parameters())

    def closure():
        ref.zero_grad()
        value = ref_loss()[0]
        value.backward()
        return value

    for _ in range(3):
        stepper.step()
        ref.step(closure)
        assert torch.equal(module.x, ref_module.x)
    # torch evaluates at the start of every step what the last line search evaluated
    assert ref_count[0] == 6
    assert count[0] == 4


def test_restarting_lbfgs_line_search_backs_off_an_overshooting_first_step():
    # f = 500 x^2 from x = 0.1: torch's first trial step 1 / |g|_1 lands at x = -0.9
    x = torch.nn.Parameter(torch.tensor([0.1], dtype=torch.float64))
    opt = RestartingLBFGS([x])

    def closure():
        opt.zero_grad()
        value = 500 * x.square().sum()
        value.backward()
        return value

    for _ in range(5):
        opt.step(closure)
    assert abs(float(x)) < 1e-6


def test_lbfgs_converges_to_the_closed_form_and_the_runner_stops_there():
    module, loss, _, solution = _least_squares()
    stepper = LBFGS(module, loss)
    result = run(stepper, 200, lambda: module.x.detach().clone())
    torch.testing.assert_close(result.best, solution, rtol=0, atol=1e-6)
    assert stepper.converged and result.n_iter < 200
    # at the minimum already: two steps that cannot move, then the run ends
    with torch.no_grad():
        module.x.copy_(solution)
    stuck = LBFGS(module, loss)
    assert run(stuck, 200).n_iter == 2 and stuck.converged


class _Scripted:
    """A stepper whose iterate is its step count and whose held-out loss is scripted."""

    def __init__(self):
        self.k = 0

    def step(self):
        self.k += 1
        return float(self.k)

    def state_dict(self):
        return {"k": self.k}

    def load_state_dict(self, state):
        self.k = state["k"]


def test_runner_stops_keeps_the_best_and_resumes(tmp_path):
    heldout = {2: 1.0, 4: 0.5, 6: 0.499, 8: 0.6, 10: 0.4, 12: 0.45}  # by step count
    stop = StoppingConfig(check_every=2, patience=2, min_improvement=0.01)

    def go(stepper, **kwargs):
        return run(
            stepper,
            20,
            lambda: torch.tensor(float(stepper.k)),
            heldout=lambda: heldout[stepper.k],
            stopping=stop,
            **kwargs,
        )

    steps = []
    result = go(_Scripted(), callback=lambda s, t, image=None, loss=None: steps.append((s, t)))
    # checks at 2 (best), 4 (best), 6 (< 1 % better: bad 1, best), 8 (bad 2): stop
    assert result.n_iter == 8 and result.stopped_early
    assert result.heldout_history == [1.0, 0.5, 0.499, 0.6] and float(result.best) == 6
    assert steps == [(k, 20) for k in range(1, 9)]
    path = tmp_path / "c.pt"

    def interrupt(s, t, image=None, loss=None):
        if s == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        go(_Scripted(), checkpointer=Checkpointer(path), name="x", callback=interrupt)
    resumed = go(_Scripted(), checkpointer=Checkpointer(path, resume=True), name="x")
    assert (resumed.n_iter, resumed.heldout_history) == (result.n_iter, result.heldout_history)
    assert float(resumed.best) == 6
    with pytest.raises(ValueError, match="together"):
        run(_Scripted(), 3, heldout=lambda: 0.0)
