"""Per-stage time and memory of a finished workflow run, from Snakemake's benchmark files.

    python benchmarks/workflow_stages.py OUT_DIR

Reads OUT_DIR/benchmarks/**/*.tsv (one per job: wall seconds, max RSS, CPU time) and prints, per rule,
the number of jobs, median and max wall time, max memory and total CPU time; then, per detection case,
the step timings its qc.json records (brain mask, registration QC, resampling + harmonisation, inference,
post-processing, optional inputs, characterisation + report, total).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from pmlseg.tables import read_tsv


def main(out: str) -> int:
    root = Path(out) / "benchmarks"
    if not root.is_dir():
        print(f"{root}: no benchmark files (run `pmlseg run` first)", file=sys.stderr)
        return 1
    stages: dict[str, list[dict]] = {}
    for f in sorted(root.rglob("*.tsv")):
        rule = f.parent.name if f.parent != root else f.stem
        for row in read_tsv(f):
            stages.setdefault(rule, []).append(row)
    print(f"{'rule':<12} {'jobs':>4} {'median s':>9} {'max s':>8} {'max RSS MB':>11} {'CPU s':>8}")
    for rule, rows in stages.items():
        s = [float(r["s"]) for r in rows]
        rss = [float(r["max_rss"]) for r in rows if r.get("max_rss") not in ("", "NA", None)]
        cpu = [float(r["cpu_time"]) for r in rows if r.get("cpu_time") not in ("", "NA", None)]
        print(f"{rule:<12} {len(rows):>4} {statistics.median(s):>9.1f} {max(s):>8.1f} "
              f"{max(rss) if rss else float('nan'):>11.0f} {sum(cpu):>8.1f}")
    cases = sorted(Path(out).glob("derivatives/pmlseg/sub-*/ses-*/detect-*/qc.json"))
    if cases:
        print("\ndetection case (qc.json timings, s)")
        for f in cases:
            t = json.loads(f.read_text()).get("timings", {})
            print(f"{'/'.join(f.parts[-4:-1]):<36} " + "  ".join(f"{k.removesuffix('_s')} {v}" for k, v in t.items()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
