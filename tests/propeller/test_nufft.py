import pytest
import torch

from mrsolve.propeller.dft import DFT
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.nufft import NUFFT, toeplitz_kernel, toeplitz_normal
from mrsolve.solvers.linop import dot_test


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _cplx(shape, g):
    return torch.randn(shape, generator=g, dtype=torch.complex64)


def _random_traj(image_shape, n_samples, g, extent=1.3):
    """Random k positions, partly outside [-n/2, n/2) to exercise the periodic wrap."""
    ny, nx = image_shape
    scale = torch.tensor([nx, ny], dtype=torch.float32) * extent
    return (torch.rand(n_samples, 2, generator=g) - 0.5) * scale


CASES = {
    "square_random": ((16, 16), "random", (3,)),
    "odd_nonsquare_random": ((15, 21), "random", (2,)),
    "nonsquare_odd_rows": ((20, 13), "random", ()),
    "propeller_even": ((16, 16), "propeller", (2,)),
    "propeller_odd_batch2d": ((13, 13), "propeller", (2, 2)),
}


def _case(name, seed=0):
    image_shape, kind, batch = CASES[name]
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        traj = _random_traj(image_shape, 300, g).reshape(3, 100, 2)
    else:
        traj = BladeGeometry(6, 6, image_shape[0], oversampling=2.0).trajectory()
    return traj, image_shape, batch, g


@pytest.mark.parametrize("name", list(CASES))
def test_matches_dft(name, device):
    traj, image_shape, batch, g = _case(name)
    a = NUFFT(traj.to(device), image_shape, batch_shape=batch)
    d = DFT(traj, image_shape, batch_shape=batch)
    assert a.ishape == d.ishape and a.oshape == d.oshape
    x, y = _cplx(a.ishape, g), _cplx(a.oshape, g)
    assert _rel(a(x.to(device)).cpu(), d(x)) < 1e-3
    assert _rel(a.H(y.to(device)).cpu(), d.H(y)) < 1e-3


@pytest.mark.parametrize("width, oversamp", [(4, 2.0), (6, 1.5), (8, 1.25)])
def test_other_kernels_match_dft(width, oversamp):
    traj, image_shape, batch, g = _case("odd_nonsquare_random", seed=1)
    a = NUFFT(traj, image_shape, batch, oversamp=oversamp, width=width)
    x = _cplx(a.ishape, g)
    assert _rel(a(x), DFT(traj, image_shape, batch)(x)) < 1e-3


def test_single_point_phase_convention():
    # A unit point at pixel (x, y) = (2, -1) gives exp(-i 2 pi (kx 2 / nx - ky / ny)).
    ny, nx = 9, 12
    image = torch.zeros(ny, nx, dtype=torch.complex64)
    image[-1 + ny // 2, 2 + nx // 2] = 1
    traj = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.5, -3.25]])
    expected = torch.exp(-2j * torch.pi * (traj[:, 0] * 2 / nx - traj[:, 1] / ny))
    out = NUFFT(traj, (ny, nx))(image)
    assert torch.allclose(out, expected.to(torch.complex64), atol=1e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_adjoint(name):
    traj, image_shape, batch, _ = _case(name)
    a = NUFFT(traj, image_shape, batch_shape=batch)
    assert dot_test(a) < 1e-5
    assert dot_test(a.H) < 1e-5


def test_autograd_forward_and_adjoint_against_dft():
    traj, image_shape, batch, g = _case("propeller_even")
    a, d = NUFFT(traj, image_shape, batch), DFT(traj, image_shape, batch)
    x = _cplx(a.ishape, g).requires_grad_()
    grad_y = _cplx(a.oshape, g)
    a(x).backward(grad_y)
    assert _rel(x.grad, d.H(grad_y)) < 1e-3

    y = _cplx(a.oshape, g).requires_grad_()
    grad_x = _cplx(a.ishape, g)
    a.H(y).backward(grad_x)
    assert _rel(y.grad, d(grad_x)) < 1e-3


def test_autograd_real_loss_gradient_matches_finite_difference():
    traj, image_shape, _, g = _case("nonsquare_odd_rows")
    a = NUFFT(traj, image_shape)
    target = _cplx(a.oshape, g)
    x = _cplx(a.ishape, g).requires_grad_()

    def loss(z):
        return 0.5 * (a(z) - target).abs().pow(2).sum()

    loss(x).backward()
    direction = _cplx(a.ishape, g)
    direction = direction / direction.norm()
    eps = 1e-2
    with torch.no_grad():
        fd = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    # torch's complex gradient: directional derivative = Re <grad, direction>
    analytic = torch.real(torch.vdot(x.grad.reshape(-1), direction.reshape(-1)))
    assert abs(float(fd - analytic)) < 1e-2 * abs(float(analytic)) + 1e-3


@pytest.mark.parametrize("name", ["propeller_even", "odd_nonsquare_random"])
def test_toeplitz_normal_matches_dft_normal(name, device):
    traj, image_shape, batch, g = _case(name)
    a, d = NUFFT(traj.to(device), image_shape, batch), DFT(traj, image_shape, batch)
    x = _cplx(a.ishape, g)
    reference = d.H(d(x))
    xd = x.to(device)
    assert _rel(a.N(xd).cpu(), reference) < 1e-3
    assert _rel(a.N(xd), a.H(a(xd))) < 1e-3
    assert dot_test(a.N) < 1e-5

    weights = torch.rand(traj.shape[:-1], generator=g)
    weighted = toeplitz_normal(a, weights.to(device))
    assert _rel(weighted(xd).cpu(), d.H(weights * d(x))) < 1e-3
    assert _rel(a.normal(weights.to(device))(xd), weighted(xd)) < 1e-6


def _apply_kernel(kernel, x):
    ny, nx = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (0, nx, 0, ny))
    return torch.fft.ifft2(torch.fft.fft2(padded) * kernel)[..., :ny, :nx]


