import numpy as np
import pytest

from mrsolve.data.anatomy import draw_anatomy, loop_coils


@pytest.mark.parametrize("kind", ["ellipses", "brain"])
def test_anatomy_has_fat_layers_partial_fat_texture_and_scaled_field(kind):
    a = draw_anatomy(kind, 128, 180.0, np.random.default_rng(4))
    assert a.water.shape == a.fat.shape == a.field_map_hz.shape == a.mask.shape == (128, 128)
    assert (a.water >= 0).all() and (a.fat >= 0).all()
    assert not ((a.water + a.fat) > 0)[~a.mask].any()
    ff = a.fat / np.maximum(a.water + a.fat, 1e-12)
    signal = a.mask & ((a.water + a.fat) > 0)
    assert (ff[signal] > 0.8).sum() > 50  # subcutaneous fat
    assert ((ff[signal] > 0.04) & (ff[signal] < 0.65)).sum() > 10  # partial fat fraction
    assert np.abs(a.field_map_hz[a.mask]).max() == pytest.approx(180.0)
    # textured, not flat: many distinct water levels in the pure-water tissue
    assert np.unique(np.round(a.water[signal & (ff < 0.01)], 4)).size > 100


def test_anatomy_is_reproducible_and_rejects_unknown_kind():
    a = draw_anatomy("ellipses", 64, 100.0, np.random.default_rng(1))
    b = draw_anatomy("ellipses", 64, 100.0, np.random.default_rng(1))
    np.testing.assert_array_equal(a.water, b.water)
    np.testing.assert_array_equal(a.field_map_hz, b.field_map_hz)
    with pytest.raises(ValueError, match="kind"):
        draw_anatomy("cube", 64, 100.0, np.random.default_rng(1))


def test_field_map_has_a_sharp_step_or_bump_beyond_a_polynomial():
    # A cubic polynomial's second differences are tiny on a 256 grid; bumps and steps are not.
    a = draw_anatomy("ellipses", 256, 250.0, np.random.default_rng(7))
    second = np.abs(np.diff(a.field_map_hz, 2, axis=1))[a.mask[:, 1:-1]]
    assert second.max() > 1.0


def test_loop_coils_are_normalized_distinct_and_smooth():
    maps = loop_coils(64, 6, np.random.default_rng(0))
    assert maps.shape == (6, 64, 64)
    np.testing.assert_allclose(
        np.sqrt((np.abs(maps) ** 2).sum(0)), 1.0, rtol=1e-12
    )  # prescan-normalized
    peaks = {np.unravel_index(np.argmax(np.abs(m)), m.shape) for m in maps}
    assert len(peaks) == 6  # loops at different positions
    u = (np.arange(64) - 32) / 64
    inside = (u[None, 1:] ** 2 + u[:, None] ** 2) < 0.35**2  # where the object lies
    step = np.abs(np.diff(maps, axis=-1))[:, inside].max()
    assert step < 0.1  # smooth over the object: no jump between neighbouring pixels
