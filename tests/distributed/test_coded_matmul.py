import numpy as np
import pytest
import torch

from mrsolve.distributed.coded_matmul import RowMixer, coded_matmul
from mrsolve.distributed.executors import ThreadExecutor
from mrsolve.distributed.stragglers import ShiftedExponential

RNG = np.random.default_rng(0)
A = RNG.standard_normal((60, 12))
B = RNG.standard_normal((12, 5))
C = A @ B


def _rel(x):
    return np.linalg.norm(x - C) / np.linalg.norm(C)


@pytest.mark.parametrize("code", ["polar", "mds", "mds-vandermonde", "replication", "uncoded"])
def test_exact_product_with_stragglers_and_a_dead_worker(code):
    fail = [] if code == "uncoded" else [2]
    out, rep = coded_matmul(
        A, B, workers=8, code=code, delays=ShiftedExponential(1.0, 1.0), fail=fail, seed=1
    )
    assert isinstance(out, np.ndarray) and out.shape == (60, 5)
    assert rep.decoded and rep.error_estimate == 0.0
    assert _rel(out) < 1e-8
    assert rep.arrival_times == sorted(rep.arrival_times)
    assert set(rep.answered).isdisjoint(rep.cancelled)
    if fail:
        assert 2 not in rep.answered and (rep.failed == [2] or 2 in rep.cancelled)


def test_torch_in_torch_out_float32_and_no_sketch():
    a = torch.from_numpy(A).float()
    out, rep = coded_matmul(a, torch.from_numpy(B).float(), workers=4, code="polar", sketch=False)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert rep.decoded and _rel(out.double().numpy()) < 1e-5


def test_mixer_is_orthonormal_for_both_kinds():
    for m, k in [(60, 4), (60, 6)]:
        mix = RowMixer(m, k, seed=0)
        x = torch.from_numpy(A)
        y = mix.forward(x)
        assert y.shape[0] % k == 0
        np.testing.assert_allclose(mix.adjoint(y)[:m].numpy(), A, atol=1e-12)
        np.testing.assert_allclose(y.norm().item(), np.linalg.norm(A), rtol=1e-12)


def _stuck(pattern):
    """Delays that let exactly the workers in ``pattern`` answer before a 1 s timeout."""
    return [0.0 if p else 10.0 for p in pattern]


def test_anytime_estimate_is_unbiased_over_sketches():
    # polar N=8, K=4: workers {6, 7} give back 2 of the 4 blocks, so no decoding
    delays = _stuck([0, 0, 0, 0, 0, 0, 1, 1])
    ests, errs = [], []
    for seed in range(300):
        out, rep = coded_matmul(A, B, workers=8, delays=delays, timeout=1.0, seed=seed)
        assert rep.status == "estimated" and rep.recovered_blocks == 2
        ests.append(out)
        errs.append(_rel(out))
    assert np.mean(errs) > 0.5  # a single estimate from half the blocks is rough ...
    assert _rel(np.mean(ests, axis=0)) < 0.15  # ... but unbiased: the mean converges


def test_anytime_error_shrinks_and_error_bar_tracks_it():
    # MDS-free setting: uncoded, so the number of recovered blocks = answers
    mean_err, mean_bar = [], []
    for answered in (2, 4, 6, 7):
        pattern = [1] * answered + [0] * (8 - answered)
        errs, bars = [], []
        for seed in range(40):
            out, rep = coded_matmul(
                A, B, workers=8, code="uncoded", delays=_stuck(pattern), timeout=1.0, seed=seed
            )
            errs.append(_rel(out))
            bars.append(rep.relative_error_estimate)
        mean_err.append(np.mean(errs))
        mean_bar.append(np.mean(bars))
    assert np.all(np.diff(mean_err) < 0)
    for e, b in zip(mean_err, mean_bar, strict=True):
        assert 0.5 * e < b < 2.0 * e  # the error bar is calibrated within a factor two
    # with an orthonormal mixing and fraction f of the blocks, E err^2 = (1/f - 1) ||C||^2
    assert mean_err[1] == pytest.approx(1.0, abs=0.15)


def test_thread_executor_really_waits_only_for_the_fast_workers():
    delays = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 30.0, 30.0]
    with ThreadExecutor(max_workers=8) as ex:
        out, rep = coded_matmul(A, B, workers=8, code="mds", executor=ex, delays=delays)
    assert rep.decoded and _rel(out) < 1e-8
    assert rep.elapsed < 10.0 and {6, 7} <= set(rep.cancelled)
    assert set(rep.answered) <= set(range(6)) and len(rep.answered) >= 4


def test_nobody_answers_raises_and_bad_inputs():
    with pytest.raises(RuntimeError, match="no worker answered"):
        coded_matmul(A, B, workers=4, delays=[5.0] * 4, timeout=1.0)
    with pytest.raises(ValueError, match="B must have 12 rows"):
        coded_matmul(A, B.T)
    with pytest.raises(ValueError, match="A must be a 2-D"):
        coded_matmul(A[0], B)
    with pytest.raises(TypeError, match="A must be"):
        coded_matmul(A.tolist(), B)
    with pytest.raises(ValueError, match="code must be one of"):
        coded_matmul(A, B, code="ldpc")
    with pytest.raises(ValueError, match="power of two"):
        coded_matmul(A, B, workers=6, code="polar")
    with pytest.raises(ValueError, match="device"):
        coded_matmul(A, B, device="tpu")


def test_a_code_object_can_be_passed():
    from mrsolve.distributed.polar import PolarCode

    code = PolarCode(16, 12, design_erasure=0.1)
    out, rep = coded_matmul(A, B, code=code, fail=[15])
    assert rep.decoded and rep.workers == 16 and rep.k == 12 and _rel(out) < 1e-8
    with pytest.raises(ValueError, match="must match the given code"):
        coded_matmul(A, B, code=code, workers=8)


def test_without_sketch_undecoded_rows_are_zero_and_flagged_partial():
    # uncoded, 8 blocks of ~8 rows: workers 0-5 answer, 6 and 7 straggle past the timeout
    out, rep = coded_matmul(
        A, B, workers=8, code="uncoded", sketch=False, delays=_stuck([1] * 6 + [0, 0]), timeout=1.0
    )
    assert rep.status == "partial" and rep.recovered_blocks == 6
    rows = 60 // 8 + 1  # 8 rows per block after padding 60 -> 64
    np.testing.assert_allclose(out[: 6 * rows], C[: 6 * rows], atol=1e-12)
    assert (out[6 * rows :] == 0).all()
