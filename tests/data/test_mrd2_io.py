"""MRD 2 input: a stream written with mrd-python's own API and writer reconstructs to the
ISMRMRD 1 file's image; headers survive ISMRMRD 1 <-> MRD 2 conversion."""

import mrd
import numpy as np
import pytest
import torch

from mrsolve.data.ismrmrd_io import read_ismrmrd, read_records, write_ismrmrd
from mrsolve.data.mrd2_io import header_to_mrd, header_to_xml, write_mrd2
from mrsolve.data.simulate import simulate
from mrsolve.recon.methods import reconstruct


def _mrd_stream(path, scan):
    """The scan written with mrd-python's classes and BinaryMrdWriter (none of our code)."""
    ny, nx = scan.image_shape
    space = mrd.EncodingSpaceType(
        matrix_size=mrd.MatrixSizeType(x=nx, y=ny, z=1),
        field_of_view_mm=mrd.FieldOfViewMm(x=scan.fov_mm[1], y=scan.fov_mm[0], z=5.0),
    )
    header = mrd.Header(
        experimental_conditions=mrd.ExperimentalConditionsType(
            h1resonance_frequency_hz=127_731_000
        ),
        acquisition_system_information=mrd.AcquisitionSystemInformationType(
            system_field_strength_t=scan.field_strength_t
        ),
        encoding=[
            mrd.EncodingType(
                encoded_space=space,
                recon_space=space,
                encoding_limits=mrd.EncodingLimitsType(
                    set=mrd.LimitType(minimum=0, maximum=scan.n_blades - 1, center=0)
                ),
                trajectory=mrd.Trajectory.OTHER,
                trajectory_description=mrd.TrajectoryDescriptionType(identifier="propeller"),
            )
        ],
        sequence_parameters=mrd.SequenceParametersType(
            t_e=[scan.te_s * 1e3], sequence_type="SpinEcho"
        ),
    )
    kspace, traj = scan.kspace.numpy(), scan.traj.numpy()
    angles = scan.angles.numpy()

    def items():
        noise = scan.noise.numpy()
        yield mrd.StreamItem.Acquisition(
            mrd.Acquisition(
                head=mrd.AcquisitionHeader(flags=mrd.AcquisitionFlags.IS_NOISE_MEASUREMENT),
                data=noise,
            )
        )
        for b in range(scan.n_blades):
            c, s = np.cos(angles[b]), np.sin(angles[b])
            for line in range(scan.n_lines):
                head = mrd.AcquisitionHeader(
                    idx=mrd.EncodingCounters(set=b, kspace_encode_step_1=line),
                    center_sample=scan.center_sample,
                    sample_time_us=scan.dwell_s * 1e6,
                    read_dir=np.array([c, s, 0], np.float32),
                    phase_dir=np.array([-s, c, 0], np.float32),
                    slice_dir=np.array([0, 0, 1], np.float32),
                    channel_order=list(range(scan.n_coils)),
                )
                yield mrd.StreamItem.Acquisition(
                    mrd.Acquisition(
                        head=head, data=kspace[:, b, line], trajectory=traj[b, line].T.copy()
                    )
                )

    with mrd.BinaryMrdWriter(str(path)) as writer:
        writer.write_header(header)
        writer.write_data(items())


@pytest.fixture(scope="module")
def sim():
    return simulate(
        size=16, n_blades=4, n_lines=6, n_coils=2, noise=0.01, n_noise_samples=256, seed=3
    )


def test_mrd2_from_mrd_python_reconstructs_like_ismrmrd1(sim, tmp_path):
    _mrd_stream(tmp_path / "raw.mrd", sim.scan)
    from_mrd = read_ismrmrd(tmp_path / "raw.mrd")
    from_h5 = read_ismrmrd(write_ismrmrd(tmp_path / "raw.h5", sim.scan))
    torch.testing.assert_close(from_mrd.kspace, from_h5.kspace)
    torch.testing.assert_close(from_mrd.times, from_h5.times)
    np.testing.assert_allclose(from_mrd.geometry.x_dir, from_h5.geometry.x_dir, atol=1e-6)
    a = reconstruct(from_mrd, "gridding").image
    b = reconstruct(from_h5, "gridding").image
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * float(b.abs().max()))


def test_conversion_keeps_header_and_records(sim, tmp_path):
    xml, rows = read_records(write_ismrmrd(tmp_path / "raw.h5", sim.scan))
    assert header_to_xml(header_to_mrd(xml)) == xml
    write_mrd2(tmp_path / "raw.mrd", xml, rows)
    xml2, rows2 = read_records(tmp_path / "raw.mrd")
    assert xml2 == xml
    heads = rows["head"]
    np.testing.assert_array_equal(rows2["head"].astype(heads.dtype), heads)
    for a, b in zip(rows2, rows, strict=True):
        np.testing.assert_array_equal(a["data"], b["data"])
        np.testing.assert_array_equal(a["traj"], b["traj"])


def test_bad_mrd2_input(tmp_path):
    (tmp_path / "short.mrd").write_bytes(b"yardl\x01\x02")
    with pytest.raises(ValueError, match="MRD 2"):
        read_ismrmrd(tmp_path / "short.mrd")
    (tmp_path / "text.mrd").write_text("hello")
    with pytest.raises(ValueError, match="nor an MRD 2"):
        read_ismrmrd(tmp_path / "text.mrd")
