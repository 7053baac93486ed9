import pytest
from rlvr_small_config import SMALL  # a module with a unique name: spawned test processes re-import it

from rollwise.rlvr.run_config import resolve_config


@pytest.fixture
def small_config(tmp_path):
    def make(*overrides: str, name: str = "run"):
        return resolve_config(overrides=[*SMALL, f"run.output_dir={tmp_path / name}", *overrides])

    return make
