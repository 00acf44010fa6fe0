"""ISMRMRD round trips through the `ismrmrd` package, tolerance and error cases."""

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import pytest
import torch

from mrsolve.data.files import sha256_file
from mrsolve.data.ismrmrd_io import parse_header, read_ismrmrd, write_ismrmrd
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import readout_times

N, B, L, C = 8, 3, 4, 2


def _scan(n_frames=1, noise=True, sequence="gradient_echo"):
    geom = BladeGeometry(B, L, N, oversampling=2.0)
    m = geom.n_readout
    rng = np.random.default_rng(0)
    nb = B * n_frames
    data = rng.standard_normal((C, nb, L, m)) + 1j * rng.standard_normal((C, nb, L, m))
    t = readout_times(m, geom.center_sample, 25e-6, sequence, te_s=2.5e-3)
    noise_arr = rng.standard_normal((C, 300)) + 1j * rng.standard_normal((C, 300))
    return Scan(
        kspace=torch.from_numpy(data.astype(np.complex64)),
        traj=geom.trajectory().repeat(n_frames, 1, 1, 1),
        times=t.expand(nb, L, m).contiguous(),
        image_shape=(N, N),
        dwell_s=25e-6,
        center_sample=geom.center_sample,
        te_s=2.5e-3,
        sequence=sequence,
        field_strength_t=1.5,
        fov_mm=(240.0, 250.0),
        frame=torch.arange(n_frames).repeat_interleave(B),
        timestamps_s=torch.arange(nb) * 0.25,
        noise=torch.from_numpy(noise_arr.astype(np.complex64)) if noise else None,
    )


def _assert_same_scan(a: Scan, b: Scan):
    for name in ("kspace", "traj", "frame", "noise"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    torch.testing.assert_close(a.times, b.times, atol=1e-9, rtol=1e-5)
    torch.testing.assert_close(a.timestamps_s, b.timestamps_s, atol=1e-6, rtol=0)
    assert a.image_shape == b.image_shape and a.center_sample == b.center_sample
    assert a.sequence == b.sequence and a.fov_mm == b.fov_mm
    assert a.dwell_s == pytest.approx(b.dwell_s) and a.te_s == pytest.approx(b.te_s)
    assert a.field_strength_t == pytest.approx(b.field_strength_t)


def test_round_trip_ours(tmp_path):
    scan = _scan(n_frames=2)
    path = write_ismrmrd(tmp_path / "raw.h5", scan)
    back = read_ismrmrd(path)
    _assert_same_scan(scan, back)
    assert back.extra["header_parser"] == "ismrmrd" and back.extra["propeller"]
    assert [p.name for p in tmp_path.iterdir()] == ["raw.h5"]  # no temporary left


def test_written_file_read_by_ismrmrd_package(tmp_path):
    scan = _scan(n_frames=2)
    write_ismrmrd(tmp_path / "raw.h5", scan)
    with ismrmrd.Dataset(str(tmp_path / "raw.h5"), "dataset", mode="r") as dset:
        hdr = xsd.CreateFromDocument(dset.read_xml_header())
        enc = hdr.encoding[0]
        assert enc.trajectory == xsd.trajectoryType.OTHER
        assert enc.trajectoryDescription.identifier == "propeller"
        assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (N, N)
        assert (enc.encodedSpace.fieldOfView_mm.x, enc.encodedSpace.fieldOfView_mm.y) == (250, 240)
        assert enc.encodingLimits.set.maximum == B - 1
        assert enc.encodingLimits.kspace_encoding_step_1.maximum == L - 1
        assert enc.encodingLimits.repetition.maximum == 1
        assert hdr.sequenceParameters.TE == [pytest.approx(2.5)]
        assert hdr.sequenceParameters.sequence_type == "GradientEcho"
        assert hdr.acquisitionSystemInformation.systemFieldStrength_T == 1.5
        acqs = [dset.read_acquisition(i) for i in range(dset.number_of_acquisitions())]
    noise = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    lines = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    np.testing.assert_array_equal(np.concatenate([a.data for a in noise], 1), scan.noise.numpy())
    assert len(lines) == 2 * B * L
    for i, acq in enumerate(lines):
        b, line = divmod(i, L)
        assert (acq.idx.set, acq.idx.kspace_encode_step_1, acq.idx.repetition) == (
            b % B,
            line,
            b // B,
        )
        np.testing.assert_array_equal(acq.data, scan.kspace[:, b, line].numpy())
        np.testing.assert_array_equal(acq.traj, scan.traj[b, line].numpy())
        assert acq.sample_time_us == pytest.approx(25.0)
        assert acq.center_sample == scan.center_sample
        assert acq.acquisition_time_stamp == round(b * 0.25 / 2.5e-3)


def _header(identifier="propellor", trajectory=xsd.trajectoryType.OTHER, n_sets=B, n_lines=L):
    space = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=N, y=N, z=1),
        fieldOfView_mm=xsd.fieldOfViewMm(x=200.0, y=200.0, z=4.0),
    )
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=n_lines - 1, center=n_lines // 2),
        set=xsd.limitType(minimum=0, maximum=n_sets - 1, center=0),
    )
    hdr = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=127_731_000),
        encoding=[
            xsd.encodingType(
                encodedSpace=space,
                reconSpace=space,
                encodingLimits=limits,
                trajectory=trajectory,
                trajectoryDescription=xsd.trajectoryDescriptionType(identifier=identifier),
            )
        ],
        sequenceParameters=xsd.sequenceParametersType(TE=[90.0], sequence_type="SpinEcho"),
    )
    return xsd.ToXML(hdr)


