import numpy as np
import pytest
import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.dft import DFT
from mrsolve.propeller.gridding import grid_coil_images, gridding, low_resolution_maps
from mrsolve.recon.metrics import nrmse
from mrsolve.solvers.validation import resolve_device


@pytest.fixture(scope="module")
def on_resonance():
    """Exact per-sample simulation (no off-resonance, no fat, no noise), 32 x 32, 2 coils."""
    return simulate(size=32, n_blades=8, n_lines=12, n_coils=2, max_offres_hz=0.0, fat=False)


def test_gridding_reproduces_an_on_resonance_phantom(on_resonance):
    scan, truth = on_resonance.scan, on_resonance.truth
    # root-sum-of-squares: magnitude only; the error is the truncation of k-space to
    # the sampled disc (Gibbs ringing at the phantom's sharp edges)
    assert nrmse(gridding(scan), truth.image) < 0.12
    # SENSE-1 with the true maps keeps the phase and the scale: no scale fit needed
    image = gridding(scan, coil_maps=truth.coil_maps)
    assert nrmse(image, truth.image) < 0.1
    assert float((image - truth.image).norm() / truth.image.norm()) < 0.1
    # Pipe-Menon density compensation does as well as the analytic one
    assert nrmse(gridding(scan, dcf="pipe-menon", coil_maps=truth.coil_maps), truth.image) < 0.1


def _in_reference_phase(maps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """maps rotated per pixel so that a^H S(r) > 0, a the dominant eigenvector of
    sum_r w S S^H (the documented convention), computed independently in numpy."""
    s = maps.numpy().astype(np.complex128)
    flat = s.reshape(s.shape[0], -1)
    a = np.linalg.eigh((flat * weights.numpy().reshape(1, -1)) @ flat.conj().T)[1][:, -1]
    return torch.from_numpy(s * np.exp(-1j * np.angle(np.einsum("c,cyx->yx", a.conj(), s))))


@pytest.mark.parametrize("method", ["espirit", "walsh"])
def test_estimated_maps_recover_the_simulated_coils(on_resonance, method):
    scan, truth = on_resonance.scan, on_resonance.truth
    maps = low_resolution_maps(scan, method)
    assert maps.shape == truth.coil_maps.shape and maps.dtype == torch.complex64
    inside = truth.mask
    assert torch.allclose(maps.abs().square().sum(0)[inside], torch.ones(()), atol=1e-4)
    # the simulator's (normalized birdcage) maps, up to the convention's phase per pixel
    reference = _in_reference_phase(truth.coil_maps, truth.image.abs().square())
    est = maps.to(torch.complex128)[:, inside]
    ref = reference[:, inside]
    assert float((est.conj() * ref).sum().abs() / (est.norm() * ref.norm())) > 0.99
    overlap = (ref.conj() * est).sum(0).abs()
    assert float(overlap.min()) > (0.99 if method == "espirit" else 0.9)
    # combining with them reproduces the object about as well as the true maps do (the
    # maps differ outside the object, where the true ones carry the k-space truncation's
    # ringing differently)
    ideal = nrmse(gridding(scan, coil_maps=truth.coil_maps), truth.image)
    assert nrmse(gridding(scan, coil_maps=method), truth.image) < ideal + 0.02


def test_nufft_and_exact_dft_grid_the_same_images(on_resonance):
    scan = on_resonance.scan
    dcf = torch.rand(scan.traj.shape[:-1], generator=torch.Generator().manual_seed(0))
    exact = grid_coil_images(scan.kspace, scan.traj, scan.image_shape, dcf, operator=DFT)
    fast = grid_coil_images(scan.kspace, scan.traj, scan.image_shape, dcf)
    assert float((fast - exact).norm() / exact.norm()) < 1e-3


def test_callback_sees_every_step_and_the_image(on_resonance):
    calls = []
    image = gridding(on_resonance.scan, callback=lambda s, t, x: calls.append((s, t, x)))
    assert [(s, t) for s, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert calls[-1][2] is image
    # "auto" picks CUDA when present, else the CPU; the result lives there
    auto = gridding(on_resonance.scan, device="auto")
    assert auto.device.type == resolve_device("auto").type
    torch.testing.assert_close(auto.cpu(), image, atol=1e-4, rtol=1e-4)


def test_bad_inputs_name_the_argument(on_resonance):
    scan = on_resonance.scan
    with pytest.raises(TypeError, match="scan must be a mrsolve"):
        gridding(scan.kspace)
    with pytest.raises(ValueError, match="coil_maps must have shape"):
        gridding(scan, coil_maps=torch.ones(3, 32, 32, dtype=torch.complex64))
    with pytest.raises(ValueError, match="dcf must be one of"):
        gridding(scan, dcf="voronoi")
    with pytest.raises(ValueError, match="coil map method must be one of"):
        gridding(scan, coil_maps="sum")
    with pytest.raises(ValueError, match="device must be"):
        gridding(scan, device="tpu")
    with pytest.raises(ValueError, match="dcf must have shape"):
        grid_coil_images(scan.kspace, scan.traj, scan.image_shape, torch.ones(3))
    with pytest.raises(ValueError, match="kspace must have shape"):
        grid_coil_images(scan.kspace[0, 0], scan.traj, scan.image_shape, torch.ones(3))


def test_maps_of_a_multi_echo_scan_are_calibrated_on_its_first_echo(on_resonance):
    """A second echo in anti-phase over half the object (as fat turns between echoes):
    gridded together, the echoes cancel there and Walsh maps from the sum have holes;
    the maps are calibrated on the first echo and have none."""
    from dataclasses import replace

    from mrsolve.propeller.nufft import NUFFT

    scan, truth = on_resonance.scan, on_resonance.truth
    flip = torch.ones(scan.image_shape)
    flip[:, scan.image_shape[1] // 2 :] = -1
    op = NUFFT(scan.traj, scan.image_shape, batch_shape=(scan.n_coils,))
    echoes = [op(truth.coil_maps * (truth.image * sign)) for sign in (1.0, flip)]
    b = scan.n_blades
    two = replace(
        scan,
        kspace=torch.cat(echoes, dim=1),
        traj=scan.traj.repeat(2, 1, 1, 1),
        times=torch.cat([scan.times, scan.times + 2e-3]),
        frame=scan.frame.repeat(2),
        timestamps_s=scan.timestamps_s.repeat(2),
        echo=torch.arange(2).repeat_interleave(b),
        echo_te_s=(scan.te_s, scan.te_s + 2e-3),
    )
    inside = truth.mask
    maps = low_resolution_maps(two, "walsh")
    together = low_resolution_maps(
        replace(two, echo=torch.zeros(2 * b, dtype=torch.int64)), "walsh"
    )
    assert float(maps.norm(dim=0)[inside].min()) > 0.99
    assert float(together.norm(dim=0)[inside].min()) < 0.5  # the holes this avoids
    reference = _in_reference_phase(truth.coil_maps, truth.image.abs().square())
    overlap = (reference[:, inside].conj() * maps.to(torch.complex128)[:, inside]).sum(0).abs()
    assert float(overlap.min()) > 0.9
