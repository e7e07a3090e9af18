"""Does the workflow grow linearly with the cohort?  Dry-run graph building and real seconds per follow-up.

    python benchmarks/workflow_scale.py dry [--patients 10 50 200] [--visits 4]
    python benchmarks/workflow_scale.py real [--patients 2 4 8] [--visits 3] [--cores 2]
    python benchmarks/workflow_scale.py new-visit [--visits 3] [--cores 2]

``dry``: for each cohort size, a synthetic ingest result (manifest.tsv with N patients x K visits, empty
FLAIR files where the manifest points, a DICOM export of N x K studies x 5 series folders) and a
`pmlseg run --dry-run` on it: prints the jobs planned and the wall time of the whole dry run (Snakemake
start, Snakefile parse, DAG of every visit).  Target: 200 x 4 in <= 10 s, growing about linearly.

``real``: `pmlseg synth` cohorts of N small patients (K visits each), then `pmlseg run --cores C` with
the trained model; prints the wall time, the follow-ups processed and seconds per follow-up, which should
stay flat as N grows (each patient's follow-ups share one detection job: one model load, one template
registration of the rebaseline).

``new-visit``: the surveillance case.  One `pmlseg synth` patient with K visits; its export without the last
visit is run, then the last visit is added and `pmlseg run` is timed again (re-ingest, register the new
follow-up, chain it to the previous visit, detect against the rebaseline and the previous visit, track,
index); prints the re-run's wall time and its jobs' seconds (Snakemake `benchmark:` files).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pmlseg.workflow.manifest import COLUMNS, write_tsv
from pmlseg.workflow.snakemake_runner import snakemake_command

SERIES_PER_STUDY = 5


def fake_ingest(root: Path, patients: int, visits: int) -> tuple[Path, Path]:
    """(DICOM folder tree, OUT with manifest.tsv and empty FLAIRs): what ingest leaves, without images."""
    dicom, out = root / "dicom", root / "out"
    rows = []
    for p in range(1, patients + 1):
        sub = f"sub-{p:03d}"
        for v in range(1, visits + 1):
            ses = f"ses-{v:02d}"
            for s in range(1, SERIES_PER_STUDY + 1):
                (dicom / f"PAT{p:04d}" / f"STUDY{v:02d}" / f"SER{s:02d}").mkdir(parents=True, exist_ok=True)
            flair = f"{sub}/{ses}/anat/{sub}_{ses}_FLAIR.nii.gz"
            (out / flair).parent.mkdir(parents=True, exist_ok=True)
            (out / flair).touch()
            rows.append({"subject": sub, "session": ses, "order": v, "role": "rebaseline" if v == 1 else "follow-up",
                         "days": 120 * (v - 1), "interval_days": 120 if v > 1 else "",
                         "previous": f"ses-{v - 1:02d}" if v > 1 else "", "flair": flair, "status": "ok"})
    write_tsv(out / "manifest.tsv", rows, COLUMNS)
    old = time.time() - 3600  # manifest newer than the export: ingest is up to date
    os.utime(dicom, (old, old))
    return dicom, out


def dry(patients: list[int], visits: int) -> None:
    print(f"dry run: synthetic manifests, {visits} visits per patient, {SERIES_PER_STUDY} series per study")
    print(f"{'patients':>8} {'visits':>7} {'jobs':>6} {'dry-run s':>10} {'ms/visit':>9}")
    for n in patients:
        with tempfile.TemporaryDirectory() as tmp:
            dicom, out = fake_ingest(Path(tmp), n, visits)
            cmd = snakemake_command(dicom, out, cores=2, dry_run=True, extra=["--quiet", "rules"])
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True)
            s = time.perf_counter() - t
            if p.returncode != 0:
                sys.exit(f"dry run failed for {n} patients:\n{(p.stdout + p.stderr)[-3000:]}")
            jobs = next(int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("total "))
            print(f"{n:>8} {n * visits:>7} {jobs:>6} {s:>10.2f} {1000 * s / (n * visits):>9.1f}", flush=True)


def real(patients: list[int], visits: int, cores: int, keep: Path | None) -> None:
    print(f"real run: pmlseg synth --visits {visits}, pmlseg run --cores {cores} (trained model)")
    print(f"{'patients':>8} {'follow-ups':>10} {'wall s':>8} {'s/follow-up':>12}")
    for n in patients:
        with tempfile.TemporaryDirectory(dir=keep) as tmp:
            root = Path(tmp)
            subprocess.run([sys.executable, "-m", "pmlseg", "--log-level", "WARNING", "synth", str(root / "synth"),
                            "--patients", str(n), "--visits", str(visits), "--seed", "3"], check=True)
            dicom = next(d for d in (root / "synth" / "dicom", root / "synth") if d.is_dir())
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "pmlseg", "run", str(dicom), str(root / "out"), "--cores",
                                str(cores), "--snakemake-args=--quiet"], capture_output=True, text=True)
            s = time.perf_counter() - t
            if p.returncode != 0:
                sys.exit(f"run failed for {n} patients:\n{(p.stdout + p.stderr)[-3000:]}")
            fus = sum(1 for line in (root / "out" / "manifest.tsv").read_text().splitlines() if "\tfollow-up\t" in line)
            print(f"{n:>8} {fus:>10} {s:>8.1f} {s / max(fus, 1):>12.1f}", flush=True)


def new_visit(visits: int, cores: int, keep: Path | None) -> None:
    import shutil

    print(f"new visit: pmlseg synth --patients 1 --visits {visits}, visits 1-{visits - 1} run, then visit {visits} "
          f"added and pmlseg run --cores {cores} timed again")
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "pmlseg", "--log-level", "WARNING", "synth", str(root / "synth"),
                        "--patients", "1", "--visits", str(visits), "--seed", "3"], check=True)
        studies = sorted((root / "synth" / "dicom").iterdir(), key=_study_date)
        export = root / "dicom"
        for study in studies[:-1]:
            shutil.copytree(study, export / study.name)
        run = [sys.executable, "-m", "pmlseg", "run", str(export), str(root / "out"), "--cores", str(cores),
               "--snakemake-args=--quiet"]
        for label in ("first run", "new visit"):
            if label == "new visit":
                shutil.copytree(studies[-1], export / studies[-1].name)
            started, t = time.time(), time.perf_counter()
            p = subprocess.run(run, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{label} failed:\n{(p.stdout + p.stderr)[-3000:]}")
            print(f"{label}: {time.perf_counter() - t:.1f} s", flush=True)
        bench = root / "out" / "benchmarks"
        for f in sorted(bench.rglob("*.tsv")):
            if f.stat().st_mtime >= started:  # a job of the re-run (each file is written as its job ends)
                print(f"  {str(f.relative_to(bench).with_suffix('')):<24} {f.read_text().splitlines()[-1].split()[0]} s")


def _study_date(study: Path) -> str:
    import pydicom

    first = next(f for f in sorted(study.rglob("*")) if f.is_file())
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyDate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["dry", "real", "new-visit"])
    ap.add_argument("--patients", type=int, nargs="+")
    ap.add_argument("--visits", type=int)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None, help="where the real runs' cohorts go (default $TMPDIR)")
    a = ap.parse_args()
    if a.mode == "dry":
        dry(a.patients or [10, 50, 200], a.visits or 4)
    elif a.mode == "real":
        real(a.patients or [2, 4, 8], a.visits or 3, a.cores, a.tmp)
    else:
        new_visit(a.visits or 3, a.cores, a.tmp)


if __name__ == "__main__":
    main()