def _write_other_tool(
    path, scan, xml=None, traj_dims=2, lines_reversed=True, nan=False, drop_line=False
):
    """Write a file the way another tool would: ismrmrd's own per-acquisition API."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(xml or _header())
        acq = ismrmrd.Acquisition.from_array(scan.noise.numpy())
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        dset.append_acquisition(acq)
        for b in range(scan.n_blades):
            order = range(scan.n_lines - 1, -1, -1) if lines_reversed else range(scan.n_lines)
            for line in order:
                if drop_line and (b, line) == (1, 0):
                    continue
                data = scan.kspace[:, b, line].numpy().copy()
                if nan and b == 1:
                    data[0, 0] = np.nan
                traj = scan.traj[b, line].numpy()
                if traj_dims == 3:
                    traj = np.concatenate([traj, np.ones_like(traj[:, :1])], 1)
                elif traj_dims != 2:
                    traj = traj[:, :traj_dims]
                acq = ismrmrd.Acquisition.from_array(data, np.ascontiguousarray(traj))
                acq.sample_time_us = scan.dwell_s * 1e6
                acq.center_sample = scan.center_sample
                acq.acquisition_time_stamp = 1000 + 40 * b
                acq.idx.set = b
                acq.idx.kspace_encode_step_1 = line
                dset.append_acquisition(acq)


def test_file_written_by_ismrmrd_package_read_by_ours(tmp_path):
    scan = _scan(sequence="spin_echo")
    _write_other_tool(tmp_path / "other.h5", scan)
    back = read_ismrmrd(tmp_path / "other.h5")
    torch.testing.assert_close(back.kspace, scan.kspace)
    torch.testing.assert_close(back.traj, scan.traj)
    torch.testing.assert_close(back.noise, scan.noise)
    assert back.extra["trajectory_identifier"] == "propellor" and back.extra["propeller"]
    assert back.sequence == "spin_echo" and back.te_s == pytest.approx(0.09)
    assert back.field_strength_t == pytest.approx(3.0, rel=1e-4)  # from H1 frequency
    torch.testing.assert_close(back.timestamps_s, torch.arange(B) * 40 * 2.5e-3)
    torch.testing.assert_close(back.times, scan.times)


def test_radial_with_density_column_accepted_and_cartesian_rejected(tmp_path):
    scan = _scan()
    _write_other_tool(
        tmp_path / "radial.h5", scan, _header("", xsd.trajectoryType.RADIAL), traj_dims=3
    )
    torch.testing.assert_close(read_ismrmrd(tmp_path / "radial.h5").traj, scan.traj)
    _write_other_tool(tmp_path / "cart.h5", scan, _header("", xsd.trajectoryType.CARTESIAN))
    with pytest.raises(ValueError, match="trajectory must be one of"):
        read_ismrmrd(tmp_path / "cart.h5")


def test_header_rejected_by_strict_parser_is_read_leniently(tmp_path):
    scan = _scan()
    xml = _header().replace("<trajectory>", "<vendorThing>7</vendorThing><trajectory>", 1)
    with pytest.raises(Exception):  # noqa: B017 - the strict parser's own error type
        xsd.CreateFromDocument(xml)
    assert parse_header(xml).parser == "etree"
    _write_other_tool(tmp_path / "odd.h5", scan, xml)
    back = read_ismrmrd(tmp_path / "odd.h5")
    assert back.extra["header_parser"] == "etree"
    torch.testing.assert_close(back.kspace, scan.kspace)
    assert back.image_shape == (N, N) and back.fov_mm == (200.0, 200.0)
    assert back.sequence == "spin_echo" and back.te_s == pytest.approx(0.09)


def test_normalized_trajectory_is_rescaled(tmp_path):
    scan = _scan()
    scan.traj = scan.traj / N
    _write_other_tool(tmp_path / "norm.h5", scan)
    back = read_ismrmrd(tmp_path / "norm.h5")
    torch.testing.assert_close(back.traj, scan.traj * N)
    assert back.extra["trajectory_rescaled"]


def test_reading_never_modifies_the_input(tmp_path):
    path = write_ismrmrd(tmp_path / "raw.h5", _scan())
    before, mtime = sha256_file(path), path.stat().st_mtime_ns
    read_ismrmrd(path)
    assert sha256_file(path) == before and path.stat().st_mtime_ns == mtime


def test_errors(tmp_path):
    scan = _scan()
    with pytest.raises(FileNotFoundError):
        read_ismrmrd(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5"):
        read_ismrmrd(tmp_path / "text.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="no ISMRMRD dataset"):
        read_ismrmrd(tmp_path / "plain.h5")
    _write_other_tool(tmp_path / "dims.h5", scan, traj_dims=1)
    with pytest.raises(ValueError, match="trajectory_dimensions=1"):
        read_ismrmrd(tmp_path / "dims.h5")
    _write_other_tool(tmp_path / "nan.h5", scan, nan=True)
    with pytest.raises(ValueError, match="finite"):
        read_ismrmrd(tmp_path / "nan.h5")
    with ismrmrd.Dataset(str(tmp_path / "empty.h5"), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(_header())
    with pytest.raises(ValueError, match="no imaging acquisitions"):
        read_ismrmrd(tmp_path / "empty.h5")
    _write_other_tool(tmp_path / "blades.h5", scan, _header(n_sets=B + 2))
    with pytest.raises(ValueError, match=f"says {B + 2} blades"):
        read_ismrmrd(tmp_path / "blades.h5")
    _write_other_tool(tmp_path / "lines.h5", scan, _header(n_lines=L + 1))
    with pytest.raises(ValueError, match="lines per blade"):
        read_ismrmrd(tmp_path / "lines.h5")
    _write_other_tool(tmp_path / "gap.h5", scan, drop_line=True)
    with pytest.raises(ValueError, match="same lines"):
        read_ismrmrd(tmp_path / "gap.h5")
    with pytest.raises(TypeError, match="scan"):
        write_ismrmrd(tmp_path / "out.h5", "not a scan")
    with pytest.raises(ValueError, match="does not exist"):
        write_ismrmrd(tmp_path / "nowhere" / "out.h5", scan)


def test_simulated_dynamic_scan_survives_the_file(tmp_path):
    from mrsolve.data.results import read_truth, write_truth
    from mrsolve.data.simulate import simulate

    sim = simulate(
        size=16,
        n_blades=3,
        n_lines=4,
        n_coils=2,
        n_frames=2,
        noise=0.05,
        max_rotation_deg=2.0,
        max_shift_px=0.5,
        n_noise_samples=100,
    )
    back = read_ismrmrd(write_ismrmrd(tmp_path / "raw.h5", sim.scan))
    _assert_same_scan(sim.scan, back)
    assert back.extra["assumed"] == []
    truth = read_truth(write_truth(tmp_path / "truth.h5", sim.truth))
    assert truth.image.shape == (2, 16, 16) and truth.field_map_hz.shape == (16, 16)
    torch.testing.assert_close(truth.fat_fraction, sim.truth.fat_fraction)
    torch.testing.assert_close(truth.noise_covariance, sim.truth.noise_covariance)
    assert truth.config["n_frames"] == 2


def test_minimal_namespaced_header_uses_defaults(tmp_path):
    xml = (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
        f"<encodedSpace><matrixSize><x>{N}</x><y>{N}</y><z>1</z></matrixSize></encodedSpace>"
        "<trajectory>other</trajectory>"
        "<trajectoryDescription><identifier>propeller</identifier></trajectoryDescription>"
        "</encoding></ismrmrdHeader>"
    )
    assert parse_header(xml).parser == "etree"
    _write_other_tool(tmp_path / "min.h5", _scan(), xml)
    back = read_ismrmrd(tmp_path / "min.h5")
    assert back.sequence == "spin_echo" and back.te_s == 0.0 and back.field_strength_t == 3.0
    assert len(back.extra["assumed"]) == 3 and back.fov_mm == (256.0, 256.0)
    with pytest.raises(ValueError, match="matrixSize"):
        parse_header(xml.replace(f"<y>{N}</y>", ""))
    with pytest.raises(ValueError, match="not well-formed"):
        parse_header("<ismrmrdHeader><encoding>")
