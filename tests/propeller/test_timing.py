import pytest
import torch

from mrsolve.propeller.timing import echo_time, readout_times


@pytest.mark.parametrize(("sequence", "te"), [("spin_echo", 0.0), ("gradient_echo", 2.3e-3)])
def test_echo_time_is_the_time_of_the_kspace_centre(sequence, te):
    line = readout_times(64, 32, 30e-6, sequence, te)
    times = line.expand(5, 4, 64)
    assert echo_time(times, 32) == pytest.approx(te, abs=1e-9)
    # an off-centre echo (partial echo) still reads at the centre sample's time
    assert echo_time(readout_times(64, 20, 30e-6, sequence, te).expand(5, 4, 64), 20) == (
        pytest.approx(te, abs=1e-9)
    )


def test_echo_time_of_a_multi_echo_scan_is_the_first_echo():
    tes = [3.2e-3, 1.2e-3, 2.2e-3]  # blades of echo 1 have the shortest TE
    times = torch.stack([readout_times(32, 16, 20e-6, "gradient_echo", te) for te in tes])
    times = times[:, None].expand(3, 2, 32)
    echo = torch.tensor([1, 0, 2])
    assert echo_time(times, 16, echo) == pytest.approx(1.2e-3, abs=1e-9)


def test_echo_time_rejects_bad_shapes():
    with pytest.raises(ValueError, match="times_s must have shape"):
        echo_time(torch.zeros(4, 8), 2)
    with pytest.raises(ValueError, match="center_sample"):
        echo_time(torch.zeros(2, 3, 8), 8)
