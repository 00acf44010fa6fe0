import numpy as np
import pytest
import torch

from mrsolve.distributed.secure_lstsq import encode_blocks, encoding_matrix, leakage, secure_lstsq
from mrsolve.distributed.stragglers import ShiftedExponential

RNG = np.random.default_rng(0)
A = RNG.standard_normal((128, 6))
X_TRUE = RNG.standard_normal(6)
B_CONSISTENT = A @ X_TRUE
B_NOISY = B_CONSISTENT + RNG.standard_normal(128)
ORTHONORMAL = ["block-srht", "garbled-block-srht", "haar"]


def _rel(x, ref):
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("sketch", ORTHONORMAL)
@pytest.mark.parametrize("step", ["fixed", "adaptive"])
def test_consistent_system_converges_to_lstsq(sketch, step):
    ref = np.linalg.lstsq(A, B_CONSISTENT, rcond=None)[0]
    theta, rep = secure_lstsq(
        A,
        B_CONSISTENT,
        workers=8,
        responders=4,
        sketch=sketch,
        step=step,
        iters=60,
        average=False,
        delays=ShiftedExponential(0.0, 1.0),
        seed=2,
    )
    assert _rel(theta, ref) < 1e-6
    errs = [_rel(t.numpy(), ref) for t in rep.iterates[1:]]
    assert errs[-1] < 1e-3 * errs[0]
    # a fresh responder set every iteration
    assert len({tuple(sorted(r)) for r in rep.responders}) > 10
    assert all(len(r) == 4 for r in rep.responders)


def test_noisy_system_average_converges_and_all_responders_is_exact():
    ref = np.linalg.lstsq(A, B_NOISY, rcond=None)[0]
    errs = []
    for iters in (20, 400):
        theta, _ = secure_lstsq(
            A, B_NOISY, workers=8, responders=4, iters=iters, delays=ShiftedExponential(0, 1)
        )
        errs.append(_rel(theta, ref))
    assert errs[1] < 0.01 and errs[1] < 0.5 * errs[0]
    theta, _ = secure_lstsq(A, B_NOISY, workers=8, responders=8, iters=60, average=False)
    assert _rel(theta, ref) < 1e-8


def test_gaussian_encoding_lands_near_the_solution():
    ref = np.linalg.lstsq(A, B_NOISY, rcond=None)[0]
    theta, _ = secure_lstsq(A, B_NOISY, workers=8, sketch="gaussian", iters=300, seed=1)
    res, res_opt = np.linalg.norm(A @ theta - B_NOISY), np.linalg.norm(A @ ref - B_NOISY)
    assert res < 1.2 * res_opt


@pytest.mark.parametrize("sketch", [*ORTHONORMAL, "gaussian"])
def test_no_worker_holds_a_row_of_a(sketch):
    a, b = torch.from_numpy(A), torch.from_numpy(B_NOISY)
    blocks_a, blocks_b = encode_blocks(a, b, 8, sketch, seed=5)
    assert blocks_a.shape[0] == 8 and blocks_b.shape == blocks_a.shape[:2]
    pi = encoding_matrix(128, 8, sketch, seed=5)
    np.testing.assert_allclose(
        (pi.reshape(-1, 128) @ a).numpy(), blocks_a.reshape(-1, 6).numpy(), atol=1e-10
    )
    assert leakage(pi) < 0.5  # every worker row spreads over many data rows
    # and no worker row is a (scaled) copy of a row of A
    rows, an = blocks_a.reshape(-1, 6), a / a.norm(dim=1, keepdim=True)
    cos = (rows / rows.norm(dim=1, keepdim=True)) @ an.T
    assert cos.abs().max() < 1 - 1e-6
    _, rep = secure_lstsq(A, B_NOISY, workers=8, sketch=sketch, iters=1)
    assert rep.leakage < 0.5


def test_uncoded_baseline_leaks_rows():
    pi = encoding_matrix(128, 8, "uncoded", seed=0)
    assert leakage(pi) == 1.0
    _, rep = secure_lstsq(A, B_NOISY, workers=8, sketch="uncoded", iters=1)
    assert rep.leakage == 1.0


def test_orthonormal_encodings_preserve_the_problem():
    a, b = torch.from_numpy(A), torch.from_numpy(B_NOISY)
    for sketch in ORTHONORMAL:
        ba, bb = encode_blocks(a, b, 8, sketch, seed=3)
        pa, pb = ba.reshape(-1, 6), bb.reshape(-1)
        np.testing.assert_allclose((pa.T @ pa).numpy(), A.T @ A, atol=1e-10)
        np.testing.assert_allclose((pa.T @ pb).numpy(), A.T @ B_NOISY, atol=1e-10)


def test_failed_workers_are_skipped():
    theta, rep = secure_lstsq(A, B_CONSISTENT, workers=8, responders=6, fail=[0, 1, 2], iters=5)
    assert all(0 not in r and len(r) == 5 for r in rep.responders)
    assert all(f == [0, 1, 2] for f in rep.failed)
    assert np.isfinite(theta).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="sketch must be one of"):
        secure_lstsq(A, B_NOISY, sketch="fourier")
    with pytest.raises(ValueError, match="responders"):
        secure_lstsq(A, B_NOISY, workers=4, responders=5)
    with pytest.raises(ValueError, match="b must have shape"):
        secure_lstsq(A, B_NOISY[:-1])
    with pytest.raises(ValueError, match="power of two"):
        secure_lstsq(A, B_NOISY, workers=6)
    with pytest.raises(ValueError, match="step must be one of"):
        secure_lstsq(A, B_NOISY, step="newton")


def test_average_defaults_to_stragglers_only():
    _, rep = secure_lstsq(A, B_NOISY, workers=8, responders=8, iters=4)
    assert rep.averaged_from == 0
    theta, rep = secure_lstsq(A, B_NOISY, workers=8, responders=4, iters=4)
    assert rep.averaged_from == 3
    np.testing.assert_allclose(theta, rep.iterates[3:].mean(dim=0).numpy())
