"""The messy-clinic cohort through `pmlseg run`: every visit's outcome true, crashes retried, no identifier leaks.

One export (tests/messy_cohort.py) goes through, in order:
1. a configuration that cannot work (a model that does not exist): non-zero exit, nothing run;
2. an injected crash in every detection job (PMLSEG_TEST_CRASH): non-zero exit, no visit recorded;
3. a run whose first detection job is killed with SIGKILL mid-run: non-zero exit, that visit not recorded;
4. the correct run: exit 0, each visit's recorded outcome as the export demands, the killed visit's
   outputs identical to a detection run on its own, no name, ID or birth date in any file or log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pmlseg.tables import read_tsv

sys.path.insert(0, str(Path(__file__).parent))
import messy_cohort  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = ["--config", "preprocess=false", "detect_previous=false", "today=2024-01-01"]


def _run(dicom: Path, out: Path, *extra, env=None, cores=2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "pmlseg", "run", str(dicom), str(out), "--cores", str(cores),
                           *CONFIG, *extra], capture_output=True, text=True, env=env, cwd=REPO, timeout=1500)


def _detect_processes(out: Path) -> dict[int, list[str]]:
    """pid -> argv of the running detection jobs (`pmlseg detect-patient`, one per patient) of this run."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "detect-patient" in argv and any(a.startswith(str(out)) for a in argv):
            found[int(d.name)] = [a for a in argv if a]
    return found


