"""Time `pmlseg synth` for the default demo cohort (3 patients x 3 visits, seed 0) and print the numbers.

Usage: .venv/bin/python benchmarks/synth_speed.py [--patients N] [--visits K]
Prints wall time, CPU time, peak memory and files written; the generated cohort goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=3)
    ap.add_argument("--visits", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from pmlseg.synth.cohort import generate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = generate_cohort(Path(tmp) / "cohort", args.patients, args.visits, args.seed, show_progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        size = sum(p.stat().st_size for p in (Path(tmp) / "cohort").rglob("*") if p.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    visits = args.patients * args.visits
    print(f"synth {args.patients} patients x {args.visits} visits (seed {args.seed}): "
          f"wall {wall:.1f} s ({wall / visits:.1f} s/visit), cpu {cpu:.1f} s, peak RSS {peak_mb:.0f} MB, "
          f"{summary.files} DICOM files, {size / 1e6:.0f} MB on disk")


if __name__ == "__main__":
    main()
