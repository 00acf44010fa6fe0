"""Scanner geometry: written into and read back from ISMRMRD acquisition headers (oblique
slices, blade-rotated or fixed read directions), carried into the output's affine."""

from dataclasses import replace

import ismrmrd
import numpy as np
import pytest

from mrsolve.data.ismrmrd_io import read_ismrmrd, read_records, write_exam
from mrsolve.data.results import read_result
from mrsolve.data.simulate import simulate
from mrsolve.propeller.scanner_geometry import SliceGeometry, slice_affine, stack_affine
from mrsolve.recon.commands import reconstruct_file

ALPHA = np.deg2rad(20.0)  # oblique: rotated about the LPS x (left) axis


def _oblique(z_mm: float = 0.0) -> SliceGeometry:
    y_dir = (0.0, np.cos(ALPHA), -np.sin(ALPHA))
    normal = np.cross((1.0, 0.0, 0.0), y_dir)
    return SliceGeometry(
        position_mm=tuple(np.array([12.0, -7.5, 30.0]) + z_mm * normal),
        x_dir=(1.0, 0.0, 0.0),
        y_dir=y_dir,
        slice_thickness_mm=3.0,
    )


@pytest.fixture(scope="module")
def oblique_exam(tmp_path_factory):
    folder = tmp_path_factory.mktemp("geometry")
    sims = [simulate(size=16, n_blades=4, n_lines=6, n_coils=2, seed=s) for s in range(2)]
    scans = [replace(sim.scan, geometry=_oblique(4.0 * s)) for s, sim in enumerate(sims)]
    return write_exam(folder / "raw.h5", scans), scans


def test_geometry_round_trip_through_blade_rotated_headers(oblique_exam):
    path, scans = oblique_exam
    _, rows = read_records(path)
    heads = rows["head"][rows["head"]["number_of_samples"] > 0]
    imaging = heads[heads["flags"] & (1 << 18) == 0]
    # per blade the read direction rotates in the oblique plane: never along the normal
    normal = _oblique().normal
    assert np.abs(imaging["read_dir"] @ normal).max() < 1e-6
    assert len({tuple(np.round(r, 4)) for r in imaging["read_dir"]}) == 4  # one per blade
    for index, scan in enumerate(scans):
        back = read_ismrmrd(path, slice=index)
        np.testing.assert_allclose(back.geometry.position_mm, scan.geometry.position_mm, atol=1e-4)
        np.testing.assert_allclose(back.geometry.x_dir, scan.geometry.x_dir, atol=1e-6)
        np.testing.assert_allclose(back.geometry.y_dir, scan.geometry.y_dir, atol=1e-6)
        assert back.geometry.slice_thickness_mm == pytest.approx(3.0)


def test_fixed_directions_written_by_the_ismrmrd_package(tmp_path):
    """Another writer stores the image axes as read/phase directions on every line."""
    sim = simulate(size=16, n_blades=3, n_lines=6, n_coils=2)
    path = write_exam(tmp_path / "ours.h5", [sim.scan])
    xml, rows = read_records(path)
    with ismrmrd.Dataset(str(tmp_path / "fixed.h5"), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(xml)
        for row in rows:
            head = row["head"]
            acq = ismrmrd.Acquisition.from_array(
                row["data"].view(np.complex64).reshape(head["active_channels"], -1),
                row["traj"].reshape(head["number_of_samples"], head["trajectory_dimensions"]),
            )
            for name in ("sample_time_us", "center_sample", "flags"):
                setattr(acq, name, head[name].item())
            acq.idx.set = int(head["idx"]["set"])
            acq.idx.kspace_encode_step_1 = int(head["idx"]["kspace_encode_step_1"])
            acq.read_dir[:] = (0.0, 0.0, -1.0)  # coronal: columns run feet-wards ...
            acq.phase_dir[:] = (1.0, 0.0, 0.0)  # ... rows to the patient's left
            acq.position[:] = (0.0, 25.0, 0.0)
            dset.append_acquisition(acq)
    back = read_ismrmrd(tmp_path / "fixed.h5")
    np.testing.assert_allclose(back.geometry.x_dir, (0, 0, -1), atol=1e-6)
    np.testing.assert_allclose(back.geometry.y_dir, (1, 0, 0), atol=1e-6)
    np.testing.assert_allclose(back.geometry.position_mm, (0, 25, 0), atol=1e-6)


def test_output_affine_maps_a_voxel_to_its_scanner_position(oblique_exam, tmp_path):
    path, scans = oblique_exam
    reconstruct_file(path, tmp_path / "out.h5", "gridding")
    rec = read_result(tmp_path / "out.h5")
    assert rec.affine_lps.shape == (2, 4, 4)
    fov_y, fov_x = scans[0].fov_mm  # 16 x 16 pixels
    for s in range(2):
        g = scans[s].geometry
        # pixel (row 3, column 11): 3 rows and 11 columns from the corner, centre at (8, 8)
        want = (
            np.array(g.position_mm)
            + (11 - 8) * fov_x / 16 * np.array(g.x_dir)
            + (3 - 8) * fov_y / 16 * np.array(g.y_dir)
        )
        np.testing.assert_allclose((rec.affine_lps[s] @ [11, 3, 0, 1])[:3], want, atol=1e-4)
    stacked = stack_affine(rec.affine_lps)  # slices 4 mm apart along the normal
    np.testing.assert_allclose(stacked[:3, 2], 4.0 * _oblique().normal, atol=1e-4)


def test_geometry_rejects_bad_input():
    with pytest.raises(ValueError, match="x_dir must be a unit vector"):
        SliceGeometry(x_dir=(2.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="orthogonal"):
        SliceGeometry(x_dir=(1.0, 0.0, 0.0), y_dir=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="slice_thickness_mm"):
        SliceGeometry(slice_thickness_mm=0.0)
    sim = simulate(size=8, n_blades=2, n_lines=4, n_coils=1)
    with pytest.raises(TypeError, match="geometry must be a SliceGeometry"):
        replace(sim.scan, geometry="axial")
    assert stack_affine(np.stack([slice_affine(SliceGeometry(), (8, 8), (80.0, 80.0))] * 2)) is None