def _kill_detection(dicom: Path, out: Path, patient_id: str) -> tuple[int, list[str], str]:
    """Start a run, SIGKILL the detection job of ``patient_id`` a few seconds in; (exit code, its argv, log)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "pmlseg", "run", str(dicom), str(out), "--cores", "1", *CONFIG],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    argv = None
    deadline = time.time() + 900
    while argv is None and time.time() < deadline and proc.poll() is None:
        ident = read_tsv(out / "identity.tsv", missing_ok=True)
        subs = {f"/{r['subject']}/" for r in ident if r["patient_id"] == patient_id}
        jobs = {pid: a for pid, a in _detect_processes(out).items() if any(s in " ".join(a) for s in subs)}
        if jobs:
            pid, argv = next(iter(jobs.items()))
            time.sleep(3)  # mid-run: the model is loaded, outputs may be half done
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    log, _ = proc.communicate(timeout=900)
    assert argv is not None, log[-3000:]
    return proc.returncode, argv, log


@pytest.mark.slow
def test_messy_clinic_cohort(tmp_path):
    t0 = time.time()
    # the export root is named after a patient too (a one-click PACS export)
    dicom = messy_cohort.build(tmp_path / "PACS_NOVAKOVIC^MARTINA_8841207733_19850312")
    out = tmp_path / "out"
    logs = []

    # 1. a model that does not exist: one line, non-zero, nothing run
    p = _run(dicom, out, "model=no-such-model")
    logs.append(p.stdout + p.stderr)
    assert p.returncode != 0 and "pmlseg: cannot run: model no-such-model" in p.stderr, p.stderr[-2000:]
    assert not (out / "manifest.tsv").exists()

    # 2. a crash in detection: the run fails, nothing is recorded for the visit, ingest/registration kept
    p = _run(dicom, out, env={"PMLSEG_TEST_CRASH": "detect-patient"})
    logs.append(p.stdout + p.stderr)
    assert p.returncode != 0, p.stderr[-3000:]
    assert (out / "manifest.tsv").exists() and not (out / "index.html").exists()
    recorded = [json.loads(f.read_text()) for f in out.glob("derivatives/pmlseg/*/*/detect-*/status.json")]
    assert all(s.get("skipped") for s in recorded), recorded  # only the visit whose registration failed
    crash_logs = "".join(f.read_text() for d in ("detect", "detect_patient") for f in (out / "logs" / d).glob("*.log"))
    assert "injected crash in `pmlseg detect-patient`" in crash_logs + p.stdout + p.stderr, p.stderr[-3000:]

    # 3. SIGKILL of a detection job mid-run (the patient with new lesions): the run fails, that visit is not recorded
    new_pid = next(pid for kind, _, pid, _ in messy_cohort.PATIENTS if kind == "new")
    rc, argv, log = _kill_detection(dicom, out, new_pid)
    logs.append(log)
    killed_done = Path(next(a for a in argv if a.endswith(".json") and a.startswith(str(out))))
    assert rc != 0 and not killed_done.exists(), log[-3000:]  # the patient's detection job is not recorded done

    # 4. the correct run completes every visit
    p = _run(dicom, out)
    logs.append(p.stdout + p.stderr)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    seconds = time.time() - t0

    # the hostile description is kept in series.tsv, and no row after it was swallowed
    series = read_tsv(out / "series.tsv")
    assert len(series) == 29  # 15 visits x (FLAIR + T1w), less the missing FLAIR
    assert sum(r["series_description"].startswith('"AX FLAIR') for r in series) == 2  # both visits of one patient
    ingest_log = (out / "logs" / "ingest.log").read_text()
    assert "skipped file:" in ingest_log and "truncated" in ingest_log

    # the killed job, re-run: every follow-up of that patient is recorded ok with all its outputs
    subs = {r["subject"] for r in read_tsv(out / "identity.tsv") if r["patient_id"] == new_pid}
    statuses = [f for sub in subs for f in out.glob(f"derivatives/pmlseg/{sub}/*/detect-rebaseline/status.json")]
    assert statuses
    for f in statuses:
        assert json.loads(f.read_text())["status"] == "ok", f
        assert all((f.parent / n).exists() for n in ("lesions.tsv", "new_lesions.nii.gz", "qc.json", "report.html"))

    # ... and its outputs are those of a detection run on its own (the kill left nothing that changed them)
    case = json.loads(argv[argv.index("--cases") + 1])[0]
    alone = tmp_path / "alone"
    cmd = [sys.executable, "-m", "pmlseg", "detect", "--baseline", case["baseline"], "--followup", case["followup"],
           "--followup-transform", case["followup_transform"], "--out", str(alone), "--device", "cpu",
           *[a for k, f in case["optional"].items() for a in (f"--{k.replace('_', '-')}", f)]]
    q = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    logs.append(q.stdout + q.stderr)
    assert q.returncode == 0, q.stderr[-2000:]
    got = Path(case["out"])
    assert np.array_equal(np.asarray(nib.load(got / "new_lesions.nii.gz").dataobj),
                          np.asarray(nib.load(alone / "new_lesions.nii.gz").dataobj))
    assert read_tsv(got / "lesions.tsv") == read_tsv(alone / "lesions.tsv")

    # no name, ID or birth date anywhere under OUT but identity.tsv, nor in any log or console output
    secrets = messy_cohort.identifiers()
    leaks = []
    n_files = 0
    for folder, _, names in os.walk(out):  # does not enter OUT/.pmlseg/dicom, the link to the export
        for f in (Path(folder) / n for n in names):
            if f.is_symlink() or f == out / "identity.tsv":
                continue
            data = f.read_bytes()
            n_files += 1
            leaks += [(str(f.relative_to(out)), s) for s in secrets if s.encode() in data]
    leaks += [("console", s) for s in secrets for text in logs if s in text]
    assert not leaks, leaks[:20]
    assert any((out / ".snakemake" / "log").glob("*.log"))  # Snakemake's own log was among those read
    assert n_files > 100 and Path(os.readlink(out / ".pmlseg" / "dicom")) == dicom.resolve()  # the only place
    manifest = read_tsv(out / "manifest.tsv")
    identity = read_tsv(out / "identity.tsv")
    kind_of = {}  # subject -> kind, through identity.tsv (the only link to the patient)
    for kind, _, pid, _ in messy_cohort.PATIENTS:
        (sub,) = {r["subject"] for r in identity if r["patient_id"] == pid}
        kind_of[sub] = kind
    sessions = read_tsv(out / "sessions.tsv")
    assert len(sessions) == 15 == len(manifest)  # 7 patients x 2 visits + the single visit: no row swallowed
    page = (out / "index.html").read_text()
    for s in sessions:
        print(kind_of[s["subject"]], s["subject"], s["session"], s["role"], s["qc"], s["n_new_lesions"], s["reason"][:90])
    for s in sessions:
        kind = kind_of[s["subject"]]
        if s["role"] == "rebaseline":
            assert kind != "single" or "single usable visit" in s["reason"], s
            continue
        qc, words = messy_cohort.EXPECTED[kind]
        assert s["qc"] == qc and words in s["reason"], (kind, s)
        if words:
            assert words in page
        if kind == "new":
            assert int(s["n_new_lesions"]) >= 1, s
    stable = [s for s in sessions if kind_of[s["subject"]] == "stable" and s["role"] == "follow-up"]
    assert len(stable) == 4
    # how many candidates the detector raises on these low-resolution stable re-scans is measured, not
    # asserted here (the detector's false positives are benchmarked on real stable pairs)
    false_positives = sum(int(s["n_new_lesions"]) for s in stable)

    print(f"messy-clinic cohort: 4 runs in {seconds:.0f} s; stable follow-ups' new-lesion counts "
          f"{[s['n_new_lesions'] for s in stable]} ({false_positives} in all)")
