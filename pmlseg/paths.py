"""Where things live: the workflow, configs and models (checkout or installed wheel), the shared real data.

A checkout keeps Snakefile, workflow/, configs/ and models/ at the repository root; a wheel carries the
same tree in ``pmlseg/_bundle`` (setup.py copies it at build time).  ``resource_dir`` answers which one
this pmlseg runs from, so `pmlseg run` and `pmlseg detect` work from an editable install, a wheel on a
cluster's shared Python or a conda environment alike.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
BUNDLE_DIR = PACKAGE_DIR / "_bundle"


def _is_workflow_root(d: Path) -> bool:
    return (d / "Snakefile").is_file() and (d / "workflow" / "rules").is_dir()


def resource_dir() -> Path:
    """Folder holding Snakefile, workflow/, configs/, models/: the checkout if pmlseg runs from one, else the
    copy inside the installed package."""
    return REPO_DIR if _is_workflow_root(REPO_DIR) else BUNDLE_DIR


def models_dirs() -> list[Path]:
    """Where a model is looked up by name: $PMLSEG_MODELS_DIR (if set), then the shipped models/."""
    dirs = [Path(os.environ["PMLSEG_MODELS_DIR"])] if os.environ.get("PMLSEG_MODELS_DIR") else []
    return dirs + [resource_dir() / "models"]


def find_model(name: str) -> Path:
    """The folder of the model called ``name`` (first of ``models_dirs`` that has it; else the last one's
    path, which then fails at load with a message naming it)."""
    dirs = models_dirs()
    for d in dirs:
        if (d / name / "metadata.json").is_file():
            return d / name
    return dirs[-1] / name


def shared_data_dir() -> Path:
    """The real licensed data (never copied into the repo): $PMLSEG_SHARED_DATA or ../shared/data."""
    return Path(os.environ.get("PMLSEG_SHARED_DATA", REPO_DIR.parent / "shared" / "data"))


def icbm152_file(kind: str) -> Path:
    """The ICBM152 2009a file (kind: t1, gm, wm) bundled in nilearn's wheel, found without importing
    nilearn.datasets (which pulls in pandas and scikit-learn: ~3 s per process)."""
    import importlib.util

    spec = importlib.util.find_spec("nilearn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / \
        f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
