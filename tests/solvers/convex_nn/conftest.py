"""One intra-op thread for these many small tensor ops (on a busy 2-core machine a second
thread makes them tens of times slower); restored afterwards."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
