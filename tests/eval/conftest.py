import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The eval tests use small tensors: one thread each."""
