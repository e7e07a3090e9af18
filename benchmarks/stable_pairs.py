"""False positives on stable pairs: a reading aid must stay quiet when nothing changed.

For each real scan (patient01 study1, patient03 study1/2, patient04 study1 of ../shared/data) two
stable pairs are run through detection (registration, QC, model, post-processing; no report):
  self    the scan against itself
  rescan  the scan against its simulated re-scan (pmlseg.synth.rescan: rigid head motion of up to
          3 mm / 3 degrees, new bias field and gain, fresh Rician noise, on its own grid)
Every component found is a false positive.  Prints one line per pair and the total.

  python benchmarks/stable_pairs.py [--model NAME_OR_DIR] [--seeds 0 1 ...] [--device cpu]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pmlseg.detect import pipeline
from pmlseg.detect.predictor import Predictor
from pmlseg.paths import shared_data_dir
from pmlseg.synth.rescan import write_rescan

SCANS = ["patient01/study1", "patient03/study1", "patient03/study2", "patient04/study1"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    pred = Predictor(args.model, args.device)
    root = shared_data_dir() / "ljubljana-longitudinal"
    print(f"model {pred.name} ({pred.sha256[:12]}), device {pred.device}")
    print(f"{'scan':<20}{'pair':<12}{'reg QC':>8}{'FP':>4}{'FP mm3':>9}{'s':>7}")
    total, n = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for scan in SCANS:
            flair = root / f"{scan}_FLAIR.nii.gz"
            pairs = [("self", flair)]
            for seed in args.seeds:
                dst = Path(tmp) / f"{scan.replace('/', '_')}_rescan{seed}.nii.gz"
                write_rescan(flair, dst, seed)
                pairs.append((f"rescan{seed}", dst))
            for name, fu in pairs:
                t = time.perf_counter()
                res = pipeline.run_case(flair, fu, Path(tmp) / "out", predictor=pred, report=False,
                                        allow_qc_failure=True)
                fp = res.n_lesions if res.status == "ok" else float("nan")
                vol = sum(r["volume_mm3"] for r in res.rows)
                print(f"{scan:<20}{name:<12}{res.qc['registration']['similarity']:>8.2f}{fp:>4}{vol:>9.0f}"
                      f"{time.perf_counter() - t:>7.0f}", flush=True)
                total, n = total + res.n_lesions, n + 1
    print(f"total: {total} false-positive component(s) over {n} stable pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
