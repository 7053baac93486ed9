import pytest


@pytest.fixture(autouse=True)
def _one_thread(_threads):
    """These tests run many tiny sequential ops: one thread is several times faster on the shared CPU."""
    import torch

    torch.set_num_threads(1)
    yield
