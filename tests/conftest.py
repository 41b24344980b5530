import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded torch for small tensors: faster than 2 spinning threads on a busy 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
