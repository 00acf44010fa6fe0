"""The compression tests use matrices of at most a few thousand entries: one thread.

On a shared, loaded machine torch's thread pool waits for a second core far longer than
these products take (measured: 70x slower for 48 x 40 SVDs at 2 threads under load).
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
