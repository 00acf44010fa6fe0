"""PROPELLER physics: geometry, timing, NUFFT, coils, fat spectra, classical reconstructions."""
