"""File > Open Sample: a simulated water/fat PROPELLER phantom (raw k-space and truth)."""

from __future__ import annotations

from mrsolve.data.simulate import simulate
from mrsolve.gui._layers import LayerData, raw_layers, result_layers


def phantom_sample(
    size: int = 64, n_coils: int = 4, n_blades: int = 12, n_lines: int = 16, seed: int = 0
) -> list[LayerData]:
    """Layers of a simulated 3 T scan with 1% noise (gridding, blades; the scan travels in
    their metadata) and of its ground truth (image, water, fat, fat fraction, field map)."""
    sim = simulate(
        size=size, n_coils=n_coils, n_blades=n_blades, n_lines=n_lines, noise=0.01, seed=seed
    )
    return raw_layers(sim.scan, "phantom") + result_layers(sim.truth, "phantom truth")
