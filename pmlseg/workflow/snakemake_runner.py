"""Run the packaged Snakemake workflow as a subprocess (same Snakefile as `snakemake --cores N` in the repo).

A subprocess, not the Python API: Snakemake's API changes between major versions while its command
line is stable, and a subprocess keeps Snakemake's logging and signal handling (Ctrl-C marks jobs
incomplete so a re-run resumes them).  The working directory is OUT, so Snakemake's metadata (what
is done, what was interrupted) lives with the results and a re-run computes only new work.

Snakemake is handed ``OUT/.pmlseg/dicom``, a link to the export, never the export's own path: a PACS
export's folder can be named after the patient, and Snakemake writes its inputs into its log, its
metadata and cluster job scripts.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pmlseg.errors import PmlsegError
from pmlseg.paths import resource_dir

log = logging.getLogger(__name__)


def find_snakefile() -> Path:
    """$PMLSEG_SNAKEFILE, else the Snakefile shipped with this pmlseg (its checkout, or inside the wheel)."""
    env = os.environ.get("PMLSEG_SNAKEFILE")
    candidates = [Path(env)] if env else []
    candidates.append(resource_dir() / "Snakefile")
    for c in candidates:
        if c.is_file() and (c.parent / "workflow" / "rules").is_dir():
            return c.resolve()
    raise PmlsegError(
        f"{candidates[0]}: pmlseg's Snakefile not found (beside workflow/; a checkout or an installed wheel "
        "carries it): reinstall pmlseg, or set PMLSEG_SNAKEFILE=/path/to/pmlseg/Snakefile")


def slurm_accounting_enabled() -> bool:
    """False when the cluster runs without slurmdbd (then `sacct` cannot report job states; use squeue)."""
    if shutil.which("sacct") is None:
        return False
    try:
        p = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = (p.stdout + p.stderr).lower()
    return p.returncode == 0 and "accounting storage is disabled" not in text


def _absolute(item: str) -> str:
    """KEY=VALUE with path values made absolute: Snakemake runs in OUT, not in the caller's folder.
    ``model`` is a path when it names an existing folder or holds a '/'; else a name under models/."""
    key, _, value = item.partition("=")
    if not value or value in ("null", "None"):
        return item
    if key == "clinical" or (key == "model" and ("/" in value or Path(value).is_dir())):
        return f"{key}={Path(value).resolve()}"
    return item


def dicom_alias(dicom: Path, out: Path) -> Path:
    """OUT/.pmlseg/dicom, a symbolic link to the export (re-pointed when the export moves)."""
    alias = out.resolve() / ".pmlseg" / "dicom"
    alias.parent.mkdir(parents=True, exist_ok=True)
    target = dicom.resolve()
    if alias.is_symlink() and Path(os.readlink(alias)) == target:
        return alias
    tmp = alias.with_name(".dicom.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, alias)
    return alias


def snakemake_command(dicom: Path, out: Path, *, cores: int | None = None, executor: str | None = None,
                      jobs: int | None = None, config: list[str] = (), dry_run: bool = False,
                      extra: list[str] = ()) -> list[str]:
    snakefile = find_snakefile()
    profile = snakefile.parent / "workflow" / "profiles" / ("slurm" if executor == "slurm" else "local")
    config = [_absolute(item) for item in config]
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(out),
           "--workflow-profile", str(profile),
           "--config", f"dicom_dir={os.path.abspath(dicom)}", f"out_dir={out.resolve()}", *config]
    if executor and executor != "local":
        if shutil.which("sbatch") is None and executor == "slurm":
            raise PmlsegError("--executor slurm: sbatch not found on PATH (is this a SLURM login node?)")
        cmd += ["--executor", executor, "--jobs", str(jobs or 20)]
        if executor == "slurm" and not slurm_accounting_enabled():
            log.info("SLURM accounting is disabled: querying job states with squeue, submitting without account")
            cmd += ["--slurm-status-command", "squeue", "--slurm-no-account"]
        if cores:
            cmd += ["--local-cores", str(cores)]
    else:
        cmd += ["--cores", str(cores or os.cpu_count() or 1)]
    if dry_run:
        cmd += ["--dry-run"]
    return cmd + list(extra)


def check_config(items) -> None:
    """--config items are KEY=VALUE (checked before any work starts)."""
    for item in items:
        if "=" not in item:
            raise PmlsegError(f"--config {item}: expected KEY=VALUE")


def run_workflow(dicom: Path, out: Path, **kwargs) -> int:
    if not dicom.is_dir():
        raise PmlsegError(f"{dicom}: DICOM folder not found")
    check_config(kwargs.get("config", ()))
    out.mkdir(parents=True, exist_ok=True)
    cmd = snakemake_command(dicom_alias(dicom, out), out, **kwargs)
    log.info("running: %s", " ".join(cmd))
    env = dict(os.environ)
    # jobs (also on SLURM nodes) call this interpreter's pmlseg, whatever PATH says
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached Snakemake too: let it stop its jobs and mark them incomplete (a re-run resumes)
        try:
            proc.wait(timeout=120)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
        raise
