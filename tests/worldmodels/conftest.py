import pytest


@pytest.fixture(autouse=True)
def _one_thread(_threads):
    """The models are tiny (16×16 complex matmuls): extra intra-op threads cost 4-6x on a loaded 2-core box."""
    import torch

    torch.set_num_threads(1)
    yield
