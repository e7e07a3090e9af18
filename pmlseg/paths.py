"""Where things live: bundled package data, the repository's models/, the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
MODELS_DIR = Path(os.environ.get("PMLSEG_MODELS_DIR", REPO_DIR / "models"))


def shared_data_dir() -> Path:
    """The real licensed data (never copied into the repo): $PMLSEG_SHARED_DATA or ../shared/data."""
    return Path(os.environ.get("PMLSEG_SHARED_DATA", REPO_DIR.parent / "shared" / "data"))
