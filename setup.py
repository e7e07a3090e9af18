"""Build hook: the wheel carries the workflow, configs and default model inside the package.

The repository keeps its top-level layout (Snakefile, workflow/, configs/, models/ at the root: what
`snakemake` run from a checkout expects); building copies them to ``pmlseg/_bundle/`` in the build tree,
the way HippUnfold ships its Snakefile inside its package, so a non-editable install (a wheel on a
cluster's shared Python) runs `pmlseg run` and `pmlseg detect` with no checkout.  pmlseg.paths finds
them there.  Editable installs skip the copy: they read the checkout itself.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# what the installed package needs beside its Python code, relative to the repository root
BUNDLE = ["Snakefile", "workflow/rules", "workflow/schemas", "workflow/profiles", "configs",
          "models/newlesion-2p5d"]  # the default model (pmlseg.detect.predictor.DEFAULT_MODEL) only
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake", "*.ckpt", "checkpoints")


class BuildWithBundle(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "pmlseg" / "_bundle"
        shutil.rmtree(dest, ignore_errors=True)
        for rel in BUNDLE:
            src = ROOT / rel
            if not src.exists():
                raise SystemExit(f"{src}: missing; the wheel must carry it (see setup.py)")
            if src.is_dir():
                shutil.copytree(src, dest / rel, ignore=SKIP)
            else:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)


setup(cmdclass={"build_py": BuildWithBundle})
