import os

import pytest

os.environ.setdefault("ROLLWISE_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _threads():
    import torch

    torch.set_num_threads(int(os.environ.get("ROLLWISE_TEST_THREADS", "1")))
    yield
