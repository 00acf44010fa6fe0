import pytest
import torch

from mrsolve.solvers import linop as L


def _ops():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 5, generator=g, dtype=torch.complex64)
    m = torch.randn(3, 4, generator=g, dtype=torch.complex64)
    fft = L.FFT((4, 5))
    mult = L.Multiply((4, 5), w)
    return {
        "identity": L.Identity((4, 5)),
        "fft": fft,
        "fft_uncentered_axis0": L.FFT((4, 5), axes=(0,), center=False),
        "multiply": mult,
        "multiply_broadcast": L.Multiply((4, 1), w),
        "sum": L.Sum((4, 5), axes=(1,)),
        "reshape": L.Reshape((4, 5), (20,)),
        "matmul": L.MatMul((4, 5), m),
        "compose": fft @ mult,
        "add": fft + mult,
        "sub_scale": 2.0 * fft - mult,
        "stack": L.Stack([fft, mult]),
        "normal": (fft @ mult).N,
        "broadcast": L.BroadcastTo((1, 5), (4, 5)),
    }


@pytest.mark.parametrize("name", list(_ops()))
def test_adjoint(name):
    op = _ops()[name]
    assert L.dot_test(op) < 1e-5
    assert L.dot_test(op.H) < 1e-5


def test_matmul_matches_dense():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(3, 4, generator=g, dtype=torch.complex64)
    x = torch.randn(4, 2, generator=g, dtype=torch.complex64)
    op = L.MatMul((4, 2), m)
    torch.testing.assert_close(op @ x, m @ x)
    torch.testing.assert_close(op.N(x), m.mH @ (m @ x))


def test_fft_matches_explicit_dft():
    n = 6
    x = torch.randn(n, dtype=torch.complex64)
    k = torch.arange(n) - n // 2
    r = torch.arange(n) - n // 2
    e = torch.exp(-2j * torch.pi * torch.outer(k, r).double() / n).to(torch.complex64) / n**0.5
    torch.testing.assert_close(L.FFT((n,), axes=(0,))(x), e @ x, atol=1e-5, rtol=1e-5)


def test_shape_errors_name_the_argument():
    op = L.FFT((4, 5))
    with pytest.raises(ValueError, match=r"x must have shape \(4, 5\)"):
        op(torch.zeros(5, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="cannot compose"):
        L.FFT((4, 5)) @ L.Identity((3,))


def test_adjoint_and_normal_are_cached():
    op = L.FFT((4, 5)) @ L.Multiply((4, 5), torch.ones(4, 5, dtype=torch.complex64))
    assert op.H is op.H and op.H.H is op and op.N is op.N
