"""Configuration checks run when the Snakefile is read: a run that cannot work stops before any job starts.

A missing model or a GPU run without CUDA would otherwise fail inside every detection job (or, worse,
look like a problem with each visit). One SetupError names what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path

from pmlseg.errors import SetupError


def check_config(config: dict, local: bool) -> None:
    """Raise SetupError listing every problem; ``local``: jobs run on this machine (so its GPU counts)."""
    problems = []
    if config.get("use_gpu") and local:
        import torch

        if not torch.cuda.is_available():
            problems.append("use_gpu: true, but torch sees no CUDA GPU on this machine "
                            "(set use_gpu=false to detect on the CPU, or run where a GPU is visible)")
    if config.get("detect_method", "model") == "model":
        from pmlseg.detect.predictor import resolve_model
        from pmlseg.paths import models_dirs

        folder = resolve_model(config.get("model"))
        if not (folder / "metadata.json").is_file():
            known = sorted(p.name for d in models_dirs() for p in d.glob("*") if (p / "metadata.json").is_file())
            problems.append(f"model {config.get('model')}: no model at {folder} "
                            f"(known models: {', '.join(known) or 'none'})")
    if config.get("clinical") and not Path(config["clinical"]).is_file():
        problems.append(f"clinical {config['clinical']}: file not found")
    if problems:
        raise SetupError("; ".join(problems))
