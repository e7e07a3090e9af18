"""How fast is `pmlseg ingest` compared with running dcm2niix on the same export?

Builds a cohort from the real DICOM in shared/data/dicom (each series copied as N patients with new
UIDs, in a nested PACS-like layout with extension-less names), then prints:
  - index speed (files/s) of the header indexer with 2 workers,
  - total `pmlseg ingest SRC OUT` wall time vs `dcm2niix -z y -b y -ba y -o OUT SRC` on the same files.
Requirement: index >= 1000 files/s on 2 cores; ingest <= 1.5x dcm2niix.

    .venv/bin/python benchmarks/ingest_speed.py [--copies 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from pmlseg.ingest.convert import dcm2niix_path
from pmlseg.ingest.index import index_tree
from pmlseg.paths import shared_data_dir


def build_cohort(dst: Path, copies: int) -> int:
    n = 0
    folders = sorted(p for p in (shared_data_dir() / "dicom").iterdir() if p.is_dir())
    for c in range(copies):
        for folder in folders:
            study_for_patient = {}
            series = generate_uid()
            out = dst / f"export{c % 3}" / f"P{c:04d}" / f"S{abs(hash(folder.name)) % 1000:03d}"
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(folder.iterdir()):
                ds = pydicom.dcmread(f)
                ds.PatientID = f"BENCH{c:04d}"
                ds.StudyInstanceUID = study_for_patient.setdefault(ds.StudyInstanceUID, generate_uid())
                ds.SeriesInstanceUID = series
                ds.SOPInstanceUID = generate_uid()
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.save_as(out / f"{n:07d}", enforce_file_format=True)
                n += 1
    return n


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=8, help="patients per real series (default 8)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pmlseg-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        n = build_cohort(src, args.copies)
        print(f"cohort: {n} files, {args.copies * 3} series")
        best = None
        for _ in range(3):
            t = time.perf_counter()
            infos, skipped = index_tree(src, workers=args.workers, show_progress=False)
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        assert len(infos) == n and not skipped
        print(f"index: {n / best:.0f} files/s ({best:.2f} s for {n} files, {args.workers} workers, best of 3)")
        d2n, ours = [], []
        for i in range(2):
            out_ref = tmp / f"ref{i}"
            out_ref.mkdir()
            d2n.append(timed([dcm2niix_path(), "-z", "y", "-b", "y", "-ba", "y", "-o", str(out_ref), str(src)]))
            ours.append(timed([sys.executable, "-m", "pmlseg", "--log-level", "WARNING", "ingest", str(src),
                               str(tmp / f"bids{i}"), "--workers", str(args.workers)]))
            shutil.rmtree(out_ref)
        d, o = min(d2n), min(ours)
        print(f"dcm2niix (one call on SRC): {d:.2f} s")
        print(f"pmlseg ingest (index + classify + checks + convert + BIDS): {o:.2f} s")
        print(f"ratio ingest/dcm2niix: {o / d:.2f} (requirement <= 1.5)")


if __name__ == "__main__":
    main()
