import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Single-threaded torch for these small tests: much faster than 2 spinning threads on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
