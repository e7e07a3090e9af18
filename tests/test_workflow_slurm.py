"""The demo cohort through a real SLURM cluster (`.ci/start_slurm.sh` starts one): every heavy job via sbatch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pmlseg.tables import read_tsv

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]  # skips without SLURM unless CI=true


def _cluster_up() -> bool:
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0 and bool(re.search(r"idle|mixed|allocated|completing", p.stdout))


def test_demo_cohort_through_slurm(tmp_path):
    assert _cluster_up(), "no SLURM cluster answers `sinfo` (start one with .ci/start_slurm.sh)"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # a smaller demo-like cohort (2 patients x 2 visits): the node runs one 2-CPU job at a time, and
    # the default 3 x 3 demo took 15-22 min here; what is tested is the path through sbatch
    p = subprocess.run([sys.executable, "-m", "pmlseg", "synth", str(tmp_path / "demo"), "--patients", "2",
                        "--visits", "2"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "pmlseg", "run", str(tmp_path / "demo" / "dicom"), str(out),
                        "--executor", "slurm", "--jobs", "4", "--config", "preprocess=false",
                        "detect_method=classical", "detect_previous=false"],  # vs-previous: test_workflow_run
                       capture_output=True, text=True, env=env, timeout=1800, cwd=tmp_path)
    log = p.stdout + p.stderr
    assert p.returncode == 0, log[-5000:]
    # every submitted job got a SLURM id, ran through the scheduler and finished
    ids = sorted(set(re.findall(r"submitted with SLURM jobid (\d+)", log)), key=int)
    # one job for ingest, one group job per patient (its registrations and detections: profile `groups`)
    jobs = set(re.findall(r"\(log: \S*/slurm_logs/((?:rule|group)_\w+)/", log))
    # (Snakemake names a group job's log folder after the group and its rules: group_patient_detect_register)
    assert "rule_ingest" in jobs and jobs - {"rule_ingest"} and all(j.startswith("group_patient") for j in jobs - {"rule_ingest"}), jobs
    visits = read_tsv(tmp_path / "demo" / "ground_truth" / "cohort.tsv")
    n_followups = len(visits) - len({v["patient_id"] for v in visits})
    n_patients = len({v["patient_id"] for v in visits})
    assert 1 + n_patients <= len(ids) < len(visits), ids  # fewer submissions than visits (a retry adds one)
    q = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(ids)],
                       capture_output=True, text=True, timeout=30)
    states = dict(line.split() for line in q.stdout.splitlines() if line.strip())
    assert states and all(s == "COMPLETED" for s in states.values()), states
    assert any((out / ".snakemake" / "slurm_logs").rglob("*.log"))
    ctld = Path("/var/log/slurm/slurmctld.log")
    if ctld.exists():
        text = ctld.read_text(errors="replace")
        assert all(re.search(rf"JobId={i}\b", text) for i in ids)
    sessions = read_tsv(out / "sessions.tsv")
    assert sum(s["role"] == "follow-up" for s in sessions) == n_followups
    assert all(s["qc"] in ("ok", "warning") for s in sessions if s["role"] == "follow-up"), sessions
    assert (out / "index.html").stat().st_size > 1000