@pytest.mark.parametrize("name", ["odd_nonsquare_random", "propeller_odd_batch2d"])
def test_toeplitz_kernel_complex_weights_match_dft(name):
    traj, image_shape, _, g = _case(name)
    a, d = NUFFT(traj, image_shape), DFT(traj, image_shape)
    weights = _cplx((2, *traj.shape[:-1]), g)  # a batch of two complex weight sets
    kernel = toeplitz_kernel(a, weights)
    assert kernel.shape == (2, 2 * image_shape[0], 2 * image_shape[1])
    x = _cplx(image_shape, g)
    for w, k in zip(weights, kernel, strict=True):
        assert _rel(_apply_kernel(k, x), d.H(w * d(x))) < 1e-3
    real = weights.real
    real_kernel = toeplitz_kernel(a, real)
    assert not real_kernel.is_complex()
    assert _rel(_apply_kernel(real_kernel[0], x), d.H(real[0] * d(x))) < 1e-3
    with pytest.raises(ValueError, match="weights"):
        toeplitz_kernel(a, torch.ones(2, 7))
    with pytest.raises(TypeError, match="nufft"):
        toeplitz_kernel(d, real)


def test_toeplitz_is_differentiable():
    traj, image_shape, batch, g = _case("propeller_even")
    a, d = NUFFT(traj, image_shape, batch), DFT(traj, image_shape, batch)
    x = _cplx(a.ishape, g).requires_grad_()
    grad = _cplx(a.ishape, g)
    a.N(x).backward(grad)
    assert _rel(x.grad, d.H(d(grad))) < 1e-3


def test_bad_input():
    traj = torch.zeros(10, 2)
    with pytest.raises(ValueError, match="traj"):
        NUFFT(torch.zeros(10, 3), (8, 8))
    with pytest.raises(TypeError, match="traj"):
        NUFFT(traj.numpy(), (8, 8))
    with pytest.raises(ValueError, match="traj"):
        NUFFT(torch.full((10, 2), float("nan")), (8, 8))
    with pytest.raises(ValueError, match="image_shape"):
        NUFFT(traj, (8,))
    with pytest.raises(ValueError, match="oversamp"):
        NUFFT(traj, (8, 8), oversamp=0.5)
    with pytest.raises(ValueError, match="width"):
        NUFFT(traj, (8, 8), width=0)
    a = NUFFT(traj, (8, 8))
    with pytest.raises(ValueError, match="shape"):
        a(torch.zeros(8, 9, dtype=torch.complex64))
    with pytest.raises(ValueError, match="weights"):
        toeplitz_normal(a, torch.ones(11))
    with pytest.raises(TypeError, match="weights"):
        toeplitz_normal(a, torch.ones(10, dtype=torch.complex64))
    with pytest.raises(TypeError, match="nufft"):
        toeplitz_normal(DFT(traj, (8, 8)))
