import numpy as np
import pytest
import scipy.linalg
import torch

from mrsolve.solvers import sketching as sk


def _all_sketches(d, m, seed):
    return {
        "gaussian": sk.GaussianSketch(d, m, seed=seed, dtype=torch.float64),
        "sparse-jl": sk.SparseJLSketch(d, m, nnz_per_row=2, seed=seed, dtype=torch.float64),
        "srht": sk.SRHTSketch(d, m, seed=seed, dtype=torch.float64),
        "block-srht": sk.BlockSRHTSketch(d, 4, 2, seed=seed, dtype=torch.float64),
        "haar": sk.HaarSketch(d, m, seed=seed, dtype=torch.float64),
    }


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_fwht_matches_scipy_hadamard(n):
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    ref = scipy.linalg.hadamard(n) @ x.numpy()
    np.testing.assert_allclose(sk.fwht(x).numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(sk.fwht(x.T, dim=1).T.numpy(), ref, atol=1e-12)


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        sk.fwht(torch.ones(6))


def test_randomized_hadamard_is_orthonormal_and_padded():
    g = torch.Generator().manual_seed(1)
    signs = sk.random_signs(16, g)
    perm = torch.randperm(16, generator=g)
    q = sk.randomized_hadamard(torch.eye(16, dtype=torch.float64), signs, perm)
    np.testing.assert_allclose((q.T @ q).numpy(), np.eye(16), atol=1e-12)
    x = torch.randn(11, 2, dtype=torch.float64, generator=g)
    y = sk.randomized_hadamard(x, signs)
    xpad = np.vstack([x.numpy(), np.zeros((5, 2))])
    ref = scipy.linalg.hadamard(16) @ (signs.numpy()[:, None] * xpad) / 4.0
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "sparse-jl", "srht", "block-srht", "haar"])
def test_expected_outer_product_is_identity(kind):
    d, m, draws = 8, 4, 250
    acc = torch.zeros(d, d, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    for _ in range(draws):
        s = _all_sketches(d, m, g)[kind].matrix()
        acc += s @ s.T
    err = (acc / draws - torch.eye(d, dtype=torch.float64)).abs().max().item()
    assert err < 0.15, err  # entry sd about 0.5 / sqrt(draws) = 0.03


@pytest.mark.parametrize("kind", ["gaussian", "sparse-jl", "srht", "block-srht", "haar"])
def test_subspace_embedding(kind):
    d, m, r = 512, 256, 4
    u, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((d, r)))
    u[:, 0] = 0.0
    u[0, 0] = 1.0  # a coherent direction: uniform row sampling alone would miss it
    u, _ = np.linalg.qr(u)
    s = _all_sketches(d, m, 11)[kind]
    sv = np.linalg.svd(s.apply_t(torch.from_numpy(u)).numpy(), compute_uv=False)
    assert 0.5 < sv.min() and sv.max() < 1.5, sv


@pytest.mark.parametrize("kind", ["gaussian", "sparse-jl", "srht", "block-srht", "haar"])
def test_apply_matches_matrix(kind):
    s = _all_sketches(12, 4, 5)[kind]
    x = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mat = s.matrix()
    np.testing.assert_allclose(s.apply_t(x).numpy(), (mat.T @ x).numpy(), atol=1e-12)
    np.testing.assert_allclose(s.apply_t(x[:, 0]).numpy(), (mat.T @ x[:, 0]).numpy(), atol=1e-12)
    np.testing.assert_allclose(s.right(x.T).numpy(), (x.T @ mat).numpy(), atol=1e-12)


def test_gaussian_sketch_variance_and_seed():
    s = sk.gaussian_sketch(300, 50, seed=4)
    assert s.shape == (300, 50) and s.dtype == torch.float32
    assert abs(s.var().item() * 50 - 1.0) < 0.05
    assert torch.equal(s, sk.gaussian_sketch(300, 50, seed=4))
    assert not torch.equal(s, sk.gaussian_sketch(300, 50, seed=5))


def test_sparse_jl_structure():
    s = sk.sparse_jl_sketch(40, 10, nnz_per_row=3, seed=2, dtype=torch.float64)
    assert ((s != 0).sum(dim=1) == 3).all()
    np.testing.assert_allclose(torch.diagonal(s @ s.T).numpy(), np.ones(40), atol=1e-12)
    assert torch.equal(s, sk.sparse_jl_sketch(40, 10, nnz_per_row=3, seed=2, dtype=torch.float64))


def test_random_orthogonal_is_orthogonal_and_haar():
    q = sk.random_orthogonal(6, seed=0, dtype=torch.float64)
    np.testing.assert_allclose((q.T @ q).numpy(), np.eye(6), atol=1e-12)
    # Haar on O(n): E[tr Q] = 0 and E[tr(Q)^2] = 1 (Diaconis-Shahshahani); a plain QR
    # without the sign fix has E[tr Q] far from 0 (about -0.86 here).
    g = torch.Generator().manual_seed(1)
    tr = np.array([torch.trace(sk.random_orthogonal(4, seed=g)).item() for _ in range(600)])
    assert abs(tr.mean()) < 0.15 and abs((tr**2).mean() - 1.0) < 0.25


def test_haar_sketch_columns_orthogonal():
    s = sk.HaarSketch(20, 5, seed=1, dtype=torch.float64).matrix()
    np.testing.assert_allclose((s.T @ s).numpy(), 4.0 * np.eye(5), atol=1e-12)


def test_block_srht_rows_are_whole_blocks():
    s = sk.BlockSRHTSketch(30, 8, 3, seed=0)
    assert s.n == 32 and s.m == 12
    starts = s.rows.reshape(3, 4)[:, 0]
    assert (starts % 4 == 0).all()


def test_make_sketch_and_bad_arguments():
    assert isinstance(sk.make_sketch("srht", 10, 4, seed=0), sk.SRHTSketch)
    with pytest.raises(ValueError, match="kind"):
        sk.make_sketch("fourier", 10, 4)
    with pytest.raises(ValueError, match="m must be"):
        sk.HaarSketch(4, 8)
    with pytest.raises(ValueError, match="nnz_per_row"):
        sk.sparse_jl_sketch(4, 2, nnz_per_row=3)
    with pytest.raises(ValueError, match="num_blocks"):
        sk.BlockSRHTSketch(16, 3, 1)
    with pytest.raises(TypeError, match="seed"):
        sk.gaussian_sketch(4, 2, seed="x")
    with pytest.raises(TypeError, match="d must be an int"):
        sk.gaussian_sketch(4.0, 2)
    with pytest.raises(ValueError, match="device"):
        sk.gaussian_sketch(4, 2, device="tpu")
    with pytest.raises(ValueError, match="x must have shape"):
        sk.SRHTSketch(8, 2).apply_t(torch.ones(7))
