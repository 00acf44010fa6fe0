import pytest
import torch

from mrsolve.data.phantom import (
    Phantom,
    dynamic_frames,
    field_map,
    make_phantom,
    random_rigid_motion,
    with_motion,
)


def test_make_phantom_is_seeded_and_well_formed():
    a, b = make_phantom(32, n_coils=3, seed=4), make_phantom(32, n_coils=3, seed=4)
    torch.testing.assert_close(a.water, b.water)
    torch.testing.assert_close(a.field_map_hz, b.field_map_hz)
    assert not torch.equal(make_phantom(32, n_coils=3, seed=5).fat, a.fat)
    assert a.water.dtype == torch.complex64 and a.field_map_hz.dtype == torch.float32
    assert a.coil_maps.shape == (3, 32, 32) and a.mask.dtype == torch.bool
    assert ((a.water.abs() + a.fat.abs()) > 0)[a.mask].all()
    assert (a.water[~a.mask] == 0).all() and (a.fat[~a.mask] == 0).all()


def test_field_map_is_smooth_with_zero_mean_and_set_maximum():
    mask = make_phantom(48, n_coils=1).mask
    psi = field_map((48, 48), 80.0, mask, seed=2)
    assert psi[mask].abs().max().item() == pytest.approx(80.0, rel=1e-5)
    assert abs(psi[mask].mean().item()) < 1e-3
    assert (psi[1:] - psi[:-1]).abs().max() < 0.25 * 80
    assert (field_map((8, 8), 0.0) == 0).all()
    with pytest.raises(ValueError, match="max_offres_hz"):
        field_map((8, 8), -1.0)


def test_dynamic_disc_moves_and_brightens():
    ph = make_phantom(32, n_coils=1, n_frames=3)
    assert ph.n_frames == 3 and ph.water.shape == (3, 32, 32)
    assert ph.fat_fraction().shape == (3, 32, 32)
    zero = torch.zeros(32, 32, dtype=torch.complex64)
    water, fat = dynamic_frames(zero, zero, 3, seed=1)
    cols = [torch.nonzero(water[t].abs() > 0)[:, 1].float().mean().item() for t in range(3)]
    assert cols[0] < cols[1] < cols[2]
    peaks = [water[t].abs().max().item() for t in range(3)]
    assert peaks == pytest.approx([0.5, 0.75, 1.0])
    assert (fat == 0).all()


def test_motion_and_validation():
    rot, shift = random_rigid_motion(6, 4.0, 1.5, seed=1)
    assert rot.shape == (6,) and shift.shape == (6, 2)
    assert rot.abs().max() <= 4 and shift.abs().max() <= 1.5
    ph = with_motion(make_phantom(16, n_coils=1), rot, shift)
    assert ph.has_motion
    with pytest.raises(ValueError, match="shift_px"):
        Phantom(ph.water, ph.fat, ph.field_map_hz, ph.mask, rotation_deg=rot, shift_px=shift[:2])
    with pytest.raises(ValueError, match="fat must have the shape"):
        Phantom(ph.water, ph.fat[:4], ph.field_map_hz, ph.mask)
    with pytest.raises(ValueError, match="field_map_hz"):
        Phantom(ph.water, ph.fat, ph.field_map_hz[:3], ph.mask)
    with pytest.raises(ValueError, match="size"):
        make_phantom(4)
