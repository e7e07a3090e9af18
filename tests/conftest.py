import os
from pathlib import Path

import pytest

from pmlseg.paths import shared_data_dir

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the repo; CI has it, so its absence is a failure, not a skip."""
    d = shared_data_dir()
    assert (d / "README.md").exists(), f"real test data not found at {d} (set PMLSEG_SHARED_DATA)"
    return d
