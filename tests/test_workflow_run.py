"""`pmlseg run` end to end on a small synthetic cohort: outputs, bad visits, incremental re-run, dry run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pmlseg.tables import read_tsv

REPO = Path(__file__).resolve().parents[1]
PMLSEG = [sys.executable, "-m", "pmlseg"]
# keep the test cheap: register the raw FLAIRs, classical detection (the workflow is under test, not the model)
FAST = ["--config", "preprocess=false", "detect_method=classical", "today=2022-01-01"]


def _tsv(path: Path) -> list[dict]:
    return read_tsv(path)


def _run(*args, timeout=1500) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([*PMLSEG, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wfcohort")
    p = _run("synth", str(root / "synth"), "--patients", "2", "--visits", "2", "--seed", "3", timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return root / "synth"


def _study_dirs(cohort: Path) -> dict[tuple[str, str], Path]:
    return {(r["patient_id"], r["visit"]): cohort / r["dicom_study_dir"]
            for r in _tsv(cohort / "ground_truth" / "cohort.tsv")}


def _drop_flair(study: Path) -> None:
    """Remove the FLAIR series of a copied study (found by its header), so that visit has no FLAIR."""
    import pydicom

    removed = 0
    for series in sorted(p for p in study.iterdir() if p.is_dir()):
        first = next(f for f in sorted(series.rglob("*")) if f.is_file())
        desc = str(pydicom.dcmread(first, stop_before_pixels=True).get("SeriesDescription", "")).lower()
        if "flair" in desc:
            shutil.rmtree(series)
            removed += 1
    assert removed, f"no FLAIR series found in {study}"


@pytest.mark.slow
def test_run_end_to_end_bad_visits_and_incremental(cohort, tmp_path):
    studies = _study_dirs(cohort)
    (p1, p2) = sorted({k[0] for k in studies})
    dicom, out = tmp_path / "dicom", tmp_path / "out"
    dicom.mkdir()
    for key in ((p1, "1"), (p1, "2"), (p2, "1")):
        shutil.copytree(studies[key], dicom / studies[key].name)
    _drop_flair(dicom / studies[p2, "1"].name)
    (dicom / "garbage.dcm").write_bytes(b"not dicom at all")

    p = _run("run", str(dicom), str(out), "--cores", "2", *FAST)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    sessions = {(r["subject"], r["session"]): r for r in _tsv(out / "sessions.tsv")}
    assert set(sessions) == {("sub-001", "ses-01"), ("sub-001", "ses-02"), ("sub-002", "ses-01")}
    fu = sessions["sub-001", "ses-02"]
    assert fu["role"] == "follow-up" and fu["qc"] in ("ok", "warning"), fu
    assert int(fu["interval_days"]) > 30
    # the new-lesion map lives in the rebaseline's physical space (its grid)
    reb = nib.load(out / "sub-001/ses-01/anat/sub-001_ses-01_FLAIR.nii.gz")
    lab = nib.load(out / fu["new_lesions"])
    assert lab.shape[:3] == reb.shape[:3] and np.allclose(lab.affine, reb.affine, atol=1e-3)
    assert (out / fu["report"]).is_file()
    n_labels = len([v for v in np.unique(np.asarray(lab.dataobj)) if v > 0])
    assert int(fu["n_new_lesions"]) == n_labels
    lesions = _tsv(out / "lesions.tsv")
    assert sum(r["session"] == "ses-02" for r in lesions) == n_labels
    bad = sessions["sub-002", "ses-01"]
    assert bad["qc"] == "failed" and "no usable FLAIR" in bad["reason"]
    page = (out / "index.html").read_text()
    assert "no usable FLAIR" in page and fu["report"] in page
    # identifiers only in identity.tsv
    ids = [r["patient_id"] for r in _tsv(out / "identity.tsv")]
    for f in ("index.html", "sessions.tsv", "lesions.tsv", "manifest.tsv"):
        text = (out / f).read_text()
        assert not any(i in text for i in ids), f
    done_before = (out / "derivatives/pmlseg/sub-001/ses-02/detect-rebaseline/status.json").stat().st_mtime_ns

    # a new visit for patient 2: only its work runs; patient 1's jobs are not redone
    shutil.copytree(studies[p2, "2"], dicom / studies[p2, "2"].name)
    p = _run("run", str(dicom), str(out), "--cores", "2", *FAST)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    log = p.stdout + p.stderr
    assert "sub-001" not in "".join(line for line in log.splitlines() if "wildcards:" in line)
    assert (out / "derivatives/pmlseg/sub-001/ses-02/detect-rebaseline/status.json").stat().st_mtime_ns == done_before
    sessions = {(r["subject"], r["session"]): r for r in _tsv(out / "sessions.tsv")}
    assert sessions["sub-002", "ses-02"]["role"] == "rebaseline"
    assert "single usable visit" in sessions["sub-002", "ses-02"]["reason"]
    assert sessions["sub-001", "ses-02"]["qc"] == fu["qc"]

    # nothing new: nothing runs
    p = _run("run", str(dicom), str(out), "--cores", "2", *FAST)
    assert p.returncode == 0 and "Nothing to be done" in p.stdout + p.stderr, (p.stdout + p.stderr)[-3000:]


def test_dry_run_and_config_validation(cohort, tmp_path):
    p = _run("run", str(cohort / "dicom"), str(tmp_path / "out"), "--dry-run")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ingest" in p.stdout + p.stderr and not (tmp_path / "out" / "manifest.tsv").exists()
    p = _run("run", str(cohort / "dicom"), str(tmp_path / "out"), "--dry-run", "--config", "use_gpu=maybe")
    assert p.returncode != 0 and "use_gpu" in p.stdout + p.stderr
    # plain snakemake from the repository root runs the same workflow with configs/config.yaml
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--workflow-profile",
                        "workflow/profiles/local", "--config", f"dicom_dir={cohort / 'dicom'}",
                        f"out_dir={tmp_path / 'plain'}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0 and "checkpoint ingest" in p.stdout + p.stderr, (p.stdout + p.stderr)[-3000:]
    p = _run("run", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert p.returncode == 65 and "missing: DICOM folder not found" in p.stderr
    assert len([ln for ln in p.stderr.strip().splitlines() if ln.strip()]) == 1


@pytest.mark.slow
def test_interrupted_run_resumes(cohort, tmp_path):
    """Ctrl-C while a follow-up is being detected: nothing is recorded for it, and a re-run finishes the job."""
    import signal
    import time

    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*PMLSEG, "run", str(cohort / "dicom"), str(out), "--cores", "1", *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            start_new_session=True,
                            # a terminal leaves SIGINT at its default; a suite started in the background by a
                            # non-interactive shell has it ignored, and children inherit that: restore it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 900
    started = None
    while time.time() < deadline and proc.poll() is None and started is None:
        logs = out / "logs" / "detect"
        started = next(iter(sorted(logs.glob("*.log"))), None) if logs.exists() else None
        time.sleep(0.1)
    assert started is not None, "no detection job started"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, log[-3000:]
    sub, ses = started.stem.split("_")[:2]
    status = out / f"derivatives/pmlseg/{sub}/{ses}/detect-rebaseline/status.json"
    interrupted = not status.exists()
    print(f"interrupted {sub} {ses} mid-job: {interrupted}")
    if not interrupted:  # the job beat the signal: then it must have finished cleanly
        assert json.loads(status.read_text())["status"] == "ok"
    p = _run("run", str(cohort / "dicom"), str(out), "--cores", "2", *FAST)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    if interrupted:  # the patient's detection job runs again (and redoes only the unfinished case)
        assert f"wildcards: sub={sub}\n" in p.stdout + p.stderr
    sessions = _tsv(out / "sessions.tsv")
    assert [s["qc"] in ("ok", "warning") for s in sessions if s["role"] == "follow-up"] == [True, True], sessions


@pytest.mark.slow
def test_cores_are_honoured(cohort, tmp_path):
    """`--cores 1` runs one job at a time. Snakemake 8.x-9.16 did not count the cores of a job that was the only
    one ready (the ingest checkpoint, a lone detection) but gave them back when it ended, so after ingest two
    patients' registrations ran at once on one core (pyproject.toml pins snakemake >= 9.17).  With
    `preprocess=true` (off by default since session 12), so the preprocessing stage runs for real somewhere."""
    out = tmp_path / "out"
    p = _run("run", str(cohort / "dicom"), str(out), "--cores", "1", "--config", "preprocess=true", *FAST[2:])
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    preprocessed = sorted(out.rglob("*_desc-preproc_FLAIR.nii"))
    assert len(preprocessed) == len(list((out / "benchmarks" / "preprocess").glob("*.tsv"))) >= 4, preprocessed
    spans = []  # (start, end, job) from each job's benchmark file: written as the job ends, holding its seconds
    for f in (out / "benchmarks").rglob("*.tsv"):
        seconds = float(_tsv(f)[-1]["s"])
        spans.append((f.stat().st_mtime - seconds, f.stat().st_mtime, str(f.relative_to(out))))
    spans.sort()
    assert len(spans) >= 6, spans  # ingest, 2 registrations, 2 detections, 2 trackings, index
    overlaps = [(a[2], b[2], round(a[1] - b[0], 2)) for a, b in zip(spans, spans[1:]) if a[1] - b[0] > 0.5]
    assert not overlaps, f"jobs ran at the same time with --cores 1: {overlaps}"
