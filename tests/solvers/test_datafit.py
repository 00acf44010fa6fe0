"""Datafits against closed forms and torch autograd."""

from __future__ import annotations

import math

import pytest
import torch

from mrsolve.solvers.datafit import Logistic, Multinomial, Poisson, Quadratic


def _problem(kind: str, shape, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = shape[0]
    eta = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    off = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "quadratic":
        y = torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "logistic":
        y = (torch.rand(shape, generator=g) < 0.5).double()
    elif kind == "poisson":
        y = torch.poisson(torch.full(shape, 2.0, dtype=torch.float64), generator=g)
    else:
        labels = torch.randint(0, shape[1], (n,), generator=g)
        y = torch.nn.functional.one_hot(labels, shape[1]).double()
    return eta, y, w, off


CLASSES = {"quadratic": Quadratic, "logistic": Logistic, "poisson": Poisson}


def _closed_form(kind, eta, y, w):
    """Per-observation losses written out independently of the module."""
    wn = w / w.mean()
    n = y.shape[0]
    if kind == "quadratic":
        loss = 0.5 * (eta - y) ** 2
    elif kind == "logistic":
        loss = torch.log1p(torch.exp(eta)) - y * eta
    elif kind == "poisson":
        loss = torch.exp(eta) - y * eta
    else:
        p = torch.exp(eta) / torch.exp(eta).sum(1, keepdim=True)
        return -(wn * (y * torch.log(p)).sum(1)).sum() / n
    if loss.ndim == 2:
        loss = loss.sum(1)
    return (wn * loss).sum() / n


@pytest.mark.parametrize(
    ("kind", "two_d"),
    [(k, d) for k in ("quadratic", "logistic", "poisson") for d in (False, True)]
    + [("multinomial", True)],
)
def test_value_grad_hessian_against_closed_form_and_autograd(kind, two_d):
    shape = (17, 3) if two_d else (17,)
    eta, y, w, off = _problem(kind, shape)
    cls = Multinomial if kind == "multinomial" else CLASSES[kind]
    f = cls(y, weights=w, offset=off)
    expected = _closed_form(kind, eta + off, y, w)
    assert torch.allclose(f.value(eta), expected, atol=1e-12, rtol=1e-12)

    e = eta.clone().requires_grad_(True)
    v = f.value(e)
    (g,) = torch.autograd.grad(v, e, create_graph=True)
    assert torch.allclose(f.grad(eta), g, atol=1e-12)
    # diagonal of the Hessian via autograd, entry by entry
    hdiag = torch.zeros_like(eta)
    flat_g = g.reshape(-1)
    for i in range(flat_g.numel()):
        (row,) = torch.autograd.grad(flat_g[i], e, retain_graph=True)
        hdiag.reshape(-1)[i] = row.reshape(-1)[i]
    assert torch.allclose(f.hessian_diag(eta), hdiag, atol=1e-12)


@pytest.mark.parametrize("kind", ["quadratic", "logistic", "multinomial"])
def test_lipschitz_bounds_hessian_spectrum(kind):
    shape = (9, 3) if kind == "multinomial" else (9,)
    eta, y, w, off = _problem(kind, shape, seed=1)
    cls = Multinomial if kind == "multinomial" else CLASSES[kind]
    f = cls(y, weights=w, offset=off)
    worst = 0.0
    for s in (0.0, 0.5, 3.0):  # include eta = 0 where logistic curvature peaks at 1/4
        H = torch.autograd.functional.hessian(lambda e: f.value(e), s * eta - off)
        H = H.reshape(eta.numel(), eta.numel())
        worst = max(worst, float(torch.linalg.eigvalsh(H).max()))
    assert worst <= f.lipschitz * (1 + 1e-12)
    expected_c = {"quadratic": 1.0, "logistic": 0.25, "multinomial": 0.5}[kind]
    assert math.isclose(f.lipschitz, expected_c * float((w / w.mean()).max()) / 9)
    # the quadratic bound is attained, so it is tight
    if kind == "quadratic":
        assert math.isclose(worst, f.lipschitz, rel_tol=1e-12)


def test_poisson_has_no_global_lipschitz():
    assert Poisson(torch.tensor([1.0, 2.0])).lipschitz is None


@pytest.mark.parametrize("kind", ["quadratic", "logistic", "poisson"])
def test_working_response_reproduces_newton_step(kind):
    eta, y, w, off = _problem(kind, (11,), seed=2)
    f = CLASSES[kind](y, weights=w, offset=off)
    h, z = f.working(eta)
    # the quadratic model 1/2 sum h (eta' - z)^2 has the datafit's gradient at eta
    e = eta.clone().requires_grad_(True)
    (g_model,) = torch.autograd.grad(0.5 * (h * (e - z) ** 2).sum(), e)
    assert torch.allclose(g_model, f.grad(eta), atol=1e-12)


def test_deviance_closed_forms():
    eta, y, w, off = _problem("poisson", (13,), seed=3)
    f = Poisson(y, weights=w, offset=off)
    mu = torch.exp(eta + off)
    ylogy = torch.where(y > 0, y * torch.log(torch.where(y > 0, y / mu, 1.0)), 0.0)
    dev = 2 * (w / w.mean() * (ylogy - (y - mu))).sum() / 13
    assert torch.allclose(f.deviance(eta), dev, atol=1e-12)
    q = Quadratic(y, weights=w)
    assert torch.allclose(q.deviance(eta), (w / w.mean() * (eta - y) ** 2).mean(), atol=1e-12)
    yb = (y > 1).double()
    b = Logistic(yb)
    p = torch.sigmoid(eta)
    dev_b = -2 * (yb * torch.log(p) + (1 - yb) * torch.log(1 - p)).mean()
    assert torch.allclose(b.deviance(eta), dev_b, atol=1e-12)
    # proportion targets: the binomial deviance 2 sum [y log(y/p) + (1-y) log((1-y)/(1-p))]
    yp = torch.linspace(0.0, 1.0, 13, dtype=torch.float64)
    bp = Logistic(yp, weights=w)
    kl = torch.special.xlogy(yp, yp / p) + torch.special.xlogy(1 - yp, (1 - yp) / (1 - p))
    dev_p = 2 * (w / w.mean() * kl).mean()
    assert torch.allclose(bp.deviance(eta), dev_p, atol=1e-12)
    assert float(bp.deviance(torch.logit(yp.clamp(1e-300, 1 - 1e-16)))) < 1e-12


def test_multinomial_labels_equal_one_hot():
    labels = torch.tensor([0, 2, 1, 2])
    eta = torch.randn(4, 3, generator=torch.Generator().manual_seed(4))
    a = Multinomial(labels)
    assert a.y.dtype == torch.get_default_dtype()
    b = Multinomial(torch.nn.functional.one_hot(labels, 3).float())
    assert torch.allclose(a.value(eta), b.value(eta))
    assert torch.allclose(a.deviance(eta), 2 * a.value(eta))  # one-hot: saturated loss 0


def test_offset_of_length_n_broadcasts_over_columns():
    y = torch.zeros(5, 2, dtype=torch.float64)
    o = torch.arange(5.0, dtype=torch.float64)
    f = Quadratic(y, offset=o)
    assert torch.allclose(
        f.grad(torch.zeros(5, 2, dtype=torch.float64)), torch.stack([o, o], 1) / 5
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Quadratic(torch.tensor([1.0, float("nan")])), "y must be finite"),
        (lambda: Logistic(torch.tensor([0.0, 2.0])), r"y must lie in \[0, 1\]"),
        (lambda: Poisson(torch.tensor([-1.0, 2.0])), "y must be >= 0"),
        (lambda: Quadratic(torch.ones(3), weights=torch.ones(4)), "weights must have shape"),
        (lambda: Quadratic(torch.ones(3), weights=-torch.ones(3)), "weights must be >= 0"),
        (lambda: Quadratic(torch.ones(3), offset=torch.ones(2)), "offset must have shape"),
        (lambda: Multinomial(torch.tensor([0.5, 1.0])), "integer class labels"),
        (lambda: Quadratic(torch.ones(2, 2, 2)), r"y must have shape \(n,\) or \(n, k\)"),
    ],
)
def test_bad_input_raises(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_eta_shape_is_checked():
    with pytest.raises(ValueError, match="eta must have shape"):
        Quadratic(torch.ones(3)).value(torch.ones(4))
