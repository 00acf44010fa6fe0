"""Data layer: ISMRMRD I/O, the output file format, phantoms and the exact simulator.

Public functions (import from the submodules, e.g. ``from mrsolve.data.simulate import simulate``):

simulate.py
    simulate(config: SimulationConfig | None = None, *, phantom: Phantom | None = None,
             device="cpu", **options) -> Simulation(scan: Scan, truth: GroundTruth,
             phantom: Phantom, config: SimulationConfig)
        options = SimulationConfig fields: size, n_blades, n_lines, oversampling,
        angle_order, n_coils, field_strength_t, sequence ("spin_echo"|"gradient_echo"),
        te_s, dwell_s, max_offres_hz, fat, fat_model, max_rotation_deg, max_shift_px,
        n_frames, blade_interval_s, noise (relative std), n_noise_samples,
        noise_correlation, fov_mm, seed.
    exact_kspace(phantom, traj (B,L,M,2), times (B,L,M), frame=None, spectrum=None,
                 device="cpu") -> (C,B,L,M) complex64   # exact per-sample signal model
    ground_truth(phantom, noise_covariance=None, config=None) -> GroundTruth
ismrmrd_io.py
    write_ismrmrd(path, scan: Scan, title="mrsolve PROPELLER") -> Path   # atomic
    read_ismrmrd(path) -> Scan          # FileNotFoundError / ValueError naming the problem
        scan.extra: header_parser ("ismrmrd"|"etree"), trajectory_identifier, propeller
        (bool), assumed (header defaults used), trajectory_rescaled (if it was in [-0.5, 0.5))
    parse_header(xml) -> HeaderFacts    # strict ismrmrd parser, xml.etree fallback
results.py
    Reconstruction(image, water=None, fat=None, fat_fraction=None, field_map_hz=None,
                   spectral_volume=None, frequencies_hz=None, method="", config={},
                   input_sha256="", runtime_s=0.0, device="cpu", mrsolve_version=...)
    write_result(path, rec: Reconstruction) -> Path   # atomic (temp name + os.replace)
    read_result(path) -> Reconstruction
    GroundTruth(image, water, fat, fat_fraction, field_map_hz, mask, coil_maps=None,
                noise_covariance=None, config={})
    write_truth(path, truth: GroundTruth) -> Path; read_truth(path) -> GroundTruth
    sha256_file(path) -> str
phantom.py
    Phantom(water, fat, field_map_hz, mask, coil_maps=None, rotation_deg=None, shift_px=None)
    make_phantom(size=128, n_coils=8, max_offres_hz=100.0, fat=True, n_frames=1, seed=0,
                 coil_radius=1.5, device="cpu") -> Phantom
    water_fat_object(image_shape, seed=0) -> (water, fat, mask)
    field_map(image_shape, max_offres_hz, mask=None, seed=0) -> (ny, nx) float32 Hz
    random_rigid_motion(n_blades, max_rotation_deg, max_shift_px, seed=0) -> (rot, shift)
    dynamic_frames(water, fat, n_frames, seed=0) -> (T,ny,nx) water, fat
    with_motion(phantom, rotation_deg, shift_px) -> Phantom
files.py
    atomic_output(path) (context manager yielding a temp path), check_hdf5(path), sha256_file(path)

Sign convention (exact model, methods/propeller.md): an object at off-resonance f appears
displaced by -f * M * dt pixels along each blade's readout direction (cos theta, sin theta).
"""
